"""Layer steps, written by layer authors: a step upgrades one module record of a layer from version k to
k+1 (and may declare the way back). Registered with `@tmodel.migration`; `chain` orders them.

Rules: a step edits a `LayerRecord` in place: the config, and its own tensors by local name; tensor data is
decoded only when a step reads it. After each step the config is checked against the step's declared
config model, so a broken step is reported as the step that broke it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ValidationError

from ..errors import BadConfig, BadName, InvalidArgument, MigrationError, TModelError
from ..limits import DEFAULT_LIMITS
from ..manifest.fields import first_error
from ..manifest.names import check_local_name

KINDS = ("parameter", "buffer")


@dataclass
class Slot:
    """One tensor of a record: where its data comes from, until a step reads or replaces it."""

    kind: str
    requires_grad: bool
    source: int | None = None  # the file's tensor index while untouched
    tensor: torch.Tensor | None = None
    load: Callable[[int], torch.Tensor] | None = None

    @property
    def touched(self) -> bool:
        return self.source is None

    def value(self) -> torch.Tensor:
        if self.tensor is None:
            assert self.source is not None and self.load is not None
            self.tensor = self.load(self.source)
        return self.tensor


class LayerRecord:
    """What a migration step edits: one module's type, version, config and own tensors by local name."""

    def __init__(self, type: str, version: int, config: dict[str, Any], slots: dict[str, Slot]) -> None:
        self.type = type
        self.version = version
        self.config = config
        self._slots = slots

    # -- reading -----------------------------------------------------------------------------------------
    def names(self, kind: str | None = None) -> list[str]:
        return [n for n, s in self._slots.items() if kind is None or s.kind == kind]

    def __contains__(self, name: object) -> bool:
        return name in self._slots

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    def __getitem__(self, name: str) -> torch.Tensor:
        """The tensor's data (decoded now if it was not yet)."""
        return self._slot(name).value()

    def kind(self, name: str) -> str:
        return self._slot(name).kind

    def slots(self) -> dict[str, Slot]:
        return dict(self._slots)

    def _local(self, name: Any) -> None:
        """A name a module's tensor can have (SPEC.md §5.7: no '.', which would make the file unreadable)."""
        try:
            if not isinstance(name, str):
                raise BadName(f"a tensor name must be a str, not {type(name).__name__}")
            check_local_name(name, DEFAULT_LIMITS, f"{self.type} v{self.version}")
        except BadName as exc:
            raise MigrationError(f"{self.type} v{self.version}: tensor name {name!r}: {exc}") from None

    def _slot(self, name: str) -> Slot:
        if name not in self._slots:
            raise MigrationError(
                f"{self.type} v{self.version}: no tensor {name!r} (has {sorted(self._slots)})"
            )
        return self._slots[name]

    # -- editing -----------------------------------------------------------------------------------------
    def __setitem__(self, name: str, tensor: torch.Tensor) -> None:
        """Replace a tensor's data (reshape, transpose, cast...) keeping its kind."""
        slot = self._slot(name)
        self._slots[name] = Slot(slot.kind, slot.requires_grad, tensor=_check(tensor, name))

    def add(
        self, name: str, tensor: torch.Tensor, kind: str = "parameter", requires_grad: bool = True
    ) -> None:
        self._local(name)
        if name in self._slots:
            raise MigrationError(f"{self.type}: tensor {name!r} exists already")
        if kind not in KINDS:
            raise MigrationError(f"{self.type}: kind must be one of {KINDS}")
        self._slots[name] = Slot(kind, requires_grad, tensor=_check(tensor, name))

    def drop(self, name: str) -> torch.Tensor | None:
        """Remove a tensor; returns its data only if it had been read."""
        self._slot(name)
        return self._slots.pop(name).tensor

    def rename(self, old: str, new: str) -> None:
        """Rename without decoding: the data stays where it is in the file."""
        slot = self._slot(old)
        self._local(new)
        if new in self._slots:
            raise MigrationError(f"{self.type}: cannot rename {old!r} to {new!r}, which exists")
        self._slots = {(new if n == old else n): s for n, s in self._slots.items()}
        del slot

    def split(self, name: str, parts: dict[str, int], dim: int = 0) -> None:
        """Replace one tensor by consecutive pieces along `dim`, sized as given (e.g. a fused qkv)."""
        slot = self._slot(name)
        pieces = torch.split(self[name], list(parts.values()), dim=dim)
        self.drop(name)
        for part, piece in zip(parts, pieces, strict=True):
            self.add(part, piece.clone(), slot.kind, slot.requires_grad)

    def merge(self, names: list[str], into: str, dim: int = 0) -> None:
        """Replace several tensors by their concatenation along `dim`."""
        first = self._slot(names[0])
        merged = torch.cat([self[n] for n in names], dim=dim)
        for n in names:
            self.drop(n)
        self.add(into, merged, first.kind, first.requires_grad)


def _check(tensor: Any, name: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise MigrationError(
            f"tensor {name!r}: a step must store a torch.Tensor, not {type(tensor).__name__}"
        )
    return tensor.detach()


StepFn = Callable[[LayerRecord], None]


@dataclass(frozen=True)
class Step:
    """One registered upgrade of a layer from `from_version` to `from_version + 1`."""

    layer: str
    from_version: int
    upgrade: StepFn
    downgrade: StepFn | None = None
    config: type[BaseModel] | None = None
    name: str = field(default="")

    @property
    def to_version(self) -> int:
        return self.from_version + 1

    def label(self) -> str:
        return f"{self.layer} v{self.from_version}->v{self.to_version} ({self.name})"


_STEPS: dict[str, dict[int, list[Step]]] = {}


def migration(
    layer: str, from_version: int, *, downgrade: StepFn | None = None, config: type[BaseModel] | None = None
) -> Callable[[StepFn], StepFn]:
    """Register an upgrade step of `layer` from `from_version` to `from_version + 1`.

    >>> @tmodel.migration("acme.Gate", from_version=1)
    ... def split_qkv(rec):
    ...     rec.split("qkv", {"q": 64, "k": 64, "v": 64})
    """
    if from_version < 1:
        raise InvalidArgument("from_version must be >= 1", layer=layer, version=from_version)

    def decorate(fn: StepFn) -> StepFn:
        step = Step(layer, from_version, fn, downgrade, config, getattr(fn, "__qualname__", "step"))
        _STEPS.setdefault(layer, {}).setdefault(from_version, []).append(step)
        return fn

    return decorate


def unregister_steps(layer: str) -> None:
    """Forget a layer's steps (tests and interactive sessions)."""
    _STEPS.pop(layer, None)


def steps_of(layer: str) -> dict[int, list[Step]]:
    return {k: list(v) for k, v in sorted(_STEPS.get(layer, {}).items())}


def layers_with_steps() -> list[str]:
    return sorted(_STEPS)


def run_step(step: Step, record: LayerRecord, down: bool = False) -> None:
    """Run one step on a record and check the result against the step's declared config model. An error
    names the layer, the version the step starts from and the step."""
    try:
        _run_step(step, record, down)
    except TModelError as exc:
        exc.add_context(
            layer=step.layer, version=step.to_version if down else step.from_version, step=step.name
        )
        raise


def _run_step(step: Step, record: LayerRecord, down: bool) -> None:
    fn = step.downgrade if down else step.upgrade
    assert fn is not None
    try:
        fn(record)
    except MigrationError:
        raise
    except Exception as exc:  # a step is user code: report which one failed
        raise MigrationError(f"{step.label()} failed: {type(exc).__name__}: {exc}") from exc
    record.version = step.from_version if down else step.to_version
    if step.config is not None and not down:
        try:
            step.config.model_validate(record.config)
        except ValidationError as exc:
            raise BadConfig(
                f"{step.label()} left a config that fails v{step.to_version}: {first_error(exc)}"
            ) from None
