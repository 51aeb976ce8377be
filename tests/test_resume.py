"""Resuming training after a layer migration is exact (issue 15 points 1-2): AdamW plus a scheduler trained
3 steps under v1, migrated through a rename, a split and a transpose, resumed 3 steps under v3, gives the
weights and losses that resuming under v1 gives: bit for bit when v3 computes the same arithmetic on the
re-laid-out weights, and within a stated tolerance when its forward changes the arithmetic order."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tmodel
from tmodel.errors import MigrationError, StateMismatch, TModelError
from tmodel.nn import registry, steps
from tmodel.nn.steps import LayerRecord

NAME = "resume.Gate"
D = 4
#: the tolerance when v3's forward multiplies by the transposed weight directly (another kernel path)
RTOL, ATOL = 1e-5, 1e-6


class GateV1(nn.Module):
    """v1: a fused qkv weight and an output weight `w_out`."""

    def __init__(self, dim: int = D) -> None:
        super().__init__()
        self.qkv = nn.Parameter(torch.randn(3 * dim, dim) * 0.3)
        self.w_out = nn.Parameter(torch.randn(dim, dim) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = F.linear(x, self.qkv).chunk(3, dim=-1)
        return F.linear(q * torch.sigmoid(k) + v, self.w_out)


class GateV3(nn.Module):
    """v3: q, k, v split (v2), `w_out` renamed `proj` (v2) and stored transposed as `proj_t` (v3). With
    `same_math` the forward rebuilds the v1 weights, so the arithmetic is v1's exactly."""

    same_math = True

    def __init__(self, dim: int = D) -> None:
        super().__init__()
        self.q = nn.Parameter(torch.zeros(dim, dim))
        self.k = nn.Parameter(torch.zeros(dim, dim))
        self.v = nn.Parameter(torch.zeros(dim, dim))
        self.proj_t = nn.Parameter(torch.zeros(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same_math:
            q, k, v = F.linear(x, torch.cat([self.q, self.k, self.v])).chunk(3, dim=-1)
            return F.linear(q * torch.sigmoid(k) + v, self.proj_t.t().contiguous())
        h = F.linear(x, self.q) * torch.sigmoid(F.linear(x, self.k)) + F.linear(x, self.v)
        return h @ self.proj_t


def split_and_rename(rec: LayerRecord) -> None:
    rec.rename("w_out", "proj")
    rec.split("qkv", {"q": D, "k": D, "v": D})


def transpose_proj(rec: LayerRecord) -> None:
    rec.transpose("proj")
    rec.rename("proj", "proj_t")


@pytest.fixture
def version() -> Iterator[Callable[[int], type[nn.Module]]]:
    def use(n: int) -> type[nn.Module]:
        if registry.known_name(NAME):
            registry.unregister(NAME)
        steps.unregister_steps(NAME)
        cls = GateV1 if n == 1 else GateV3
        registry.register(NAME, version=n)(cls)
        if n == 3:
            steps.migration(NAME, from_version=1)(split_and_rename)
            steps.migration(NAME, from_version=2)(transpose_proj)
        return cls

    yield use
    if registry.known_name(NAME):
        registry.unregister(NAME)
    steps.unregister_steps(NAME)


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    return [(torch.randn(8, D, generator=g), torch.randn(8, 2, generator=g)) for _ in range(6)]


def _train(model: nn.Module, opt: Any, sched: Any, batches: list[Any]) -> list[torch.Tensor]:
    losses = []
    for x, y in batches:
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.detach())
    return losses


def _setup(model: nn.Module) -> tuple[Any, Any]:
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)


def _checkpoint(tmp_path: Path, use: Callable[[int], type[nn.Module]]) -> tuple[Path, Any]:
    """Train 3 steps under v1 and save; then the v1 resume from the file: (path, (losses, model))."""
    cls = use(1)
    torch.manual_seed(0)
    model = nn.Sequential(cls(), nn.Linear(D, 2))
    opt, sched = _setup(model)
    batches = _batches()
    _train(model, opt, sched, batches[:3])
    path = tmp_path / "run.tmodel"
    tmodel.save({"model": model, "optim": opt, "sched": sched, "step": 3, "rng": tmodel.rng_state()}, path)
    torch.manual_seed(123)  # the fresh model's own initial weights are overwritten by the checkpoint's
    resumed = nn.Sequential(cls(), nn.Linear(D, 2))
    opt1, sched1 = _setup(resumed)
    ckpt = tmodel.load_checkpoint(path, model=resumed, optimizer=opt1, scheduler=sched1)
    assert ckpt["step"] == 3 and ckpt["model"] is resumed
    return path, (_train(resumed, opt1, sched1, batches[3:]), resumed, opt1)


def _resume_v3(path: Path, use: Callable[[int], type[nn.Module]]) -> tuple[list[torch.Tensor], Any, Any]:
    cls = use(3)
    model = nn.Sequential(cls(), nn.Linear(D, 2))
    # the optimizer is built in another order than v1's parameters: state is matched by path
    opt = torch.optim.AdamW(reversed(list(model.parameters())), lr=0.05, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    tmodel.load_checkpoint(path, model=model, optimizer=opt, scheduler=sched)
    return _train(model, opt, sched, _batches()[3:]), model, opt


def test_resuming_after_rename_split_and_transpose_is_bit_exact(tmp_path: Path, version: Any) -> None:
    path, (losses1, model1, opt1) = _checkpoint(tmp_path, version)
    GateV3.same_math = True
    losses3, model3, opt3 = _resume_v3(path, version)
    assert all(torch.equal(a, b) for a, b in zip(losses1, losses3, strict=True)), (losses1, losses3)
    g1, g3 = model1[0], model3[0]
    assert torch.equal(torch.cat([g3.q, g3.k, g3.v]), g1.qkv)
    assert torch.equal(g3.proj_t.t(), g1.w_out)
    assert torch.equal(model3[1].weight, model1[1].weight)
    s1, s3 = opt1.state, opt3.state
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(torch.cat([s3[g3.q][key], s3[g3.k][key], s3[g3.v][key]]), s1[g1.qkv][key])
        assert torch.equal(s3[g3.proj_t][key].t(), s1[g1.w_out][key])
    assert all(torch.equal(s3[p]["step"], torch.tensor(6.0)) for p in model3.parameters())
    assert opt3.param_groups[0]["lr"] == opt1.param_groups[0]["lr"] == 0.05 * 0.5**3


def test_resuming_with_another_arithmetic_order_is_within_tolerance(tmp_path: Path, version: Any) -> None:
    path, (losses1, model1, _) = _checkpoint(tmp_path, version)
    GateV3.same_math = False
    try:
        losses3, model3, _ = _resume_v3(path, version)
    finally:
        GateV3.same_math = True
    torch.testing.assert_close(torch.stack(losses3), torch.stack(losses1), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(model3[0].proj_t.t(), model1[0].w_out, rtol=RTOL, atol=ATOL)


def test_migrated_optimizer_state_is_the_v1_state_re_laid_out(tmp_path: Path, version: Any) -> None:
    path, _ = _checkpoint(tmp_path, version)
    before = tmodel.load(path)["optim"]
    version(3)
    after = tmodel.load(path)["optim"]
    # v1 order: qkv, w_out, head.weight, head.bias; v3: q, k, v (the split in qkv's place), proj_t, head
    assert [len(g["params"]) for g in after["param_groups"]] == [6]
    b, a = before["state"], after["state"]
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(torch.cat([a[0][key], a[1][key], a[2][key]]), b[0][key])
        assert torch.equal(a[3][key], b[1][key].t())
        assert torch.equal(a[4][key], b[2][key]) and torch.equal(a[5][key], b[3][key])
    assert all(torch.equal(a[i]["step"], b[0]["step"]) for i in range(3))
    assert a[0]["step"] is not a[1]["step"]  # each piece steps its own counter


def test_migrate_on_disk_carries_the_state_and_copies_untouched_blobs(tmp_path: Path, version: Any) -> None:
    path, _ = _checkpoint(tmp_path, version)
    version(3)
    out = tmp_path / "v3.tmodel"
    assert tmodel.migrate_file(path, out) == [
        "resume.Gate v1 -> v3: split_and_rename -> transpose_proj (1 module)"
    ]
    with tmodel.open(path) as old, tmodel.open(out) as new:
        same = [n for n in new if n.startswith("optim.model.1.")]
        assert same and all(torch.equal(old.get_tensor(n), new.get_tensor(n)) for n in same)
    assert tmodel.load(out)["optim"]["state"].keys() == tmodel.load(path)["optim"]["state"].keys()


def test_replacing_a_parameter_with_state_is_refused_with_what_to_do(tmp_path: Path, version: Any) -> None:
    path, _ = _checkpoint(tmp_path, version)
    version(3)
    steps.unregister_steps(NAME)

    def careless(rec: LayerRecord) -> None:
        rec["w_out"] = rec["w_out"].t()

    steps.migration(NAME, from_version=1)(careless)
    steps.migration(NAME, from_version=2)(transpose_proj)
    with pytest.raises(MigrationError) as err:
        tmodel.load(path)
    assert "'w_out' has optimizer state" in str(err.value) and "rec.transform('w_out', fn)" in str(err.value)


def test_an_optimizer_over_another_model_is_a_state_mismatch(tmp_path: Path, version: Any) -> None:
    path, _ = _checkpoint(tmp_path, version)
    cls = version(1)
    model = nn.Sequential(cls(), nn.Linear(D, 2))
    other = nn.Linear(3, 3)
    opt = torch.optim.AdamW(list(model.parameters()) + list(other.parameters()))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(StateMismatch) as err:
        tmodel.load_checkpoint(path, model=model, optimizer=opt)
    assert "is not a parameter of the model" in str(err.value)
    # refused before anything changed: the model keeps its weights, the optimizer has no state
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()) and not opt.state


def test_rng_states_restore(tmp_path: Path) -> None:
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    path = tmp_path / "rng.tmodel"
    tmodel.save({"rng": tmodel.rng_state()}, path)
    expected = (torch.rand(3), random.random(), np.random.rand(2))
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    tmodel.load_checkpoint(path)
    got = (torch.rand(3), random.random(), np.random.rand(2))
    assert torch.equal(got[0], expected[0]) and got[1] == expected[1] and (got[2] == expected[2]).all()
    loaded = tmodel.load(path)["rng"]
    assert isinstance(loaded, tmodel.RNGState) and loaded.cpu.dtype == torch.uint8


def test_an_optimizer_whose_parameters_are_not_saved_is_refused(tmp_path: Path) -> None:
    t = nn.Parameter(torch.ones(2))
    with pytest.raises(TModelError) as err:
        tmodel.save({"optim": torch.optim.SGD([t], lr=0.1)}, tmp_path / "x.tmodel")
    assert err.value.code == "UNSUPPORTED_TYPE"
    assert 'checkpoint["optim"]: parameter 0 of the optimizer' in str(err.value)


def test_inspect_shows_training_state(
    tmp_path: Path, version: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from tmodel.cli.main import main

    path, _ = _checkpoint(tmp_path, version)
    capsys.readouterr()
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "optimizer: torch.optim.adamw.AdamW, 1 group(s), 4 parameters (4 with state)" in out
    assert "lr_scheduler: torch.optim.lr_scheduler.StepLR" in out and "rng: tmodel.RNGState" in out
    assert main(["inspect", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["training_state"][0] == {
        "kind": "optimizer",
        "class": "torch.optim.adamw.AdamW",
        "groups": 1,
        "parameters": 4,
        "with_state": 4,
    }
    assert doc["checkpoint"] is None
