"""Schema step 1 -> 2: manifests gain a `modules` table (the architecture as registered layer records) and
object-tree nodes may refer to modules and dtypes. A version-1 file has no modules, so the step adds an empty
table; nothing else changes. Works on the plain decoded msgpack map; never imports torch."""

from __future__ import annotations

from typing import Any

FROM_VERSION = 1
TO_VERSION = 2


def upgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """The version-2 form of a version-1 manifest."""
    out = {k: v for k, v in manifest.items() if k != "schema_version"}
    return {"schema_version": TO_VERSION, **out, "modules": []}


def downgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """The version-1 form, possible only while the file holds no modules."""
    if manifest.get("modules"):
        raise ValueError("a file that holds modules cannot be written as schema version 1")
    out = {k: v for k, v in manifest.items() if k not in ("schema_version", "modules")}
    return {"schema_version": FROM_VERSION, **out}
