"""Byte planes (SPEC.md §6.3), pure Python: the reference split and merge. Faster versions (the torch ones
in `tmodel.tensors.planes`) are passed in where they are available and must give the same bytes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

Buffer = bytes | bytearray | memoryview

#: Writes planes (each `len(out) // width` bytes) interleaved into `out`.
Merge = Callable[[Sequence[Buffer], int, memoryview], None]
#: The `width` byte planes of `data` (plane k: byte k of every element).
Split = Callable[[Buffer, int], list[Buffer]]


def merge_planes(planes: Sequence[Buffer], width: int, out: memoryview) -> None:
    """Byte k of element e comes from byte e of plane k."""
    merged = bytearray(len(out))
    for k, plane in enumerate(planes):
        merged[k::width] = plane
    out[:] = merged


def split_planes(data: Buffer, width: int) -> list[Buffer]:
    """Plane k holds byte k of every element."""
    whole = bytes(data)
    return [whole[k::width] for k in range(width)]
