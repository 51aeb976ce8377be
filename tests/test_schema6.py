"""Schema version 6: training state round-trips through the reference writer and reader (SPEC.md §5.4).
An optimizer saved with its model loads as the state dict torch's `state_dict()` gives, bit for bit; LR
schedulers and gradient scalers as their state dicts; the random generators' states restore to the same
numbers. An optimizer whose parameters no saved module holds cannot be keyed by parameter and is refused."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import tmodel
from tmodel import TModelError
from tmodel.archive.reader import Reader
from tmodel.training import RNGState, rng_state


def _assert_same_state(got: Any, want: Any, where: str = "state") -> None:
    """Equal structure and values; tensors bit for bit with their dtype and shape."""
    if isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor), where
        assert got.dtype == want.dtype and got.shape == want.shape, where
        assert torch.equal(got.reshape(-1).view(torch.uint8), want.reshape(-1).view(torch.uint8)), where
        return
    assert type(got) is type(want), (where, type(got), type(want))
    if isinstance(want, dict):
        assert list(got) == list(want), where
        for k in want:
            _assert_same_state(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same_state(g, w, f"{where}[{i}]")
    else:
        assert got == want or (got != got and want != want), (where, got, want)  # NaN equals NaN here


def _mlp(widths: list[int], bias: list[bool]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b, bias=bias[i]))
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, sched: Any = None) -> None:
    g = torch.Generator().manual_seed(11)
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(4, first.in_features, generator=g)).square().mean().backward()
        opt.step()
        if sched is not None:
            sched.step()


def _roundtrip(obj: Any, path: Path) -> Any:
    tmodel.save(obj, path)
    return tmodel.load(path)


def _two_group_model() -> tuple[nn.Sequential, list[dict[str, Any]]]:
    torch.manual_seed(0)
    model = _mlp([3, 5, 4, 2], [True, False, True])
    groups = [
        {"params": list(model[0].parameters()) + list(model[2].parameters())},
        {"params": model[4].parameters(), "lr": 0.003, "weight_decay": 0.0},
    ]
    return model, groups


OPTIMIZERS = {
    "adamw": lambda groups: torch.optim.AdamW(groups, lr=0.01, betas=(0.85, 0.95), amsgrad=True),
    "sgd_momentum": lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda groups: torch.optim.Adam(groups, lr=0.01),
    "rmsprop": lambda groups: torch.optim.RMSprop(groups, lr=0.01, momentum=0.5, centered=True),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_state_is_bit_exact(tmp_path: Path, name: str) -> None:
    model, groups = _two_group_model()
    opt = OPTIMIZERS[name](groups)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)  # sets initial_lr in each group
    _train(model, opt, 3, sched)
    want = opt.state_dict()
    got = _roundtrip({"model": model, "optim": opt}, tmp_path / "ckpt.tmodel")["optim"]
    assert set(got) == {"state", "param_groups"}
    _assert_same_state(got["state"], want["state"], "state")
    assert got["param_groups"] == want["param_groups"]  # hyperparameters, initial_lr, params by id
    assert all("initial_lr" in g for g in got["param_groups"])
    kinds = {k: v.dtype for k, v in got["state"][0].items() if isinstance(v, torch.Tensor)}
    assert kinds == {k: v.dtype for k, v in want["state"][0].items() if isinstance(v, torch.Tensor)}


def test_sgd_momentum_buffers_and_resuming_are_exact(tmp_path: Path) -> None:
    """The loaded state dict resumes an optimizer over a rebuilt model exactly as the original goes on."""
    model, groups = _two_group_model()
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    _train(model, opt, 2)
    loaded = _roundtrip({"model": model, "optim": opt}, tmp_path / "sgd.tmodel")
    assert [sorted(s) for s in loaded["optim"]["state"].values()] == [["momentum_buffer"]] * 5
    model2 = loaded["model"]
    opt2 = torch.optim.SGD(
        [
            {"params": list(model2[0].parameters()) + list(model2[2].parameters())},
            {"params": model2[4].parameters(), "lr": 0.003, "weight_decay": 0.0},
        ],
        lr=0.5,  # replaced by the loaded groups' settings
        momentum=0.9,
    )
    opt2.load_state_dict(loaded["optim"])
    _train(model, opt, 2)
    _train(model2, opt2, 2)
    for (name, p), (_, p2) in zip(model.named_parameters(), model2.named_parameters(), strict=True):
        assert torch.equal(p, p2), name
    _assert_same_state(opt2.state_dict()["state"], opt.state_dict()["state"])


def test_an_optimizer_before_its_model_and_steps_not_taken(tmp_path: Path) -> None:
    """Dict order does not matter (parameters are keyed once every module is recorded), and a parameter
    the optimizer has not stepped yet has no state."""
    model, groups = _two_group_model()
    head = nn.Linear(2, 2)  # saved, in the optimizer, never part of a forward: never stepped
    opt = torch.optim.AdamW(groups, lr=0.01)
    opt.add_param_group({"params": head.parameters(), "lr": 1.0})
    _train(model, opt, 1)
    want = opt.state_dict()
    got = _roundtrip({"optim": opt, "model": model, "head": head}, tmp_path / "first.tmodel")
    assert list(got) == ["optim", "model", "head"]
    assert sorted(got["optim"]["state"]) == [0, 1, 2, 3, 4]  # the head's two parameters have none
    _assert_same_state(got["optim"]["state"], want["state"])
    assert got["optim"]["param_groups"] == want["param_groups"]
    with Reader(tmp_path / "first.tmodel") as r:
        (optim,) = [v for k, v in r.manifest.root.items if k == "optim"]
        assert [(p.module, p.name, p.group) for p in optim.value.params] == [
            (1, "weight", 0),
            (1, "bias", 0),
            (3, "weight", 0),
            (5, "weight", 1),
            (5, "bias", 1),
            (7, "weight", 2),
            (7, "bias", 2),
        ]


def test_tied_parameters_are_keyed_once(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[1].weight = model[0].weight
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    _train(model, opt, 2)
    got = _roundtrip({"model": model, "optim": opt}, tmp_path / "tied.tmodel")
    _assert_same_state(got["optim"]["state"], opt.state_dict()["state"])
    assert got["optim"]["param_groups"] == opt.state_dict()["param_groups"]
    assert got["model"][1].weight is got["model"][0].weight


def test_lr_schedulers_round_trip(tmp_path: Path) -> None:
    class Warmup:
        """A callable object: LambdaLR saves its __dict__ (a plain function is saved as None)."""

        def __init__(self, steps: int) -> None:
            self.steps = steps

        def __call__(self, epoch: int) -> float:
            return min(1.0, (epoch + 1) / self.steps)

    model, groups = _two_group_model()
    opt = torch.optim.SGD(groups, lr=0.1)
    step = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.3)
    lam = torch.optim.lr_scheduler.LambdaLR(opt, [lambda e: 0.9**e, Warmup(4)])
    for _ in range(3):
        _train(model, opt, 1)
        step.step()
        lam.step()
    got = _roundtrip({"model": model, "optim": opt, "step": step, "lambda": lam}, tmp_path / "s.tmodel")
    assert got["step"] == step.state_dict()
    assert got["lambda"] == lam.state_dict()
    assert got["lambda"]["lr_lambdas"] == [None, {"steps": 4}]
    fresh = torch.optim.lr_scheduler.StepLR(torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1), 5)
    fresh.load_state_dict(got["step"])
    assert fresh.state_dict() == step.state_dict()
    with Reader(tmp_path / "s.tmodel") as r:
        kinds = {k: (v.value.kind, v.value.cls) for k, v in r.manifest.root.items if k in ("step", "lambda")}
    assert kinds == {
        "step": ("lr_scheduler", "torch.optim.lr_scheduler.StepLR"),
        "lambda": ("lr_scheduler", "torch.optim.lr_scheduler.LambdaLR"),
    }


def test_grad_scalers_round_trip(tmp_path: Path) -> None:
    off = torch.amp.GradScaler("cpu", enabled=False)
    on = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    assert off.state_dict() == {}  # what a disabled scaler gives: nothing to restore
    got = _roundtrip({"off": off, "on": on}, tmp_path / "scaler.tmodel")
    assert got["off"] == {} and type(got["off"]) is dict
    assert got["on"] == on.state_dict()
    assert got["on"]["scale"] == 1024.0 and got["on"]["growth_interval"] == 7
    fresh = torch.amp.GradScaler("cpu")
    fresh.load_state_dict(got["on"])
    assert fresh.state_dict() == on.state_dict()
    torch.amp.GradScaler("cpu", enabled=False).load_state_dict(got["off"])
    with Reader(tmp_path / "scaler.tmodel") as r:
        assert {k: v.value.kind for k, v in r.manifest.root.items} == {
            "off": "grad_scaler",
            "on": "grad_scaler",
        }


def test_rng_state_restores_the_same_numbers(tmp_path: Path) -> None:
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    _ = (torch.rand(7), random.random(), np.random.rand())  # move the generators off their seeds
    state = rng_state()
    tmodel.save({"rng": state, "epoch": 3}, tmp_path / "rng.tmodel")
    want = (torch.rand(5), [random.random() for _ in range(5)], np.random.rand(5), torch.randn(2, 2))
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    loaded = tmodel.load(tmp_path / "rng.tmodel")["rng"]
    assert isinstance(loaded, RNGState)
    assert loaded.cpu.dtype == torch.uint8 and torch.equal(loaded.cpu, state.cpu)
    assert loaded.python == state.python and type(loaded.python) is tuple
    loaded.restore()
    got = (torch.rand(5), [random.random() for _ in range(5)], np.random.rand(5), torch.randn(2, 2))
    assert torch.equal(got[0], want[0]) and got[1] == want[1] and torch.equal(got[3], want[3])
    assert np.array_equal(got[2], want[2])
    with Reader(tmp_path / "rng.tmodel") as r:
        (node,) = [v for k, v in r.manifest.root.items if k == "rng"]
        assert (node.value.kind, node.value.cls) == ("rng", "tmodel.RNGState")
        assert [k for k, _ in node.value.state.items] == ["torch", "python", "numpy"]


def test_a_full_training_checkpoint(tmp_path: Path) -> None:
    model, groups = _two_group_model()
    opt = torch.optim.AdamW(groups, lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5**e)
    _train(model, opt, 2, sched)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    ckpt = {"model": model, "optim": opt, "sched": sched, "scaler": scaler, "rng": rng_state(), "epoch": 2}
    got = _roundtrip(ckpt, tmp_path / "full.tmodel")
    assert list(got) == list(ckpt)
    _assert_same_state(got["optim"]["state"], opt.state_dict()["state"])
    assert got["sched"] == sched.state_dict() and got["scaler"] == {} and got["epoch"] == 2
    with Reader(tmp_path / "full.tmodel") as r:
        assert r.manifest.schema_version == 7 and r.manifest.checkpoint is None


def _refused(obj: Any, path: Path) -> TModelError:
    with pytest.raises(TModelError) as err:
        tmodel.save(obj, path)
    assert not path.exists()
    return err.value


def test_an_optimizer_over_tensors_no_saved_module_holds_is_refused(tmp_path: Path) -> None:
    loose = nn.Parameter(torch.ones(3))
    err = _refused({"optim": torch.optim.SGD([loose], lr=0.1)}, tmp_path / "loose.tmodel")
    assert err.code == "UNSUPPORTED_TYPE" and 'checkpoint["optim"]' in str(err)
    model, groups = _two_group_model()
    opt = torch.optim.AdamW(groups, lr=0.01)
    assert _refused({"optim": opt}, tmp_path / "no_model.tmodel").code == "UNSUPPORTED_TYPE"
    opt.add_param_group({"params": [loose]})
    err = _refused({"model": model, "optim": opt}, tmp_path / "one_loose.tmodel")
    assert err.code == "UNSUPPORTED_TYPE" and "group 2" in str(err)
    # the advice the message gives works: a state dict keyed by position is plain data
    sd = _roundtrip({"model": model, "optim": opt.state_dict()}, tmp_path / "by_position.tmodel")["optim"]
    assert sd["param_groups"] == opt.state_dict()["param_groups"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    widths=st.lists(st.integers(1, 4), min_size=2, max_size=5),
    data=st.data(),
    kind=st.sampled_from(sorted(OPTIMIZERS)),
    steps=st.integers(0, 3),
)
def test_random_models_and_group_splits_round_trip(
    tmp_path: Path, widths: list[int], data: st.DataObject, kind: str, steps: int
) -> None:
    bias = data.draw(st.lists(st.booleans(), min_size=len(widths) - 1, max_size=len(widths) - 1))
    torch.manual_seed(data.draw(st.integers(0, 2**16)))
    model = _mlp(widths, bias)
    params = list(model.parameters())
    order = data.draw(st.permutations(range(len(params))))
    n_groups = data.draw(st.integers(1, min(3, len(params))))
    inner = st.integers(1, max(1, len(params) - 1))
    cuts = sorted(data.draw(st.lists(inner, min_size=n_groups - 1, max_size=n_groups - 1, unique=True)))
    bounds = [0, *cuts, len(params)]
    groups = [
        {"params": [params[i] for i in order[a:b]], "lr": 0.01 * (g + 1)}
        for g, (a, b) in enumerate(itertools.pairwise(bounds))
    ]
    opt = OPTIMIZERS[kind](groups)
    _train(model, opt, steps)
    want = opt.state_dict()
    got = _roundtrip({"optim": opt, "model": model}, tmp_path / "h.tmodel")["optim"]
    _assert_same_state(got["state"], want["state"])
    assert got["param_groups"] == want["param_groups"]
