"""Checkpoint steps: versioned edits of a whole checkpoint's object tree (like Lightning's
`on_load_checkpoint`, but recorded, so each applies exactly once). A program registers its checkpoint
layout's type and version (`register_checkpoint`), saves with `save(..., checkpoint=type)`, and ships steps
from each version to the next (`checkpoint_migration`); a file records the version it was written at.

Rules: a step gets the tree as Python containers whose tensors, modules and training state are handles
(`TensorHandle.load()` reads a tensor's data; any handle can be moved, kept or dropped); it may put new
tensors and plain values anywhere (`view` and `unview` turn a wire tree into that and back). Layer steps
run first, so a checkpoint step sees current layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InvalidArgument, LayerVersionError, MigrationError, TModelError
from ..manifest.names import check_type_name
from ..tensors.values import NOT_PLAIN, plain_node, room

CheckpointFn = Callable[[Any], Any]


@dataclass(frozen=True)
class CheckpointStep:
    """One registered upgrade of a checkpoint layout from `from_version` to `from_version + 1`."""

    type: str
    from_version: int
    upgrade: CheckpointFn
    name: str = field(default="")

    def label(self) -> str:
        return f"checkpoint {self.type} v{self.from_version}->v{self.from_version + 1} ({self.name})"


_VERSIONS: dict[str, int] = {}
_STEPS: dict[str, dict[int, CheckpointStep]] = {}


def register_checkpoint(type: str, version: int) -> None:
    """Declare the current version of this program's checkpoint layout `type` (a dotted name)."""
    check_type_name(type, "checkpoint type")
    if version < 1:
        raise InvalidArgument("a checkpoint version is >= 1", layer=type, version=version)
    _VERSIONS[type] = version


def unregister_checkpoint(type: str) -> None:
    """Forget a checkpoint type and its steps (tests and interactive sessions)."""
    _VERSIONS.pop(type, None)
    _STEPS.pop(type, None)


def checkpoint_version(type: str) -> int:
    if type not in _VERSIONS:
        raise InvalidArgument(f"checkpoint type {type!r} is not registered: tmodel.register_checkpoint first")
    return _VERSIONS[type]


def checkpoint_migration(type: str, from_version: int) -> Callable[[CheckpointFn], CheckpointFn]:
    """Register the step of checkpoint layout `type` from `from_version` to the next. The step edits the
    tree in place, or returns a new one.

    >>> @tmodel.checkpoint_migration("acme.run", from_version=1)
    ... def rename_optimizer(ckpt):
    ...     ckpt["optimizer"] = ckpt.pop("optim")
    """
    if from_version < 1:
        raise InvalidArgument("from_version must be >= 1", layer=type, version=from_version)

    def decorate(fn: CheckpointFn) -> CheckpointFn:
        steps = _STEPS.setdefault(type, {})
        if from_version in steps:
            raise InvalidArgument(f"checkpoint {type}: a step from version {from_version} exists (a branch)")
        steps[from_version] = CheckpointStep(type, from_version, fn, getattr(fn, "__qualname__", "step"))
        return fn

    return decorate


def steps_for(type: str, version: int) -> list[CheckpointStep]:
    """The steps from a file's checkpoint version to the registered one (none for a type this program
    does not register: its tree is loaded as written)."""
    current = _VERSIONS.get(type)
    if current is None:
        return []
    if version > current:
        raise LayerVersionError(
            f"checkpoint {type}: the file is version {version}, this program registers version {current}",
            layer=type,
            version=version,
        )
    steps = _STEPS.get(type, {})
    missing = [k for k in range(version, current) if k not in steps]
    if missing:
        raise MigrationError(
            f"checkpoint {type}: no step from version {missing[0]} to {missing[0] + 1} (a gap in the chain)",
            layer=type,
            version=missing[0],
        )
    return [steps[k] for k in range(version, current)]


@dataclass(frozen=True)
class TensorHandle:
    """A tensor of the file, not read until `load()`; keeping or moving the handle copies no data."""

    index: int
    reader: Callable[[int], torch.Tensor] = field(compare=False, repr=False)

    def load(self) -> torch.Tensor:
        return self.reader(self.index)


@dataclass(frozen=True)
class Handle:
    """A module, optimizer or stateful node of the file, carried as it is."""

    wire: Any


def run(step: CheckpointStep, tree: Any) -> Any:
    """Run a step on a tree; an error names the step."""
    try:
        out = step.upgrade(tree)
    except TModelError as exc:
        exc.add_context(layer=step.type, version=step.from_version, step=step.name)
        raise
    except Exception as exc:  # a step is user code
        raise MigrationError(f"{step.label()} failed: {type(exc).__name__}: {exc}") from exc
    return tree if out is None else out


def view(wire: Any, read: Callable[[int], torch.Tensor]) -> Any:
    """A wire tree as a checkpoint step edits it: containers as Python ones, plain tensors as TensorHandles,
    everything else as Handles."""
    if type(wire) is not dict:
        return wire
    key, value = next(iter(wire.items()))
    if key == "list" or key == "tuple":
        items = [view(v, read) for v in value]
        return items if key == "list" else tuple(items)
    if key == "dict" and all(type(k) in (type(None), bool, int, float, str, bytes) for k, _ in value):
        return {k: view(v, read) for k, v in value}
    if key == "tensor":
        return TensorHandle(value, read)
    return Handle(wire)


def unview(
    v: Any, add: Callable[[tuple[str, ...], torch.Tensor], int], keys: tuple[str, ...] = (), depth: int = 2
) -> Any:
    """A step's tree back to wire form; `add` takes each new tensor (with its key path) and gives its
    index."""
    if isinstance(v, TensorHandle):
        return {"tensor": v.index}
    if isinstance(v, Handle):
        return v.wire
    if isinstance(v, torch.Tensor):
        return {"tensor": add(keys, v.detach().contiguous())}
    room("a checkpoint step's tree", depth, MigrationError)
    if type(v) is list or type(v) is tuple:
        tag = "list" if type(v) is list else "tuple"
        return {tag: [unview(x, add, (*keys, str(i)), depth + 2) for i, x in enumerate(v)]}
    if type(v) is dict:
        items = []
        for k, x in v.items():
            key = plain_node(k, f"checkpoint key {k!r}", MigrationError)
            if key is NOT_PLAIN or type(key) is dict:
                raise MigrationError(f"a checkpoint step left a key of type {type(k).__name__}")
            items.append([key, unview(x, add, (*keys, str(k)), depth + 3)])
        return {"dict": items}
    node = plain_node(v, "a checkpoint step's value", MigrationError)
    if node is NOT_PLAIN:
        raise MigrationError(f"a checkpoint step left a value of type {type(v).__name__}, which is not data")
    return node
