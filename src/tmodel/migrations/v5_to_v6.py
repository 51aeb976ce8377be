"""Schema step 5 -> 6: training state. The object tree gains the node kinds optimizer (a torch optimizer's
state by parameter: module record and local name, so it follows its parameters through layer migrations)
and stateful (an LR scheduler's, a gradient scaler's or the random generators' state), the manifest the
key `checkpoint` (the saved object's own layout type and version, nil when none was given), and the
checksum table `blake3`. Upgrading adds `"checkpoint": nil`; downgrading refuses what version 5 cannot
hold. Works on the plain decoded msgpack map; imports nothing but the standard library."""

from __future__ import annotations

from typing import Any

FROM_VERSION = 5
TO_VERSION = 6

V6_ONLY_NODES = ("optimizer", "stateful")
V6_CHECKSUMS = ("blake3",)


class UnknownChecksum(ValueError):
    """A checksum name version 5 does not have (the chain reports it as UNKNOWN_CHECKSUM)."""


def _check_checksum(manifest: dict[str, Any], direction: str) -> None:
    if manifest.get("checksum") in V6_CHECKSUMS:
        raise UnknownChecksum(f"{direction}: version 5 has no checksum {manifest['checksum']!r}")


def _check_v5(root: Any, direction: str) -> None:
    """ValueError if the object tree holds a version-6 node (configs cannot: they are checked as nodes)."""
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if len(node) == 1 and next(iter(node)) in V6_ONLY_NODES:
                raise ValueError(f"{direction}: a version-5 file has no {next(iter(node))!r} nodes")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def upgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """The version-6 form of a version-5 manifest: the same content, `checkpoint` nil. A version-5 manifest
    that holds a key or node version 6 added is refused (ValueError)."""
    if "checkpoint" in manifest:
        raise ValueError("upgrade: a version-5 manifest has no 'checkpoint' key")
    _check_checksum(manifest, "upgrade")
    _check_v5(manifest.get("root"), "upgrade")
    out = {k: v for k, v in manifest.items() if k != "schema_version"}
    return {"schema_version": TO_VERSION, **out, "checkpoint": None}


def downgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """The version-5 form, possible only while the file holds nothing that version 6 added."""
    if manifest.get("checkpoint") is not None:
        raise ValueError("downgrade: a version-5 file has no checkpoint version")
    _check_checksum(manifest, "downgrade")
    _check_v5(manifest.get("root"), "downgrade")
    out = {k: v for k, v in manifest.items() if k not in ("schema_version", "checkpoint")}
    return {"schema_version": FROM_VERSION, **out}
