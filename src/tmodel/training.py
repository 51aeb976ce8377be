"""Training state as checkpoint values (SPEC.md §5.4, schema 6): optimizers by parameter, LR schedulers and
gradient scalers as their state dicts, and the random generators' states (`RNGState`).

Rules: an optimizer's per-parameter state is keyed by the module record and local name of its parameter,
never by position, so layer migrations carry it with the parameter; a parameter no saved module holds
cannot be keyed and is refused. Loading gives what the object's `load_state_dict` takes: for an optimizer
the state dict torch's `state_dict()` gives (ids in the saved order), and `optimizer_state_for` maps saved
state onto any optimizer by parameter path, so the order in which it was built does not matter.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import chain
from typing import Any

import torch
from torch import nn

from .errors import StateMismatch, UnsupportedType
from .manifest.names import CLASS_NAME, CLASS_NAME_BYTES
from .nn.registry import qualified_name

try:  # numpy is optional: its generator's state is captured when it is installed
    import numpy
except ImportError:  # pragma: no cover - numpy ships with the test environment
    numpy = None  # type: ignore[assignment]


@dataclass(eq=False)
class RNGState:
    """The states of torch's CPU generator (and CUDA's, when available), Python's `random` and numpy's
    global generator: saved in a checkpoint, restored on resume. `RNGState.capture()` takes them now."""

    cpu: torch.Tensor
    python: Any
    numpy: Any = None
    cuda: list[torch.Tensor] | None = None

    @classmethod
    def capture(cls) -> RNGState:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        state = numpy.random.get_state() if numpy is not None else None
        return cls(torch.get_rng_state(), random.getstate(), state, cuda)

    def restore(self) -> None:
        """Set every generator this state holds (a CUDA state only where CUDA is available)."""
        torch.set_rng_state(self.cpu)
        random.setstate(self.python)
        if self.numpy is not None and numpy is not None:
            numpy.random.set_state(self.numpy)
        if self.cuda is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self.cuda)

    def as_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"torch": self.cpu, "python": self.python}
        if self.numpy is not None:
            out["numpy"] = self.numpy
        if self.cuda is not None:
            out["cuda"] = self.cuda
        return out

    @classmethod
    def from_state(cls, state: Any) -> RNGState:
        if type(state) is not dict or not {"torch", "python"} <= state.keys():
            raise UnsupportedType("a stateful rng node holds a dict with 'torch' and 'python' states")
        if not isinstance(state["torch"], torch.Tensor) or state["torch"].dtype != torch.uint8:
            raise UnsupportedType("an rng state's 'torch' entry is a uint8 tensor")
        return cls(state["torch"], state["python"], state.get("numpy"), state.get("cuda"))


def rng_state() -> RNGState:
    """The random generators' states now, to save in a checkpoint (`tmodel.save({"rng": rng_state()})`)."""
    return RNGState.capture()


def stateful(obj: Any) -> tuple[str, str, dict[str, Any]] | None:
    """(kind, class name, state) of an LR scheduler, gradient scaler or RNGState; None for anything else."""
    if isinstance(obj, RNGState):
        return "rng", "tmodel.RNGState", obj.as_state()
    if isinstance(obj, torch.optim.lr_scheduler.LRScheduler):
        return "lr_scheduler", class_name(type(obj)), obj.state_dict()
    if isinstance(obj, torch.amp.GradScaler):
        return "grad_scaler", class_name(type(obj)), obj.state_dict()
    return None


def class_name(cls: type) -> str:
    """The class's qualified name as a file records it (shown, never looked up)."""
    name = qualified_name(cls)
    if len(name) > CLASS_NAME_BYTES or not CLASS_NAME.fullmatch(name):
        return cls.__name__ if cls.__name__.isidentifier() else "object"
    return name


def state_value(kind: str, state: Any) -> Any:
    """What a stateful node loads as: the state dict, or an RNGState."""
    return RNGState.from_state(state) if kind == "rng" else state


@dataclass(frozen=True)
class SavedParam:
    """One optimizer parameter as saved: its group, where it is (record, local name) and its state."""

    group: int
    module: int
    name: str
    state: dict[str, Any]
    keys: tuple[str, ...]  # the parameter's key path where it was recorded (names its state's tensors)


def optimizer_params(
    opt: torch.optim.Optimizer,
    where: Callable[[nn.Parameter], tuple[int, str, tuple[str, ...]] | None],
    path: str,
) -> tuple[list[dict[str, Any]], list[SavedParam]]:
    """An optimizer's groups (settings only) and its parameters keyed by record and local name; a
    parameter no saved module holds is UNSUPPORTED_TYPE, naming it."""
    sd = opt.state_dict()
    extra = sorted(set(sd) - {"state", "param_groups"})
    if extra:
        raise UnsupportedType(f"{path}: optimizer state_dict key {extra[0]!r} is not one tmodel can key")
    ids = list(chain.from_iterable(g["params"] for g in sd["param_groups"]))
    objects = list(chain.from_iterable(g["params"] for g in opt.param_groups))
    if len(ids) != len(objects):
        raise UnsupportedType(f"{path}: the optimizer's state_dict does not list its parameters")
    groups = [{k: v for k, v in g.items() if k not in ("params", "param_names")} for g in sd["param_groups"]]
    params: list[SavedParam] = []
    k = 0
    for gi, g in enumerate(sd["param_groups"]):
        for _ in g["params"]:
            found = where(objects[k])
            if found is None:
                raise UnsupportedType(
                    f"{path}: parameter {k} of the optimizer (group {gi}, shape {list(objects[k].shape)}) "
                    "is not a parameter of a module saved in this checkpoint, so its state cannot follow it: "
                    "save the model in the same checkpoint, or save optimizer.state_dict() (by position)"
                )
            params.append(SavedParam(gi, *found[:2], dict(sd["state"].get(ids[k], {})), found[2]))
            k += 1
    return groups, params


def state_dict_of(groups: list[dict[str, Any]], params: list[tuple[int, dict[str, Any]]]) -> Any:
    """A torch optimizer state dict from saved groups and (group, state) in the saved order."""
    out_groups = [{**g, "params": []} for g in groups]
    state: dict[int, Any] = {}
    for i, (group, st) in enumerate(params):
        out_groups[group]["params"].append(i)
        if st:
            state[i] = st
    return {"state": state, "param_groups": out_groups}


def optimizer_state_for(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    groups: list[dict[str, Any]],
    saved: Iterable[tuple[int, str, dict[str, Any]]],
    strict: bool = True,
) -> dict[str, Any]:
    """A state dict for `optimizer` (built over `model`'s parameters in any order) from saved state keyed
    by parameter path: groups match by position, parameters by path (any of a tied parameter's names);
    a parameter with no saved state starts fresh. STATE_MISMATCH for a different number of groups, and
    (strict) for saved state of a parameter the optimizer does not hold."""
    if len(groups) != len(optimizer.param_groups):
        raise StateMismatch(
            f"the checkpoint's optimizer has {len(groups)} parameter groups, this one "
            f"{len(optimizer.param_groups)}"
        )
    by_path = {path: st for _, path, st in saved}
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    used: set[str] = set()
    state: dict[int, Any] = {}
    out_groups = []
    k = 0
    for g, current in zip(groups, optimizer.param_groups, strict=True):
        ids = []
        for p in current["params"]:
            if id(p) not in names:
                raise StateMismatch(
                    f"parameter {k} of the optimizer (shape {list(p.shape)}) is not a parameter of the model"
                )
            hit = next((n for n in names[id(p)] if n in by_path), None)
            if hit is not None:
                used.add(hit)
                if by_path[hit]:
                    state[k] = by_path[hit]
            ids.append(k)
            k += 1
        out_groups.append({**g, "params": ids})
    unused = sorted(set(by_path) - used)
    if strict and unused:
        raise StateMismatch(
            f"the checkpoint holds optimizer state for parameters this optimizer does not hold: {unused[:8]}"
            + (f" and {len(unused) - 8} more" if len(unused) > 8 else "")
        )
    return {"state": state, "param_groups": out_groups}
