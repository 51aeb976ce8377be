"""`tmodel migration new` (issue 15 point 6): the step is pre-filled by comparing the layer's newest frozen
fixture with the class as the code defines it now, and the test it writes runs as generated from the
project folder: it passes once the step is complete, and fails with a clear message while a TODO is left."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tmodel.cli.main import main
from tmodel.nn.registry import is_registered_name, unregister
from tmodel.nn.steps import unregister_steps

Cli = Callable[..., tuple[int, str, str]]

GATE_V1 = """
    @tmodel.register("demo.Gate", version=1)
    class Gate(nn.Module):
        def __init__(self, n: int, scale: float = 0.5):
            super().__init__()
            self.scale = scale
            self.w = nn.Parameter(torch.randn(n, 3))
            self.b = nn.Parameter(torch.randn(n))

        def forward(self, x):
            return x @ self.w.t() * self.scale
"""
# w renamed to weight, b dropped, a new tensor g (zeros reproduce v1), scale renamed to gain, extra added
GATE_V2 = """
    @tmodel.register("demo.Gate", version=VERSION)
    class Gate(nn.Module):
        def __init__(self, n: int, gain: float = 1.0, extra: int = 0):
            super().__init__()
            self.gain = gain
            self.weight = nn.Parameter(torch.randn(n, 3))
            self.g = nn.Parameter(torch.randn(3))

        def forward(self, x):
            return (x + self.g) @ self.weight.t() * self.gain
"""
TODO_V1 = """
    @tmodel.register("demo.Todo", version=1)
    class Todo(nn.Module):
        def __init__(self, n: int):
            super().__init__()
            self.w = nn.Parameter(torch.randn(n, 3))
"""
# w transposed: nothing the scaffold can write as code
TODO_V2 = TODO_V1.replace("(n, 3)", "(3, n)").replace("version=1", "version=VERSION")

GATE_STEP = '''\
def downgrade(rec: LayerRecord) -> None:
    """demo.Gate v2 -> v1, for readers that still run version 1; delete it if there is no way back."""
    rec.drop("g")
    # TODO: v1 had "b" (4,): rec.add("b", torch.zeros(4))
    rec.rename("weight", "w")
    rec.config.pop("extra")
    rec.config["scale"] = rec.config.pop("gain")
    raise NotImplementedError("demo.Gate v2 -> v1: finish the TODOs above, then delete this line (or delete \
this downgrade)")


@tmodel.migration("demo.Gate", from_version=1, downgrade=downgrade)
def demo_gate_v1_to_v2(rec: LayerRecord) -> None:
    """Edit rec.config and the tensors: rename, drop, add, rec[name] = ..., split, merge."""
    # pre-filled by tmodel migration new from fixtures/demo.Gate/v1.tmodel and the current gate_layers.Gate: \
check every line
    # the fixture's config does not build the current Gate (TypeError: got an unexpected keyword argument \
'scale'): its fields come from Gate.__init__
    # tensors compared with a Gate built on the meta device from that config
    rec.config["gain"] = rec.config.pop("scale")  # likely a rename: both float
    rec.config["extra"] = 0
    rec.rename("w", "weight")  # likely a rename: both (4, 3) float32
    rec.drop("b")
    rec.add("g", torch.zeros(3))  # TODO: zeros, or the values v1 behaved as if it had
'''


def write_layer(path: Path, source: str, version: int = 1) -> None:
    header = "import torch\nfrom torch import nn\n\nimport tmodel\n"
    path.write_text(header + textwrap.dedent(source).replace("VERSION", str(version)))


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`tmodel ARGS` in this process from tmp_path, forgetting afterwards the layers and modules it imported
    (so the next call imports the edited module afresh)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # an edited module is never read from a stale .pyc

    def run(*args: str) -> tuple[int, str, str]:
        try:
            rc = main(list(args))
        finally:
            for layer in ("demo.Gate", "demo.Todo"):
                if is_registered_name(layer):
                    unregister(layer)
                unregister_steps(layer)
            for module in ("gate_layers", "todo_layers"):
                sys.modules.pop(module, None)
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def test_the_step_is_prefilled_and_its_test_passes_once_the_registration_is_bumped(
    tmp_path: Path, cli: Cli
) -> None:
    run = cli
    write_layer(tmp_path / "gate_layers.py", GATE_V1)
    freeze = ["migration", "freeze", "demo.Gate", "--config", '{"n": 4}', "--input-shape", "2,3"]
    assert run(*freeze, "--import", "gate_layers") == (
        0,
        "froze demo.Gate v1 at fixtures/demo.Gate/v1.tmodel\n",
        "",
    )
    write_layer(tmp_path / "gate_layers.py", GATE_V2)
    rc, out, err = run("migration", "new", "demo.Gate", "--import", "gate_layers", "--dir", "steps")
    assert (rc, err) == (0, "")
    assert out.splitlines() == [
        "wrote steps/demo_gate_v1_to_v2.py",
        "wrote steps/test_demo_gate_v1_to_v2.py",
        "pre-filled from fixtures/demo.Gate/v1.tmodel: 5 change(s) in code, 0 TODO(s)",
        "note: the fixture's config does not build the current Gate (TypeError: got an unexpected keyword "
        "argument 'scale'): its fields come from Gate.__init__",
        "note: tensors compared with a Gate built on the meta device from that config",
        'next: bump @tmodel.register("demo.Gate", version=2), finish the step, then: pytest '
        "steps/test_demo_gate_v1_to_v2.py",
    ]
    step = (tmp_path / "steps" / "demo_gate_v1_to_v2.py").read_text()
    assert step.startswith('"""demo.Gate: version 1 -> 2.') and "\nimport torch\n" in step
    assert step.endswith(GATE_STEP)

    # a second layer whose change the scaffold cannot write as code, imported by path
    write_layer(tmp_path / "todo_layers.py", TODO_V1)
    assert (
        run("migration", "freeze", "demo.Todo", "--config", '{"n": 4}', "--import", "todo_layers.py")[0] == 0
    )
    write_layer(tmp_path / "todo_layers.py", TODO_V2)
    rc, out, err = run("migration", "new", "demo.Todo", "--import", "todo_layers.py", "--dir", "steps")
    assert (rc, err) == (0, "")
    assert "pre-filled from fixtures/demo.Todo/v1.tmodel: 0 change(s) in code, 1 TODO(s)\n" in out
    todo = (tmp_path / "steps" / "demo_todo_v1_to_v2.py").read_text()
    assert todo.endswith(
        '    # TODO: "w" was (4, 3), is now (3, 4): rec.transform("w", lambda t: t.reshape(3, 4))\n'
        '    raise NotImplementedError("demo.Todo v1 -> v2: finish the TODOs above, then delete this line")\n'
    )
    assert (
        "    # TODO: undo what the upgrade's TODOs do\n"
        '    raise NotImplementedError("demo.Todo v2 -> v1: finish the TODOs above, then delete this line '
        '(or delete this downgrade)")\n\n'
    ) in todo

    # fill nothing more, bump the registrations, and run the generated tests as the user would
    write_layer(tmp_path / "gate_layers.py", GATE_V2, version=2)
    write_layer(tmp_path / "todo_layers.py", TODO_V2, version=2)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "steps"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout, done.stdout
    fixture = tmp_path / "fixtures" / "demo.Todo" / "v1.tmodel"
    assert (
        f"AssertionError: {fixture} does not load through the chain: error[MIGRATION]: demo.Todo v1->v2 "
        "(demo_todo_v1_to_v2) failed: NotImplementedError: demo.Todo v1 -> v2: finish the TODOs above, "
        "then delete this line\n"
    ) in done.stdout, done.stdout
    assert "FAILED steps/test_demo_todo_v1_to_v2.py::test_demo_todo_v1_to_v2_loads_every_frozen_version" in (
        done.stdout
    )


def test_without_a_fixture_the_step_says_to_freeze_one_first(tmp_path: Path, cli: Cli) -> None:
    run = cli
    write_layer(tmp_path / "gate_layers.py", GATE_V1)
    rc, out, err = run("migration", "new", "demo.Gate", "--import", "gate_layers.py")
    assert (rc, err) == (0, "")
    assert out.splitlines()[2] == (
        "no fixture of version 1 to compare with (fixtures/demo.Gate/v1.tmodel): the step is a TODO; freeze "
        "one with the v1 code first (tmodel migration freeze demo.Gate --config '{...}')"
    )
    step = (tmp_path / "migrations_steps" / "demo_gate_v1_to_v2.py").read_text()
    assert step.endswith(
        "    # TODO: no frozen fixture of version 1 to compare with (fixtures/demo.Gate/v1.tmodel)\n"
        '    raise NotImplementedError("demo.Gate v1 -> v2: nothing to pre-fill this step from: freeze a '
        "fixture of version 1 first, with the v1 code (tmodel migration freeze demo.Gate --config '{...}'), "
        'and run tmodel migration new again; or write the step here")\n'
    )
    assert "import torch" not in step
    rc, out, err = run("migration", "new", "demo.Gate", "--import", "gate_layers.py")
    assert (rc, out) == (1, "")
    assert err == "error[INVALID_ARGUMENT]: migrations_steps/demo_gate_v1_to_v2.py exists\n"
