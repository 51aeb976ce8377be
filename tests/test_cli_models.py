"""The CLI knows models: `inspect` shows each layer's config, bounded and escaped; `convert` picks one
entry of a checkpoint (`--key`), rebuilds whole models from layers `--import` registers, and converts
model folders (`config.json` beside the weights) both ways."""

from __future__ import annotations

import functools
import json
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import tmodel
from tmodel.cli.configs import MAX_CHARS, show_config
from tmodel.cli.main import main
from tmodel.nn import registry


@tmodel.register("tests.climodels.Block", version=2)
class Block(nn.Module):
    def __init__(self, dim: int, norm: object = nn.LayerNorm, label: str = "b") -> None:
        super().__init__()
        self.norm = norm(dim)  # type: ignore[operator]
        self.label = label


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_shows_each_layers_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = nn.Sequential(nn.Linear(4, 2), Block(2, functools.partial(nn.LayerNorm, eps=1e-6), label="x"))
    tmodel.save(model, tmp_path / "m.tmodel")
    rc, out, err = run(["inspect", str(tmp_path / "m.tmodel")], capsys)
    assert (rc, err) == (0, "")
    tree = out.split("architecture:\n")[1].split("metadata:")[0].splitlines()
    assert tree == [
        "  <root>: torch.nn.Sequential v1 (14 params)",
        "    0: torch.nn.Linear v1 (10 params)  in_features=4, out_features=2, bias=True",
        "    1: tests.climodels.Block v2 (4 params)  "
        'dim=2, norm=partial(torch.nn.LayerNorm, eps=1e-06), label="x"',
        "      norm: torch.nn.LayerNorm v1 (4 params)  "
        "normalized_shape=(2,), eps=1e-06, elementwise_affine=True, bias=True",
    ]
    rc, out, _ = run(["inspect", "--json", str(tmp_path / "m.tmodel")], capsys)
    block = json.loads(out)["architecture"][0]["children"][1]
    assert block["config"] == {
        "dim": 2,
        "norm": {"partial": {"ref": "torch.nn.LayerNorm", "args": [], "kwargs": [["eps", 1e-06]]}},
        "label": "x",
    }


def test_a_parent_built_child_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    class Inner(nn.Module):  # unregistered: its parent builds it
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(1, 1)

    @tmodel.register("tests.climodels.Outer")
    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Inner()

    try:
        tmodel.save(Outer(), tmp_path / "o.tmodel")
        _, out, _ = run(["inspect", str(tmp_path / "o.tmodel")], capsys)
        name = f"{Inner.__module__}.{Inner.__qualname__}"
        assert f"    inner: {name} built by its parent (2 params)" in out.splitlines()
    finally:
        registry.unregister("tests.climodels.Outer")


def test_a_hostile_config_is_shown_bounded_and_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    label = "\x1b]0;title\x07\u202e" + "A" * 1_000_000
    tmodel.save(Block(2, label=label), tmp_path / "h.tmodel")
    rc, out, _ = run(["inspect", str(tmp_path / "h.tmodel")], capsys)
    line = next(ln for ln in out.splitlines() if "tests.climodels.Block" in ln)
    assert rc == 0 and "\x1b" not in out and "\u202e" not in out
    head = "  <root>: tests.climodels.Block v2 (4 params)  "
    assert line.startswith(head + 'dim=2, norm=torch.nn.LayerNorm, label="\\x1b]0;title\\x07\\u202eAAA')
    assert line.endswith("A…") and len(line) == len(head) + MAX_CHARS + 1


def test_show_config_spells_every_node_kind() -> None:
    config = {
        "a": {"tuple": [1, {"list": [None, True]}]},
        "d": {"dict": [["k", {"dtype": "float16"}], [{"tuple": [1, 2]}, b"\x00"]]},
        "o": {"object": {"type": "acme.Color", "data": "red"}},
        "m": {"module": 3},
        "s": {"set": [1]},
        "f": {"ref": "torch.nn.functional.gelu"},
        "dev": {"device": "cpu"},
    }
    assert show_config(config) == (
        'a=(1, [None, True]), d={"k": torch.float16, (1, 2): b\'\\x00\'}, o=acme.Color("red"), m=<module 3>, '
        's={1}, f=torch.nn.functional.gelu, dev=device("cpu")'
    )


def test_convert_picks_one_entry_of_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = nn.Linear(3, 2)
    ckpt = {"model": model, "optim": {"step": 7, "lr": 0.1}, "nested": {"sd": model.state_dict()}}
    tmodel.save(ckpt, tmp_path / "ckpt.tmodel")
    out = tmp_path / "model.safetensors"
    rc, _, err = run(["convert", str(tmp_path / "ckpt.tmodel"), str(out), "--key", "model"], capsys)
    assert (rc, err) == (0, "")
    back = load_file(out)
    assert set(back) == {"weight", "bias"} and torch.equal(back["weight"], model.weight.detach())
    rc, _, err = run(["convert", str(tmp_path / "ckpt.tmodel"), str(out), "--key", "nested.sd"], capsys)
    assert rc == 0 and torch.equal(load_file(out)["bias"], model.bias.detach())
    rc, stdout, err = run(["convert", str(tmp_path / "ckpt.tmodel"), str(out), "--key", "weights"], capsys)
    assert (rc, stdout) == (1, "")
    assert err == (
        "error[INVALID_ARGUMENT]: --key 'weights': the source has no entry 'weights'; its entries are "
        "'model', 'optim', 'nested'\n"
    )


def test_convert_rebuilds_a_whole_model_from_imported_layers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme_layers.py").write_text(
        textwrap.dedent(
            """
            import tmodel
            from torch import nn

            @tmodel.register("tests.climodels.Acme")
            class Acme(nn.Module):
                def __init__(self, n: int):
                    super().__init__()
                    self.fc = nn.Linear(n, n)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import acme_layers  # type: ignore[import-not-found]

    try:
        model = acme_layers.Acme(2)
        tmodel.save(model, tmp_path / "acme.tmodel")
        registry.unregister("tests.climodels.Acme")
        rc, _, err = run(["convert", str(tmp_path / "acme.tmodel"), str(tmp_path / "a.safetensors")], capsys)
        assert rc == 1 and err.startswith("error[UNREGISTERED_TYPE]: ")
        monkeypatch.delitem(__import__("sys").modules, "acme_layers")
        args = [
            "convert",
            str(tmp_path / "acme.tmodel"),
            str(tmp_path / "a.safetensors"),
            "--import",
            "acme_layers",
        ]
        rc, _, err = run(args, capsys)
        assert (rc, err) == (0, "")
        back = load_file(tmp_path / "a.safetensors")
        assert set(back) == {"fc.weight", "fc.bias"} and torch.equal(
            back["fc.weight"], model.fc.weight.detach()
        )
    finally:
        if registry.is_registered_name("tests.climodels.Acme"):
            registry.unregister("tests.climodels.Acme")


def test_model_folders_convert_both_ways(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    config = {"architectures": ["AcmeModel"], "model_type": "acme", "hidden": 4}
    (hf / "config.json").write_text(json.dumps(config))
    weights = {"embed.weight": torch.randn(5, 4), "head.bias": torch.zeros(5)}
    save_file(weights, hf / "model.safetensors")
    rc, _, err = run(["convert", str(hf), str(tmp_path / "tm")], capsys)
    assert (rc, err) == (0, "")
    assert sorted(p.name for p in (tmp_path / "tm").iterdir()) == ["config.json", "model.tmodel"]
    assert json.loads((tmp_path / "tm" / "config.json").read_text()) == config
    got = tmodel.load(tmp_path / "tm" / "model.tmodel")
    assert set(got) == set(weights) and all(torch.equal(got[k], weights[k]) for k in weights)
    rc, _, err = run(["convert", str(tmp_path / "tm"), str(tmp_path / "hf2")], capsys)
    assert (rc, err) == (0, "")
    assert sorted(p.name for p in (tmp_path / "hf2").iterdir()) == ["config.json", "model.safetensors"]
    back = load_file(tmp_path / "hf2" / "model.safetensors")
    assert all(torch.equal(back[k], weights[k]) for k in weights)
    (tmp_path / "empty").mkdir()
    rc, _, err = run(["convert", str(tmp_path / "empty"), str(tmp_path / "x")], capsys)
    assert rc == 1 and err.startswith("error[BAD_SOURCE]: ") and "no config.json" in err
