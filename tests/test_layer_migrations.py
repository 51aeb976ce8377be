"""Layer migrations: the worked example (frozen v1/v2 files load as v3 with the same outputs), rewriting
files with untouched blobs copied byte for byte, downgrades, and the plan rules (gap, branch, newer)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import BaseModel
from torch import nn

import tmodel
import tmodel.rewrite
from tmodel.archive.reader import Reader
from tmodel.errors import TModelError
from tmodel.nn import chain, registry, steps
from tmodel.nn.steps import LayerRecord

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "examples" / "migrations" / "fixtures"
sys.path.insert(0, str(ROOT))
from examples.migrations import attention as example  # noqa: E402  (registers the example layers)
from examples.migrations.attend import attend  # noqa: E402

FROZEN = {  # sha256 of the frozen fixtures: never regenerated
    "example.Attention/v1.tmodel": "081bf5b8ab1724deaddfe270e5ec48773cfd15cbcaadbaea43d5d53e5400c4bb",
    "example.Attention/v2.tmodel": "55455f8770df4efc8520a401bc4c832746a59fe31ad33ab8267ae69dd02ea192",
    "example.Attention/v3.tmodel": "f13b1831f181b300e523dfde87171500572968759ca72ac8686e08d18371b14d",
    "example.RunningNorm/v1.tmodel": "77eff63285c52154546a21f318c0ac6a182e9e87218de53c7f3d6e1688a57302",
    "example.RunningNorm/v2.tmodel": "9700d0fb8eda7184d6b0d8722da29cf50c8fc8ab8fbc2353311a5c78320e9f2f",
    "example.Scale/v1.tmodel": "2126266896f0d2655a876b0728858b503bb7bee1985a15f12009d3fde5fdb806",
    "example.Scale/v2.tmodel": "eef92cba401ac8aa9c947e970c3a85ce0b8cb1f5633b8b501c93d9f998df9829",
}


def _layer(path: Path) -> tuple[str, int]:
    with Reader(path) as r:
        rec = r.manifest.modules[0]
        return rec.type, rec.version


@pytest.mark.parametrize("name", ["v1.tmodel", "v2.tmodel"])
def test_frozen_attention_files_load_as_v3_with_identical_outputs(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tmodel"):
        ckpt = tmodel.load(FIXTURES / "example.Attention" / name)
    model = ckpt["model"]
    assert isinstance(model, example.Attention) and model.num_heads == 2
    assert float(model.temperature) == 1.0 and model.temperature.dtype == torch.float32
    with tmodel.open(FIXTURES / "example.Attention" / name) as f:  # the file's own weights, unmigrated
        stored = {k.removeprefix("model."): f.get_tensor(k) for k in f if k.startswith("model.")}
    q, k, v = stored["qkv"].chunk(3) if "qkv" in stored else (stored["q"], stored["k"], stored["v"])
    x = ckpt["input"]
    with torch.no_grad():
        out = model(x)
        expected = attend(x @ q.T, x @ k.T, x @ v.T, 2, torch.tensor(1.0)) @ stored["proj"].T
    assert torch.equal(out, expected)  # the old layer's math on this machine, bit for bit
    # The frozen output was computed on the machine that froze the file; float kernels differ across CPUs.
    torch.testing.assert_close(out, ckpt["output"], rtol=1e-5, atol=1e-6)
    upgraded = [r.getMessage() for r in caplog.records if "upgraded" in r.getMessage()]
    assert len(upgraded) == 1 and "example.Attention v" in upgraded[0] and "-> v3" in upgraded[0]


def test_v1_weights_are_split_exactly() -> None:
    with Reader(FIXTURES / "example.Attention" / "v1.tmodel") as r:
        qkv_index = r.manifest.modules[0].parameters["qkv"]
        assert qkv_index is not None
    with tmodel.open(FIXTURES / "example.Attention" / "v1.tmodel") as f:
        qkv = f.get_tensor("model.qkv")
    model = tmodel.load(FIXTURES / "example.Attention" / "v1.tmodel")["model"]
    assert torch.equal(torch.cat([model.q, model.k, model.v]), qkv)


def test_buffer_added_and_parameter_renamed() -> None:
    norm = tmodel.load(FIXTURES / "example.RunningNorm" / "v1.tmodel")
    assert (
        int(norm["model"].num_batches_tracked) == 0 and norm["model"].num_batches_tracked.dtype == torch.long
    )
    assert torch.equal(norm["model"](norm["input"]), norm["output"])
    scale = tmodel.load(FIXTURES / "example.Scale" / "v1.tmodel")
    assert sorted(dict(scale["model"].named_parameters())) == ["weight"]
    assert torch.equal(scale["model"](scale["input"]), scale["output"])


def test_rewrite_on_disk_copies_untouched_blobs_byte_for_byte(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "example.Scale" / "v1.tmodel", tmp_path / "scale.v1.tmodel")
    out = tmp_path / "scale.v2.tmodel"
    assert tmodel.rewrite.migration_plan(tmp_path / "scale.v1.tmodel") == [
        "example.Scale v1 -> v2: rename_w (1 module)",
        "  model: rename_w: rename w -> weight",
    ]
    applied = tmodel.migrate_file(tmp_path / "scale.v1.tmodel", out)
    assert applied == ["example.Scale v1 -> v2: rename_w (1 module)"]
    assert _layer(out) == ("example.Scale", 2)
    with Reader(out) as new:
        assert [t.name for t in new.manifest.tensors] == ["model.weight", "input", "output"]
        new.verify()
    assert tmodel.rewrite.migration_plan(out) == []
    assert tmodel.migrate_file(out, tmp_path / "again.tmodel") == []
    # the fixture is of schema 2, its frames re-encoded with their checksums (SPEC.md §6.4 rule 6); from
    # the schema-6 file, untouched blobs are copied byte for byte
    down = tmp_path / "scale.down.tmodel"
    assert tmodel.migrate_file(out, down, targets={"example.Scale": 1})
    with Reader(out) as new, Reader(down) as back:
        new_in = new.manifest.tensors[[t.name for t in new.manifest.tensors].index("input")]
        back_in = back.manifest.tensors[[t.name for t in back.manifest.tensors].index("input")]
        assert new_in.blob is not None and back_in.blob is not None
        assert new.manifest.blobs[new_in.blob].chunks == back.manifest.blobs[back_in.blob].chunks
        back.verify()


def test_in_place_keeps_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "a.tmodel"
    shutil.copy(FIXTURES / "example.Attention" / "v1.tmodel", path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    tmodel.migrate_file(path, in_place=True)
    assert hashlib.sha256((tmp_path / "a.tmodel.bak").read_bytes()).hexdigest() == before
    assert _layer(path) == ("example.Attention", 3)


def test_in_place_backup_keeps_mode_and_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "a.tmodel"
    shutil.copy(FIXTURES / "example.Attention" / "v1.tmodel", path)
    path.chmod(0o640)
    os.utime(path, ns=(1_000_000_123, 1_500_000_000_456_789_000))
    tmodel.migrate_file(path, in_place=True)
    backup = (tmp_path / "a.tmodel.bak").stat()
    assert stat.S_IMODE(backup.st_mode) == 0o640
    assert backup.st_mtime_ns == 1_500_000_000_456_789_000  # (atime: whenever the migration read it)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # the migrated file keeps its mode too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tmodel", "a.tmodel.bak"]


def test_in_place_never_overwrites_a_backup_nor_follows_a_link_planted_there(tmp_path: Path) -> None:
    path = tmp_path / "a.tmodel"
    shutil.copy(FIXTURES / "example.Attention" / "v1.tmodel", path)
    original = path.read_bytes()
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    planted = tmp_path / "a.tmodel.bak"
    planted.symlink_to(victim)
    for _ in range(2):  # a planted link, then an earlier backup
        with pytest.raises(TModelError) as err:
            tmodel.migrate_file(path, in_place=True)
        assert err.value.code == "INVALID_ARGUMENT"
        assert str(planted) in str(err.value) and "exists" in str(err.value)
        assert path.read_bytes() == original  # nothing was migrated either
        planted.unlink()
        planted.write_bytes(b"an earlier backup")
    assert planted.read_bytes() == b"an earlier backup" and victim.read_bytes() == b"not yours"
    tmodel.migrate_file(path, in_place=True, backup=".orig")
    assert (tmp_path / "a.tmodel.orig").read_bytes() == original
    for bad in ("", "/x", "../a"):
        with pytest.raises(TModelError) as err:
            tmodel.migrate_file(path, in_place=True, backup=bad)
        assert err.value.code == "INVALID_ARGUMENT"


def test_a_backup_appearing_during_the_copy_is_not_overwritten(tmp_path: Path) -> None:
    """The race the existence check cannot close: the copy is published with link(), which fails on any
    existing name (file or link) instead of following or replacing it."""
    from tmodel.container import atomic

    src = tmp_path / "src"
    src.write_bytes(b"original")
    dst = tmp_path / "dst"
    real_link = os.link

    def racing_link(a: str, b: str) -> None:
        os.symlink(tmp_path / "elsewhere", b)  # planted between the check and the link
        real_link(a, b)

    fd = os.open(src, os.O_RDONLY)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(os, "link", racing_link)
            with pytest.raises(TModelError) as err:
                atomic.copy_new(fd, dst)
    finally:
        os.close(fd)
    assert err.value.code == "INVALID_ARGUMENT"
    assert dst.is_symlink() and not (tmp_path / "elsewhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "src"]  # no temporary file left


def test_downgrade_where_steps_declare_one(tmp_path: Path) -> None:
    v3 = tmp_path / "v3.tmodel"
    tmodel.migrate_file(FIXTURES / "example.Attention" / "v1.tmodel", v3)
    v1 = tmp_path / "back.v1.tmodel"
    tmodel.migrate_file(v3, v1, targets={"example.Attention": 1})
    with Reader(v1) as r:
        rec = r.manifest.modules[0]
        assert (rec.type, rec.version) == ("example.Attention", 1)
        assert sorted(rec.parameters) == ["proj", "qkv"] and rec.buffers == {}
        assert [k for k in rec.config] == ["dim", "n_heads"]
    with tmodel.open(FIXTURES / "example.Attention" / "v1.tmodel") as f, tmodel.open(v1) as g:
        assert torch.equal(g.get_tensor("model.qkv"), f.get_tensor("model.qkv"))
    with pytest.raises(TModelError) as err:
        tmodel.migrate_file(
            FIXTURES / "example.RunningNorm" / "v1.tmodel",
            tmp_path / "x.tmodel",
            targets={"example.RunningNorm": 0},
        )
    assert err.value.code in ("MIGRATION", "UNSUPPORTED_VERSION", "INVALID_ARGUMENT")


def test_a_step_without_a_downgrade_refuses(tmp_path: Path) -> None:
    v2 = tmp_path / "n2.tmodel"
    tmodel.migrate_file(FIXTURES / "example.RunningNorm" / "v1.tmodel", v2)
    with pytest.raises(TModelError) as err:
        tmodel.migrate_file(v2, tmp_path / "n1.tmodel", targets={"example.RunningNorm": 1})
    assert err.value.code == "MIGRATION" and "declares no downgrade" in str(err.value)


# -- plans, in memory ---------------------------------------------------------------------------------------
@pytest.fixture
def layer() -> Any:
    """A fresh layer name with cleanup."""
    names: list[str] = []

    def make(name: str, version: int) -> type[nn.Module]:
        class Thing(nn.Module):
            def __init__(self, dim: int = 2) -> None:
                super().__init__()
                self.w = nn.Parameter(torch.ones(dim))

        registry.register(name, version=version)(Thing)
        names.append(name)
        return Thing

    yield make
    for name in names:
        registry.unregister(name)
        steps.unregister_steps(name)


def test_plan_reports_gap_branch_and_newer(layer: Any) -> None:
    layer("t.Gap", 3)
    steps.migration("t.Gap", from_version=1)(lambda rec: None)
    with pytest.raises(TModelError, match="no migration step from version 2") as err:
        chain.upgrade_steps("t.Gap", 1)
    assert err.value.code == "MIGRATION"
    assert any("t.Gap" in p and "gap" in p for p in chain.check_chains())
    steps.migration("t.Gap", from_version=2)(lambda rec: None)
    steps.migration("t.Gap", from_version=2)(lambda rec: None)
    with pytest.raises(TModelError, match="branch"):
        chain.upgrade_steps("t.Gap", 1)
    assert any("t.Gap" in p and "branch" in p for p in chain.check_chains())
    with pytest.raises(TModelError) as newer:
        chain.upgrade_steps("t.Gap", 4)
    assert newer.value.code == "LAYER_VERSION" and "t.Gap" in str(newer.value)


def test_check_chains_is_clean_for_the_example_layers() -> None:
    problems = [p for p in chain.check_chains() if p.startswith("example.")]
    assert problems == []


def test_a_broken_step_is_reported_as_the_step_that_broke_it(layer: Any) -> None:
    class Cfg(BaseModel):
        dim: int

    layer("t.Broken", 2)
    record = LayerRecord("t.Broken", 1, {"dim": 2}, {})

    def bad(rec: LayerRecord) -> None:
        rec.config["dim"] = "two"

    steps.migration("t.Broken", from_version=1, config=Cfg)(bad)
    step = chain.upgrade_steps("t.Broken", 1)[0]
    with pytest.raises(TModelError) as err:
        steps.run_step(step, record)
    assert (
        err.value.code == "BAD_CONFIG" and "t.Broken v1->v2 (" in str(err.value) and "bad" in str(err.value)
    )

    def crash(rec: LayerRecord) -> None:
        raise KeyError("x")

    with pytest.raises(TModelError) as err2:
        steps.run_step(steps.Step("t.Broken", 1, crash, name="crash"), LayerRecord("t.Broken", 1, {}, {}))
    assert err2.value.code == "MIGRATION" and "crash" in str(err2.value)


def test_only_touched_tensors_are_decoded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loaded: list[int] = []
    real = tmodel.rewrite.materialize

    def spy(reader: Any, indices: Any, device: Any) -> Any:
        loaded.extend(indices)
        return real(reader, indices, device)

    monkeypatch.setattr(tmodel.rewrite, "materialize", spy)
    with Reader(FIXTURES / "example.Attention" / "v1.tmodel") as r:
        names = [t.name for t in r.manifest.tensors]
    tmodel.migrate_file(FIXTURES / "example.Scale" / "v1.tmodel", tmp_path / "s.tmodel")
    assert loaded == []  # a rename decodes nothing
    tmodel.migrate_file(FIXTURES / "example.Attention" / "v1.tmodel", tmp_path / "a.tmodel")
    assert [names[i] for i in loaded] == ["model.qkv"]  # the split reads the fused weight only


def test_fixtures_are_frozen() -> None:
    sums = {
        p.relative_to(FIXTURES).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in FIXTURES.glob("*/*.tmodel")
    }
    assert sums == FROZEN


@pytest.mark.parametrize(
    "path", sorted(FIXTURES.glob("*/*.tmodel")), ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_every_frozen_fixture_loads_through_the_chain_and_round_trips(path: Path) -> None:
    model = tmodel.load(path)["model"]
    spec = registry.spec_for_module(model, "fixture")
    assert spec.name == path.parent.name
    tmodel.testing.assert_roundtrip(model)


def _cli(*args: str) -> tuple[int, str, str]:
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "tmodel.cli", *args, "--import", "examples.migrations.attention"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_cli_migrate_dry_run_rewrite_and_downgrade(tmp_path: Path) -> None:
    v1 = FIXTURES / "example.Attention" / "v1.tmodel"
    rc, out, err = _cli("migrate", str(v1), "--dry-run")
    assert (rc, err) == (0, "")
    assert out == (  # the plan, then each step's tensor and config operations, as alembic prints its SQL
        "example.Attention v1 -> v3: split_qkv -> rename_heads_add_temperature (1 module)\n"
        "  model: split_qkv: split qkv [24, 8] along 0 into q 8, k 8, v 8\n"
        "  model: rename_heads_add_temperature: add buffer temperature []\n"
        "  model: rename_heads_add_temperature: rename config n_heads -> num_heads\n"
    )
    rc, out, err = _cli("migrate", str(v1), "-o", str(tmp_path / "v3.tmodel"))
    assert rc == 0 and _layer(tmp_path / "v3.tmodel") == ("example.Attention", 3)
    rc, out, err = _cli(
        "migrate",
        str(tmp_path / "v3.tmodel"),
        "-o",
        str(tmp_path / "v2.tmodel"),
        "--to",
        "example.Attention=2",
    )
    assert rc == 0 and _layer(tmp_path / "v2.tmodel") == ("example.Attention", 2)
    rc, out, err = _cli("migrate", str(tmp_path / "v3.tmodel"), "--dry-run", "--to", "example.Attention=1")
    assert (rc, err) == (0, "")
    assert out == (  # a downgrade is described as one
        "example.Attention downgrade v3 -> v1: rename_heads_add_temperature (downgrade) -> split_qkv "
        "(downgrade) (1 module)\n"
        "  model: rename_heads_add_temperature: drop temperature\n"
        "  model: rename_heads_add_temperature: rename config num_heads -> n_heads\n"
        "  model: split_qkv: merge q, k, v along 0 into qkv [24, 8]\n"
    )
    rc, out, err = _cli(
        "migrate",
        str(FIXTURES / "example.RunningNorm" / "v2.tmodel"),
        "-o",
        str(tmp_path / "n.tmodel"),
        "--to",
        "example.RunningNorm=1",
    )
    assert (
        rc == 1
        and err.startswith("error[MIGRATION]: ")
        and "declares no downgrade" in err
        and "Traceback" not in err
    )


def test_cli_migrate_in_place_backup(tmp_path: Path) -> None:
    path = tmp_path / "a.tmodel"
    shutil.copy(FIXTURES / "example.Attention" / "v1.tmodel", path)
    original = path.read_bytes()
    rc, out, err = _cli("migrate", str(path), "-o", str(tmp_path / "b.tmodel"), "--backup", ".orig")
    assert (rc, out) == (1, "") and err == "error[INVALID_ARGUMENT]: --backup goes with --in-place\n"
    rc, out, err = _cli("migrate", str(path), "--in-place", "--backup", ".orig")
    assert (rc, err) == (0, "") and out.endswith(f"backup: {path}.orig\n")
    assert (tmp_path / "a.tmodel.orig").read_bytes() == original
    shutil.copy(FIXTURES / "example.Attention" / "v1.tmodel", path)
    rc, out, err = _cli("migrate", str(path), "--in-place", "--backup", ".orig")
    assert rc == 1 and out == "" and err.count("\n") == 1
    assert err.startswith(f"error[INVALID_ARGUMENT]: the backup '{path}.orig' exists already")
    assert "--backup SUFFIX" in err and path.read_bytes() == original


def test_cli_migration_check_history_new(tmp_path: Path) -> None:
    rc, out, err = _cli("migration", "check", "--fixtures", str(FIXTURES))
    assert rc == 0 and out.startswith("ok: 3 layer(s)")
    rc, out, err = _cli("migration", "check", "--fixtures", str(tmp_path))
    assert (
        rc == 1
        and err.startswith("error[MIGRATION]: 7 problem(s)")
        and "no frozen fixture of version 1" in out
    )
    rc, out, err = _cli("migration", "history", "example.Attention")
    assert out.splitlines() == [
        "example.Attention: version 3 (examples.migrations.attention.Attention)",
        "  v1 -> v2: split_qkv, downgrade",
        "  v2 -> v3: rename_heads_add_temperature, downgrade",
    ]
    rc, out, err = _cli("migration", "new", "example.Scale", "--dir", str(tmp_path / "steps"))
    assert rc == 0
    step = (tmp_path / "steps" / "example_scale_v2_to_v3.py").read_text()
    assert '@tmodel.migration("example.Scale", from_version=2, downgrade=downgrade)' in step
    assert (tmp_path / "steps" / "test_example_scale_v2_to_v3.py").exists()
    rc, out, err = _cli(
        "migration", "freeze", "example.Scale", "--config", '{"dim": 3}', "--dir", str(FIXTURES)
    )
    assert rc == 1 and "is frozen" in err


@pytest.mark.parametrize(
    ("steps", "word"),
    [
        ("migration('t.Chain', from_version=1)(lambda rec: None)", "gap"),
        (
            "migration('t.Chain', from_version=1)(lambda rec: None)\n"
            "migration('t.Chain', from_version=2)(lambda rec: None)\n"
            "migration('t.Chain', from_version=2)(lambda rec: None)",
            "branch",
        ),
    ],
)
def test_cli_migration_check_fails_on_a_gap_and_on_a_branch(tmp_path: Path, steps: str, word: str) -> None:
    import os
    import subprocess

    (tmp_path / "chainmod.py").write_text(
        "import torch\nfrom torch import nn\nimport tmodel\nfrom tmodel.nn.steps import migration\n\n"
        "@tmodel.register('t.Chain', version=3)\nclass Chain(nn.Module):\n"
        "    def __init__(self, dim: int = 2):\n        super().__init__()\n"
        "        self.w = nn.Parameter(torch.ones(dim))\n\n" + steps + "\n"
    )
    for v in (1, 2, 3):
        (tmp_path / "fx" / "t.Chain").mkdir(parents=True, exist_ok=True)
        (tmp_path / "fx" / "t.Chain" / f"v{v}.tmodel").write_bytes(b"")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tmodel.cli",
            "migration",
            "check",
            "--fixtures",
            str(tmp_path / "fx"),
            "--import",
            "chainmod",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error[MIGRATION]: ") and "Traceback" not in proc.stderr
    assert any(line.startswith("problem: t.Chain") and word in line for line in proc.stdout.splitlines())


@pytest.mark.parametrize("edit", ["rename", "add"])
def test_a_step_naming_a_tensor_with_a_dot_is_refused_before_the_file_is_replaced(
    layer: Any, tmp_path: Path, edit: str
) -> None:
    thing = layer("t.Dotted", 1)
    path = tmp_path / "d.tmodel"
    tmodel.save(thing(), path)
    before = path.read_bytes()
    registry.unregister("t.Dotted")
    registry.register("t.Dotted", version=2)(thing)

    def step(rec: LayerRecord) -> None:
        if edit == "rename":
            rec.rename("w", "a.b")
        else:
            rec.add("a.b", torch.zeros(2))

    steps.migration("t.Dotted", from_version=1)(step)
    with pytest.raises(TModelError) as err:
        tmodel.migrate_file(path, in_place=True)
    assert err.value.code == "MIGRATION"
    assert "tensor name 'a.b'" in str(err.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.tmodel"]
    with pytest.raises(TModelError) as err:
        tmodel.load(path)  # migrated in memory: the same refusal
    assert err.value.code == "MIGRATION"


def test_a_step_whose_result_does_not_rebuild_is_named_and_nothing_is_written(
    layer: Any, tmp_path: Path
) -> None:
    """A step with a tensor-name typo makes a file the class cannot rebuild: every mode of migrate checks
    the result on the meta device first, and the error names the step (issue 15, point 5)."""
    thing = layer("t.Typo", 1)
    path = tmp_path / "t.tmodel"
    tmodel.save(thing(), path)
    before = path.read_bytes()
    registry.unregister("t.Typo")
    registry.register("t.Typo", version=2)(thing)

    @steps.migration("t.Typo", from_version=1)
    def rename_w(rec: LayerRecord) -> None:
        rec.rename("w", "weight")  # the class still calls it `w`

    for kwargs in ({"in_place": True}, {"dst": tmp_path / "out.tmodel"}):
        with pytest.raises(TModelError) as err:
            tmodel.migrate_file(path, **kwargs)
        # checked as the step runs, against what the v2 class builds from the migrated config
        assert err.value.code == "MIGRATION"
        assert "rename_w" in str(err.value) and "left tensors the v2 class does not build" in str(err.value)
        assert "'w' is missing; 'weight' is not one the class has" in str(err.value)
        assert err.value.step is not None and "rename_w" in err.value.step
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.tmodel"]
