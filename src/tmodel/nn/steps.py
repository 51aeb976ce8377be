"""Layer steps, written by layer authors: a step upgrades one module record of a layer from version k to
k+1 (and may declare the way back). Registered with `@tmodel.migration`; `chain` orders them.

Rules: a step edits a `LayerRecord` in place (`layer_record`: the config, its tensors with their optimizer
state, its children). After each step the config is checked against the step's declared config model, and
after a record's last step its tensors against what the registered class builds (`check_against_class`),
so a broken step is reported as the step that broke it; `config_ops` describes a step's config edits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ValidationError

from ..errors import BadConfig, InvalidArgument, MigrationError, TModelError
from ..manifest.fields import first_error
from ..manifest.nodes import ModuleRef
from .layer_record import KINDS, LayerRecord, Opaque, ParamState, Slot
from .registry import registered_spec

__all__ = ["KINDS", "LayerRecord", "ParamState", "Slot", "Step", "migration", "run_step"]

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


def config_ops(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """A step's config edits as lines: renamed (a removed and an added field of equal value), removed,
    added and changed fields."""
    removed = [k for k in before if k not in after]
    added = [k for k in after if k not in before]
    ops = []
    for k in list(removed):
        twin = next((a for a in added if _same_value(before[k], after[a])), None)
        if twin is not None:
            removed.remove(k)
            added.remove(twin)
            ops.append(f"rename config {k} -> {twin}")
    ops += [f"drop config {k}" for k in removed]
    ops += [f"add config {k} = {after[k]!r}" for k in added]
    changed = [k for k in before if k in after and not _same_value(before[k], after[k])]
    ops += [f"set config {k} = {after[k]!r} (was {before[k]!r})" for k in changed]
    return ops


def _same_value(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # values whose comparison is not a bool
        return False


def check_against_class(layer: LayerRecord, last: Step) -> None:
    """MIGRATION, naming the step, when the tensors a record's steps left differ in names or shapes from
    those the registered class builds from the migrated config (built on the meta device; a config that
    holds module references or registered names, or that the class cannot build there, is left to the
    rebuild check)."""
    config = layer.config
    if any(isinstance(v, (ModuleRef, Opaque)) for v in _config_values(config)):
        return
    spec = registered_spec(layer.type)
    try:
        with torch.device("meta"):
            built = spec.from_config(dict(config))
    except Exception:  # a constructor that needs real tensors: the rebuild check answers for it
        return
    want = {n: tuple(p.shape) for n, p in built._parameters.items() if p is not None}
    want |= {
        n: tuple(b.shape)
        for n, b in built._buffers.items()
        if b is not None and n not in built._non_persistent_buffers_set
    }
    have = {n: slot.size() for n, slot in layer.slots().items()}
    problems = [f"{n!r} is missing" for n in want if n not in have]
    problems += [f"{n!r} is not one the class has" for n in have if n not in want]
    problems += [
        f"{n!r} is {list(have[n])}, the class makes {list(want[n])}"
        for n in want
        if n in have and have[n] != want[n]
    ]
    if problems:
        raise MigrationError(
            f"{last.label()} left tensors the v{layer.version} class does not build: "
            + "; ".join(problems[:5]),
            layer=layer.type,
            version=last.from_version,
            step=last.name,
        )


def _config_values(config: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    stack = list(config.values())
    while stack:
        v = stack.pop()
        out.append(v)
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
    return out
