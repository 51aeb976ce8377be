"""Schema step 2 -> 3: the object tree may hold every type that `torch.load(weights_only=True)` accepts, with
its type kept: new node kinds (ordered_dict, counter, set, bytearray, complex, size, device, parameter,
requires_grad, ndarray, numpy_scalar), new tensor dtypes (float8_e8m0fnu, float4_e2m1fn_x2, complex32 and
torch's bits types) and dtype names that only a `{"dtype": name}` value may use. No field is added or
removed, so upgrading only renumbers; downgrading refuses what version 2 cannot hold. Works on the plain
decoded msgpack map; imports nothing but the standard library."""

from __future__ import annotations

from typing import Any

FROM_VERSION = 2
TO_VERSION = 3

V3_ONLY_NODES = (
    "ordered_dict",
    "counter",
    "set",
    "bytearray",
    "complex",
    "size",
    "device",
    "parameter",
    "requires_grad",
    "ndarray",
    "numpy_scalar",
)
#: the dtype table of version 2 (SPEC.md §5.3 as released with it)
V2_DTYPES = frozenset(
    {"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2"}
    | {"float8_e5m2fnuz", "complex64", "complex128", "bool", "int8", "int16", "int32", "int64"}
    | {"uint8", "uint16", "uint32", "uint64"}
)


class UnknownDtype(ValueError):
    """A dtype name version 2's table does not hold (the chain reports UNKNOWN_DTYPE, as a version-2
    reader would)."""


def _check_v2(manifest: dict[str, Any], direction: str) -> None:
    """ValueError unless the manifest holds only what version 2 can: no version-3 node in the object tree
    or a config, no version-3 dtype in the tensor table or a dtype node."""
    for tensor in manifest.get("tensors") or ():
        if (
            isinstance(tensor, dict)
            and isinstance(tensor.get("dtype"), str)
            and tensor["dtype"] not in V2_DTYPES
        ):
            raise UnknownDtype(f"{direction}: version 2 has no dtype {tensor['dtype']!r}")
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
                if tag in V3_ONLY_NODES:
                    raise ValueError(f"{direction}: a version-2 object tree has no {tag!r} nodes")
                if tag == "dtype" and isinstance(value, str) and value not in V2_DTYPES:
                    raise UnknownDtype(f"{direction}: version 2 has no dtype {value!r}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def upgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """The version-3 form of a version-2 manifest: the same content, renumbered. Content that version 2
    could not hold is refused (ValueError), rather than upgraded into something the writer never meant."""
    _check_v2(manifest, "upgrade")
    out = {k: v for k, v in manifest.items() if k != "schema_version"}
    return {"schema_version": TO_VERSION, **out}


def downgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """The version-2 form, possible only while the file holds nothing that version 3 added."""
    _check_v2(manifest, "downgrade")
    out = {k: v for k, v in manifest.items() if k != "schema_version"}
    return {"schema_version": FROM_VERSION, **out}
