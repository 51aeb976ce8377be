"""The format's own schema steps, one self-contained file per step (`v<N>_to_v<N+1>.py`), and the chain that
applies them: a manifest of any released version is upgraded step by step to the current one before it is
validated. Steps work on plain decoded msgpack maps and import nothing but the standard library; a step
refuses content its source version cannot hold with a ValueError (MANIFEST_SCHEMA), or with its own
`UnknownDtype` / `UnknownChecksum` subclass of it for a dtype or checksum name that version lacks
(UNKNOWN_DTYPE, UNKNOWN_CHECKSUM)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ..errors import ManifestSchemaError, TModelError, UnknownDtype, UnsupportedVersion
from ..errors import UnknownChecksum as UnknownChecksumError
from . import v1_to_v2, v2_to_v3, v3_to_v4, v4_to_v5, v5_to_v6, v6_to_v7

STEPS: tuple[ModuleType, ...] = (v1_to_v2, v2_to_v3, v3_to_v4, v4_to_v5, v5_to_v6, v6_to_v7)
OLDEST = 1
CURRENT = STEPS[-1].TO_VERSION if STEPS else OLDEST


def check_chain() -> None:
    """Every version from OLDEST to CURRENT has exactly one step to the next."""
    expected = OLDEST
    for step in STEPS:
        if expected != step.FROM_VERSION or expected + 1 != step.TO_VERSION:
            raise AssertionError(f"schema step {step.__name__} breaks the chain at version {expected}")
        expected += 1


def upgrade(wire: Any) -> tuple[dict[str, Any], int]:
    """Upgrade a decoded manifest to CURRENT; returns it and the version it was written as."""
    if not isinstance(wire, dict):
        raise ManifestSchemaError("manifest is not a map")
    version = wire.get("schema_version")
    if type(version) is not int:
        raise ManifestSchemaError("schema_version is missing or not an integer")
    if not OLDEST <= version <= CURRENT:
        raise UnsupportedVersion(f"schema version {version}; this reader supports {OLDEST}..{CURRENT}")
    source = version
    for step in STEPS[version - OLDEST :]:
        try:
            wire = step.upgrade(wire)
        except ValueError as exc:
            error: type[TModelError] = ManifestSchemaError
            for attr, kind in (("UnknownDtype", UnknownDtype), ("UnknownChecksum", UnknownChecksumError)):
                own = getattr(step, attr, None)
                if own is not None and isinstance(exc, own):
                    error = kind
            raise error(f"schema version {step.FROM_VERSION}: {exc}") from None
    return wire, source


def downgrade(wire: dict[str, Any], target: int) -> dict[str, Any]:
    """Rewrite a CURRENT manifest as an older version, step by step; a step that cannot raises ValueError."""
    if not OLDEST <= target <= CURRENT:
        raise UnsupportedVersion(f"cannot write schema version {target}; versions are {OLDEST}..{CURRENT}")
    for step in reversed(STEPS[target - OLDEST :]):
        wire = step.downgrade(wire)
    return wire
