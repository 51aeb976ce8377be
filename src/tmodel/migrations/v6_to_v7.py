"""Schema step 6 -> 7: sharded archives. The manifest gains the key `shards`: empty in an ordinary file; in
an index, the files that hold the set's blobs (SPEC.md §5.10). Upgrading adds `"shards": []`; downgrading
refuses an index, which version 6 cannot describe. Works on the plain decoded msgpack map; imports nothing
but the standard library."""

from __future__ import annotations

from typing import Any

FROM_VERSION = 6
TO_VERSION = 7


def upgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """The version-7 form of a version-6 manifest: the same content, `shards` empty. A version-6 manifest
    that holds the key is refused (ValueError)."""
    if "shards" in manifest:
        raise ValueError("upgrade: a version-6 manifest has no 'shards' key")
    out = {k: v for k, v in manifest.items() if k != "schema_version"}
    return {"schema_version": TO_VERSION, **out, "shards": []}


def downgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """The version-6 form, possible only for a file that is not an index (its `shards` empty)."""
    if manifest.get("shards"):
        raise ValueError("downgrade: a version-6 file cannot be the index of a sharded set")
    out = {k: v for k, v in manifest.items() if k not in ("schema_version", "shards")}
    return {"schema_version": FROM_VERSION, **out}
