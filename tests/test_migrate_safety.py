"""`tmodel migrate` gives every kind of file a straight answer (issue 15, points 4 and 5): a file that
records no layers, layers this program does not register (a forgotten `--import`), `--to` a layer or
version that does not exist; `--import` finds a module in the current directory or a `.py` path; `migration
check` with no layers of one's own is an error, not "ok: 0 layers"."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import tmodel

LAYER = textwrap.dedent(
    """
    import tmodel
    from torch import nn

    @tmodel.register("safety.Gate", version=2)
    class Gate(nn.Module):
        def __init__(self, dim: int):
            super().__init__()
            self.proj = nn.Linear(dim, dim)

    @tmodel.migration("safety.Gate", from_version=1)
    def rename(rec):
        rec.rename("fc.weight", "proj.weight")
    """
)


def cli(cwd: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "tmodel.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout, done.stderr


def one_line_error(result: tuple[int, str, str], code: str) -> str:
    rc, out, err = result
    assert (rc, out) == (1, ""), result
    assert err.startswith(f"error[{code}]: ") and err.count("\n") == 1, err
    return err


def gate_file(tmp_path: Path) -> Path:
    """A file of safety.Gate v2, written by a child process that registers it."""
    (tmp_path / "safety_layers.py").write_text(LAYER)
    code = "import torch, tmodel, safety_layers; tmodel.save(safety_layers.Gate(3), 'gate.tmodel')"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=120)
    return tmp_path / "gate.tmodel"


def test_a_state_dict_file_records_no_layers_and_says_how_to_save_one(tmp_path: Path) -> None:
    tmodel.save(nn.Linear(2, 2).state_dict(), tmp_path / "sd.tmodel")
    for args in (["--dry-run"], ["-o", "out.tmodel"]):
        err = one_line_error(cli(tmp_path, "migrate", "sd.tmodel", *args), "INVALID_ARGUMENT")
        assert "records no layers" in err and "tmodel.save(model, path)" in err
    assert not (tmp_path / "out.tmodel").exists()


def test_a_forgotten_import_is_an_error_naming_the_layers(tmp_path: Path) -> None:
    path = gate_file(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    err = one_line_error(cli(tmp_path / "elsewhere", "migrate", str(path), "--dry-run"), "UNREGISTERED_TYPE")
    assert "safety.Gate" in err and "--import MODULE" in err


def test_import_takes_a_module_of_the_current_directory_or_a_py_path(tmp_path: Path) -> None:
    path = gate_file(tmp_path)
    assert cli(tmp_path, "migrate", "gate.tmodel", "--dry-run", "--import", "safety_layers") == (
        0,
        "gate.tmodel: up to date\n",
        "",
    )
    (tmp_path / "elsewhere").mkdir()
    by_path = cli(
        tmp_path / "elsewhere", "migrate", str(path), "--dry-run", "--import", "../safety_layers.py"
    )
    assert by_path == (0, f"{path}: up to date\n", "")
    err = one_line_error(
        cli(tmp_path, "migrate", "gate.tmodel", "--import", "missing.py"), "INVALID_ARGUMENT"
    )
    assert "--import missing.py" in err


def test_to_refuses_unknown_layers_and_versions_beyond_the_code(tmp_path: Path) -> None:
    gate_file(tmp_path)
    base = ["migrate", "gate.tmodel", "-o", "old.tmodel", "--import", "safety_layers"]
    err = one_line_error(cli(tmp_path, *base, "--to", "safety.Gat=1"), "INVALID_ARGUMENT")
    assert "has no layer 'safety.Gat'" in err
    for version in ("3", "0"):
        err = one_line_error(cli(tmp_path, *base, "--to", f"safety.Gate={version}"), "INVALID_ARGUMENT")
        assert "a target is a version from 1 to 2" in err
    assert not (tmp_path / "old.tmodel").exists()


def test_migration_check_without_layers_of_ones_own_is_an_error(tmp_path: Path) -> None:
    err = one_line_error(cli(tmp_path, "migration", "check", "--fixtures", str(tmp_path)), "INVALID_ARGUMENT")
    assert "no layers of your own are registered" in err


def test_the_python_api_answers_the_same(tmp_path: Path) -> None:
    tmodel.save({"w": torch.ones(2)}, tmp_path / "t.tmodel")
    with pytest.raises(tmodel.TModelError) as info:
        tmodel.migrate_file(tmp_path / "t.tmodel", tmp_path / "o.tmodel")
    assert info.value.code == "INVALID_ARGUMENT" and "records no layers" in str(info.value)
    assert not (tmp_path / "o.tmodel").exists()


SCALE_V1 = textwrap.dedent(
    """
    import torch, tmodel
    from torch import nn

    @tmodel.register("safety.Scale", version=1)
    class Scale(nn.Module):
        def __init__(self, dim: int):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(dim))

        def forward(self, x):
            return x * self.weight
    """
)
SCALE_V2 = textwrap.dedent(
    """
    import torch, tmodel
    from torch import nn

    @tmodel.register("safety.Scale", version=2)
    class Scale(nn.Module):
        def __init__(self, dim: int):
            super().__init__()
            self.scale = nn.Parameter(torch.randn(dim))

        def forward(self, x):
            return x * self.scale
    """
)
STEP = """
@tmodel.migration("safety.Scale", from_version=1)
def rename_weight(rec):
    rec.rename("weight", "scale"){extra}
"""


def test_migration_check_loads_every_fixture_and_compares_its_frozen_output(tmp_path: Path) -> None:
    """`freeze --input-shape` stores a sample input and its output; `check` loads every fixture through
    the chain and compares, so a step that changes the numbers, or a deleted first step, fails it."""
    (tmp_path / "v1.py").write_text(SCALE_V1)
    freeze = ["migration", "freeze", "safety.Scale", "--config", '{"dim": 3}', "--input-shape", "2,3"]
    assert cli(tmp_path, *freeze, "--dir", "fixtures", "--import", "v1.py")[0] == 0
    with tmodel.open(tmp_path / "fixtures" / "safety.Scale" / "v1.tmodel") as f:
        assert set(f.keys()) == {"model.weight", "input", "output"} and f.get_tensor("input").shape == (2, 3)

    def check(step: str) -> tuple[int, str, str]:
        (tmp_path / "v2.py").write_text(SCALE_V2 + step)
        assert cli(tmp_path, *freeze, "--dir", "fixtures", "--import", "v2.py")[0] in (0, 1)  # v2, once
        return cli(tmp_path, "migration", "check", "--fixtures", "fixtures", "--import", "v2.py")

    rc, out, err = check(STEP.format(extra=""))
    assert (rc, err) == (0, "") and out.startswith("ok: 1 layer(s)")
    rc, out, err = check(STEP.format(extra="\n    rec['scale'] = rec['scale'] * 2"))
    assert rc == 1 and err.startswith("error[MIGRATION]: ")
    assert "fixture of version 1" in out and "its output is not the one frozen with it" in out
    rc, out, err = check("")  # the first step deleted
    assert rc == 1 and "safety.Scale" in out and "version 1" in out
