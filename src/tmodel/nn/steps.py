"""Layer steps, written by layer authors: a step upgrades one module record of a layer from version k to
k+1 (and may declare the way back). Registered with `@tmodel.migration`; `chain` orders them.

Rules: a step edits a `LayerRecord` in place (`layer_record`: the config, its tensors with their optimizer
state, its children). After each step the config is checked against the step's declared config model, so a
broken step is reported as the step that broke it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from ..errors import BadConfig, InvalidArgument, MigrationError, TModelError
from ..manifest.fields import first_error
from .layer_record import KINDS, LayerRecord, ParamState, Slot

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
