"""User metadata (SPEC.md §5.5): inert typed values, checked exactly on the way in.

Rule: one key is the writer's, `tmodel.libraries`: the version of every library whose registrations the
file's module records use (an integration's), set on each save; a caller's value under it is replaced.
"""

from __future__ import annotations

from typing import Any

from ..errors import ManifestSchemaError
from .encoding import INT_MAX, INT_MIN


def check_metadata(metadata: Any, max_depth: int = 64) -> dict[str, Any]:
    """Check user metadata exactly (str keys; None, bool, int64/uint64, float, str, bytes, lists and maps of
    those) and return it unchanged; pydantic would turn an out-of-range int into a float."""
    if type(metadata) is not dict:
        raise ManifestSchemaError(f"metadata must be a dict, not {type(metadata).__name__}")
    stack: list[tuple[Any, str, int]] = [(metadata, "metadata", 0)]
    while stack:
        value, where, depth = stack.pop()
        kind = type(value)
        if depth > max_depth:
            raise ManifestSchemaError(f"{where}: nested deeper than {max_depth}")
        if kind is dict:
            for k, v in value.items():
                if type(k) is not str:
                    raise ManifestSchemaError(f"{where}: key {k!r} is not a str")
                stack.append((v, f"{where}[{k!r}]", depth + 1))
        elif kind is list:
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
        elif kind is int and not INT_MIN <= value <= INT_MAX:
            raise ManifestSchemaError(f"{where}: integer {value} does not fit in 64 bits")
        elif value is not None and kind not in (bool, int, float, str, bytes):
            raise ManifestSchemaError(f"{where}: unsupported metadata type {kind.__name__}")
    return metadata


#: the metadata key a writer sets to {library: version} for the integrations a file's records use
LIBRARIES = "tmodel.libraries"


def with_libraries(metadata: dict[str, Any], libraries: dict[str, str]) -> dict[str, Any]:
    """`metadata` with the writer's `tmodel.libraries` entry for this save (none if no library is used)."""
    out = {k: v for k, v in metadata.items() if k != LIBRARIES}
    if libraries:
        out[LIBRARIES] = dict(sorted(libraries.items()))
    return out
