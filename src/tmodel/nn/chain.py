"""The chain of a layer's steps: which steps take a record from one version to another, and whether every
registered layer's chain is complete. Computed from the registered steps alone, so gaps, branches and
files newer than the code are found without touching a file.

Rules: one step per (layer, from_version); a chain runs from the oldest version a layer supports to the
version its class registers; a downgrade runs the steps' way back, in reverse.
"""

from __future__ import annotations

from ..errors import LayerVersionError, MigrationError
from .registry import all_specs, registered_spec
from .steps import Step, layers_with_steps, steps_of


def steps_between(layer: str, from_version: int, to_version: int) -> list[Step]:
    """The ordered steps from one version to another (downgrades run the steps' way back, in reverse)."""
    steps = steps_of(layer)
    out: list[Step] = []
    lo, hi = sorted((from_version, to_version))
    for k in range(lo, hi):
        found = steps.get(k, [])
        if len(found) > 1:
            names = ", ".join(s.name for s in found)
            raise MigrationError(
                f"{layer}: {len(found)} steps from version {k} ({names}): a branch",
                layer=layer,
                version=k,
            )
        if not found:
            raise MigrationError(
                f"{layer}: no migration step from version {k} to {k + 1} (a gap in the chain)",
                layer=layer,
                version=k,
            )
        out.append(found[0])
    if from_version > to_version:
        for step in out:
            if step.downgrade is None:
                raise MigrationError(
                    f"{step.label()} declares no downgrade",
                    layer=layer,
                    version=step.to_version,
                    step=step.name,
                )
        out.reverse()
    return out


def upgrade_steps(layer: str, file_version: int) -> list[Step]:
    """The steps that bring a record written as `file_version` to the version the program registers."""
    current = registered_spec(layer).version
    if file_version > current:
        raise LayerVersionError(
            f"{layer}: the file has layer version {file_version}, this program registers version {current}; "
            "upgrade the code that defines it",
            layer=layer,
            version=file_version,
        )
    return steps_between(layer, file_version, current)


def check_chains(oldest: dict[str, int] | None = None) -> list[str]:
    """Problems in every registered layer's chain: gaps, branches, steps beyond the registered version.
    `oldest` gives the oldest version each layer supports (default: its lowest step, else its version)."""
    problems = []
    for spec in all_specs():
        steps = steps_of(spec.name)
        start = (oldest or {}).get(spec.name, min(steps, default=spec.version))
        for k in steps:
            if k >= spec.version:
                problems.append(
                    f"{spec.name}: a step from version {k}, but the class registers version {spec.version}"
                )
        try:
            steps_between(spec.name, start, spec.version)
        except MigrationError as exc:
            problems.append(str(exc))
    names = {spec.name for spec in all_specs()}
    problems += [
        f"{layer}: migration steps for a layer that is not registered"
        for layer in layers_with_steps()
        if layer not in names
    ]
    return problems
