"""Schema step 4 -> 5: configs that hold what real constructors take. Layer configs gain the node kinds ref
(a registered class or function), partial (`functools.partial` of one, with data arguments) and object (a
registered value type's instance as data), and a module record's `version` may be nil (a child its parent's
constructor builds, recorded by class name). No field is added or removed, so upgrading only renumbers;
downgrading refuses what version 4 cannot hold. Works on the plain decoded msgpack map; imports nothing but
the standard library."""

from __future__ import annotations

from typing import Any

FROM_VERSION = 4
TO_VERSION = 5

V5_ONLY_NODES = ("ref", "partial", "object")


def _check_v4(manifest: dict[str, Any], direction: str) -> None:
    """ValueError unless the manifest holds only what version 4 can: every record versioned, and no
    version-5 node in the object tree or in any config."""
    stack: list[Any] = [manifest.get("root")]
    records = manifest.get("modules")  # anything but an array is the schema's to refuse
    for record in records if isinstance(records, list) else ():
        if isinstance(record, dict):
            if "version" in record and record["version"] is None:
                raise ValueError(f"{direction}: every version-4 module record has a layer version")
            if isinstance(record.get("config"), dict):
                stack.extend(record["config"].values())
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if len(node) == 1 and next(iter(node)) in V5_ONLY_NODES:
                raise ValueError(f"{direction}: a version-4 file has no {next(iter(node))!r} nodes")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def upgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """The version-5 form of a version-4 manifest: the same content, renumbered. Content that version 4
    could not hold is refused (ValueError), rather than upgraded into something the writer never meant."""
    _check_v4(manifest, "upgrade")
    out = {k: v for k, v in manifest.items() if k != "schema_version"}
    return {"schema_version": TO_VERSION, **out}


def downgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """The version-4 form, possible only while the file holds nothing that version 5 added."""
    _check_v4(manifest, "downgrade")
    out = {k: v for k, v in manifest.items() if k != "schema_version"}
    return {"schema_version": FROM_VERSION, **out}
