"""The dtype table (SPEC.md §5.3): every dtype a file may name, its item size and byte-group width, and
the rules that follow from them (a view's extent, the bytes a bool may hold). Every other dtype table of
the package is derived from this one."""

from __future__ import annotations

from collections.abc import Sequence

#: name -> (itemsize in bytes, byte-group width). Complex numbers group by their component's size.
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
}


def extent(itemsize: int, shape: Sequence[int], strides: Sequence[int]) -> int:
    """Bytes of storage a strided view reaches from its first element (0 for an empty view)."""
    if any(d == 0 for d in shape):
        return 0
    return itemsize * (1 + sum((d - 1) * s for d, s in zip(shape, strides, strict=False)))
