"""The dtype table (SPEC.md §5.3): every dtype a file may name, its item size and byte-group width, and
the rules that follow from them (a view's extent, the bytes a bool may hold). Every other dtype table of
the package is derived from this one: torch's by name (`tmodel.tensors.dtypes`), numpy's as the subset
`NUMPY_DTYPES`, safetensors' in `tmodel.interop.safetensors`."""

from __future__ import annotations

from collections.abc import Sequence
from operator import mul

from ..errors import BadValue

Buffer = bytes | bytearray | memoryview
_PIECE = 1 << 20

#: name -> (itemsize in bytes, byte-group width). Complex numbers group by their component's size. The names
#: are torch's (`torch.<name>`); the last block is schema version 3's.
DTYPES: dict[str, tuple[int, int]] = {
    "float64": (8, 8),
    "float32": (4, 4),
    "float16": (2, 2),
    "bfloat16": (2, 2),
    "float8_e4m3fn": (1, 1),
    "float8_e4m3fnuz": (1, 1),
    "float8_e5m2": (1, 1),
    "float8_e5m2fnuz": (1, 1),
    "complex64": (8, 4),
    "complex128": (16, 8),
    "bool": (1, 1),
    "int8": (1, 1),
    "int16": (2, 2),
    "int32": (4, 4),
    "int64": (8, 8),
    "uint8": (1, 1),
    "uint16": (2, 2),
    "uint32": (4, 4),
    "uint64": (8, 8),
    # schema version 3
    "float8_e8m0fnu": (1, 1),
    "float4_e2m1fn_x2": (1, 1),
    "complex32": (4, 2),
    "bits8": (1, 1),
    "bits16": (2, 2),
    "bits1x8": (1, 1),
    "bits2x4": (1, 1),
    "bits4x2": (1, 1),
}

#: dtypes that may be named as a value (`{"dtype": name}`, schema version 3) but never as a tensor's dtype:
#: torch's sub-byte integer dtypes, whose tensors torch itself cannot save, and its quantized dtypes, whose
#: tensors need a scale and zero point besides their bytes.
VALUE_DTYPES: tuple[str, ...] = (
    *(f"uint{n}" for n in range(1, 8)),
    *(f"int{n}" for n in range(1, 8)),
    "qint8",
    "quint8",
    "qint32",
    "quint4x2",
    "quint2x4",
)

#: the dtypes a numpy value (`ndarray`, `numpy_scalar` nodes, schema version 3) may have: numpy spells
#: them as the format does
NUMPY_DTYPES: frozenset[str] = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
    | {"float16", "float32", "float64", "complex64", "complex128"}
)


def extent(itemsize: int, shape: Sequence[int], strides: Sequence[int]) -> int:
    """Bytes of storage a strided view reaches from its first element (0 for an empty view)."""
    if 0 in shape:
        return 0
    return itemsize * (1 + int(sum(map(mul, shape, strides))) - sum(strides[: len(shape)]))


def bool_bytes_ok(data: Buffer) -> bool:
    """Whether every byte is 0x00 or 0x01, as every byte of a bool tensor's range must be."""
    view = memoryview(data).cast("B")
    return not any(
        bytes(view[i : i + _PIECE]).translate(None, b"\x00\x01") for i in range(0, len(view), _PIECE)
    )


def check_bool_bytes(data: Buffer, where: str, blob: int | None = None) -> None:
    """BAD_VALUE unless every byte of a bool tensor's range is 0x00 or 0x01 (SPEC.md §5.3)."""
    if not bool_bytes_ok(data):
        raise BadValue(f"{where}: a bool tensor holds a byte other than 0 or 1", blob=blob)
