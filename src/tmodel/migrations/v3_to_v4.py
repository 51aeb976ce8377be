"""Schema step 3 -> 4: the rest of what `torch.load(weights_only=True)` accepts: keys (and set elements)
beyond scalars (tuples of keys, dtype, device, complex, size, numpy_scalar, layout, qscheme), new node kinds
(layout, qscheme, meta_tensor, tensor_attrs). No field is added or removed, so upgrading only renumbers;
downgrading refuses what version 3 cannot hold. Works on the plain decoded msgpack map; imports nothing but
the standard library."""

from __future__ import annotations

from typing import Any

FROM_VERSION = 3
TO_VERSION = 4

V4_ONLY_NODES = ("layout", "qscheme", "meta_tensor", "tensor_attrs")


def _scalar(v: Any) -> bool:
    return v is None or type(v) in (bool, int, float, str, bytes)


def _check_v3(manifest: dict[str, Any], direction: str) -> None:
    """ValueError unless the manifest holds only what version 3 can: no version-4 node, and keys and set
    elements that are scalars, in the object tree and in every config."""
    stack: list[Any] = [manifest.get("root")]
    records = manifest.get("modules")  # anything but an array is the schema's to refuse
    for record in records if isinstance(records, list) else ():
        if isinstance(record, dict) and isinstance(record.get("config"), dict):
            stack.extend(record["config"].values())
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if len(node) == 1:
                ((tag, value),) = node.items()
                if tag in V4_ONLY_NODES:
                    raise ValueError(f"{direction}: a version-3 object tree has no {tag!r} nodes")
                keys: list[Any] = []
                if tag in ("dict", "counter") and isinstance(value, list):
                    keys = [p[0] for p in value if isinstance(p, list) and p]
                elif (
                    tag == "ordered_dict" and isinstance(value, dict) and isinstance(value.get("items"), list)
                ):
                    keys = [p[0] for p in value["items"] if isinstance(p, list) and p]
                elif tag == "set" and isinstance(value, list):
                    keys = value
                if not all(_scalar(k) for k in keys):
                    raise ValueError(f"{direction}: version 3 keys and set elements are scalars only")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def upgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """The version-4 form of a version-3 manifest: the same content, renumbered. Content that version 3
    could not hold is refused (ValueError), rather than upgraded into something the writer never meant."""
    _check_v3(manifest, "upgrade")
    out = {k: v for k, v in manifest.items() if k != "schema_version"}
    return {"schema_version": TO_VERSION, **out}


def downgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """The version-3 form, possible only while the file holds nothing that version 4 added."""
    _check_v3(manifest, "downgrade")
    out = {k: v for k, v in manifest.items() if k != "schema_version"}
    return {"schema_version": FROM_VERSION, **out}
