"""Structural layer steps (add, remove, replace children; move tensors between a record and its children,
optimizer state included) and versioned checkpoint steps, which apply exactly once (issue 15 point 3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import tmodel
from tmodel.errors import LayerVersionError, MigrationError
from tmodel.nn import checkpoint_steps, registry, steps
from tmodel.nn.checkpoint_steps import TensorHandle
from tmodel.nn.steps import LayerRecord

NAME = "structural.Block"


class BlockV1(nn.Module):
    """v1: its own weight and bias, a ReLU and an extra child that v2 drops."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 4))
        self.b = nn.Parameter(torch.randn(3))
        self.act = nn.ReLU()
        self.extra = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.w.t() + self.b)


class BlockV2(nn.Module):
    """v2: the weight moved into a child nn.Linear, the activation replaced by GELU, no extra child."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 3)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.proj(x))


def to_v2(rec: LayerRecord) -> None:
    rec.add_child("proj", "torch.nn.Linear", {"in_features": 4, "out_features": 3, "bias": True})
    rec.move("w", "proj.weight")
    rec.move("b", "proj.bias")
    rec.remove_child("extra")
    rec.replace_child("act", "torch.nn.GELU", {"approximate": "none"})


@pytest.fixture
def block() -> Iterator[Any]:
    def use(n: int) -> type[nn.Module]:
        if registry.known_name(NAME):
            registry.unregister(NAME)
        steps.unregister_steps(NAME)
        cls = BlockV1 if n == 1 else BlockV2
        registry.register(NAME, version=n)(cls)
        if n == 2:
            steps.migration(NAME, from_version=1)(to_v2)
        return cls

    yield use
    if registry.known_name(NAME):
        registry.unregister(NAME)
    steps.unregister_steps(NAME)


def _saved(tmp_path: Path, block: Any) -> tuple[Path, nn.Module, Any]:
    cls = block(1)
    torch.manual_seed(0)
    model = nn.Sequential(cls())
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    path = tmp_path / "b.tmodel"
    tmodel.save({"model": model, "optim": opt}, path)
    return path, model, opt


def test_a_weight_moves_into_a_new_child_with_its_optimizer_state(tmp_path: Path, block: Any) -> None:
    path, old, opt = _saved(tmp_path, block)
    block(2)
    ckpt = tmodel.load(path)
    new = ckpt["model"][0]
    assert type(new) is BlockV2 and type(new.act) is nn.GELU and not hasattr(new, "extra")
    assert torch.equal(new.proj.weight, old[0].w) and torch.equal(new.proj.bias, old[0].b)
    fresh = nn.Sequential(BlockV2())
    opt2 = torch.optim.Adam(fresh.parameters(), lr=0.1)
    tmodel.load_checkpoint(path, model=fresh, optimizer=opt2)
    assert torch.equal(fresh[0].proj.weight, old[0].w)
    s_old, s_new = opt.state, opt2.state
    assert torch.equal(s_new[fresh[0].proj.weight]["exp_avg"], s_old[old[0].w]["exp_avg"])
    assert torch.equal(s_new[fresh[0].proj.bias]["exp_avg_sq"], s_old[old[0].b]["exp_avg_sq"])
    assert len(s_new) == 2  # the dropped child's parameters took their state with them


def test_structural_migration_on_disk_rebuilds_and_drops_what_only_removed_records_held(
    tmp_path: Path, block: Any
) -> None:
    path, old, _ = _saved(tmp_path, block)
    block(2)
    out = tmp_path / "v2.tmodel"
    assert tmodel.migrate_file(path, out) == ["structural.Block v1 -> v2: to_v2 (1 module)"]
    with tmodel.open(out) as f:
        names = sorted(f.keys())
        types = [r.type for r in f.reader.manifest.modules]
    assert "model.0.proj.weight" in names and not any("extra" in n for n in names)
    assert types[:2] == ["torch.nn.Sequential", NAME]  # the file's records first, then the new ones
    assert sorted(types[2:]) == ["torch.nn.GELU", "torch.nn.Linear"]
    assert torch.equal(tmodel.load(out)["model"][0].proj.weight, old[0].w)


def test_a_step_moving_to_a_missing_child_names_it(tmp_path: Path, block: Any) -> None:
    path, _, _ = _saved(tmp_path, block)
    block(2)
    steps.unregister_steps(NAME)
    steps.migration(NAME, from_version=1)(lambda rec: rec.move("w", "nowhere.weight"))
    with pytest.raises(MigrationError) as err:
        tmodel.load(path)
    assert "no child 'nowhere'" in str(err.value)


@pytest.fixture
def run_type() -> Iterator[str]:
    yield "structural.run"
    checkpoint_steps.unregister_checkpoint("structural.run")


def test_a_checkpoint_step_applies_exactly_once(tmp_path: Path, run_type: str) -> None:
    tmodel.register_checkpoint(run_type, version=1)
    path = tmp_path / "run.tmodel"
    w = torch.arange(4.0)
    tmodel.save({"optim": {"lr": 0.1}, "ema": w, "step": 3}, path, checkpoint=run_type)
    calls: list[int] = []
    tmodel.register_checkpoint(run_type, version=2)

    @tmodel.checkpoint_migration(run_type, from_version=1)
    def reorganise(ckpt: Any) -> None:
        calls.append(1)
        ckpt["optimizer"] = ckpt.pop("optim")
        assert isinstance(ckpt["ema"], TensorHandle)
        ckpt["ema_half"] = ckpt["ema"].load() / 2
        ckpt["epoch"] = 0

    loaded = tmodel.load(path)
    assert calls == [1]
    assert list(loaded) == ["ema", "step", "optimizer", "ema_half", "epoch"]
    assert loaded["optimizer"] == {"lr": 0.1} and loaded["epoch"] == 0 and loaded["step"] == 3
    assert torch.equal(loaded["ema"], w) and torch.equal(loaded["ema_half"], w / 2)
    out = tmp_path / "run2.tmodel"
    (line,) = tmodel.migrate_file(path, out)
    assert line.startswith("checkpoint structural.run v1 -> v2: ") and line.endswith(".reorganise")
    with tmodel.open(out) as f:
        assert f.reader.manifest.checkpoint is not None and f.reader.manifest.checkpoint.version == 2
    calls.clear()
    again = tmodel.load(out)
    assert calls == [] and sorted(again) == ["ema", "ema_half", "epoch", "optimizer", "step"]
    assert torch.equal(again["ema"], w) and torch.equal(again["ema_half"], w / 2)


def test_a_checkpoint_newer_than_the_program_is_refused(tmp_path: Path, run_type: str) -> None:
    tmodel.register_checkpoint(run_type, version=3)
    path = tmp_path / "run.tmodel"
    tmodel.save({"x": 1}, path, checkpoint=run_type)
    tmodel.register_checkpoint(run_type, version=2)
    with pytest.raises(LayerVersionError):
        tmodel.load(path)


def test_a_step_breaking_a_child_is_caught_by_the_rebuild_check_naming_it(tmp_path: Path) -> None:
    """What the per-record check cannot see (a child's tensors) the meta-device rebuild check does."""

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

    registry.register("structural.Holder", version=1)(Holder)
    try:
        path = tmp_path / "h.tmodel"
        tmodel.save(Holder(), path)
        registry.unregister("structural.Holder")
        registry.register("structural.Holder", version=2)(Holder)

        @steps.migration("structural.Holder", from_version=1)
        def break_child(rec: LayerRecord) -> None:
            rec.child("lin").rename("weight", "wt")

        with pytest.raises(tmodel.TModelError) as err:
            tmodel.migrate_file(path, tmp_path / "out.tmodel")
        assert err.value.code == "STATE_MISMATCH" and "break_child" in str(err.value)
        assert not (tmp_path / "out.tmodel").exists()
    finally:
        registry.unregister("structural.Holder")
        steps.unregister_steps("structural.Holder")
