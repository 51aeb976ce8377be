"""Schema step 1 -> 2: manifests gain a `modules` table (the architecture as registered layer records) and
object-tree nodes may refer to modules and dtypes. A version-1 file has no modules, so the step adds an empty
table; nothing else changes. Works on the plain decoded msgpack map; never imports torch."""

from __future__ import annotations

from typing import Any

FROM_VERSION = 1
TO_VERSION = 2


V2_ONLY_NODES = ("module", "dtype")


def upgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """The version-2 form of a version-1 manifest; content that version 1 could not hold is refused
    (ValueError), rather than upgraded into something the writer never meant."""
    if "modules" in manifest:
        raise ValueError("a version-1 manifest has no 'modules' field")
    stack = [manifest.get("root")]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if len(node) == 1 and next(iter(node)) in V2_ONLY_NODES:
                raise ValueError(f"a version-1 object tree has no {next(iter(node))!r} nodes")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    out = {k: v for k, v in manifest.items() if k != "schema_version"}
    return {"schema_version": TO_VERSION, **out, "modules": []}


def downgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """The version-1 form, possible only while the file holds no modules."""
    if manifest.get("modules"):
        raise ValueError("a file that holds modules cannot be written as schema version 1")
    out = {k: v for k, v in manifest.items() if k not in ("schema_version", "modules")}
    return {"schema_version": FROM_VERSION, **out}
