"""Tensors and byte buffers as views of each other, without copies."""

from __future__ import annotations

import ctypes

import torch


def host_view(t: torch.Tensor) -> memoryview:
    """A writable byte view of a CPU tensor's memory from its first element, without a copy."""
    n = t.numel() * t.element_size()
    if n == 0:
        return memoryview(b"")
    return memoryview((ctypes.c_ubyte * n).from_address(t.data_ptr())).cast("B")


def wrap(buf: bytes | bytearray | memoryview) -> torch.Tensor:
    """A uint8 tensor over a buffer without copying (a read-only memoryview, which the loader never
    passes, is copied); read-only buffers are only ever read through it."""
    if isinstance(buf, memoryview) and buf.readonly:
        buf = bytearray(buf)  # kept alive by the tensor, unlike a bytes copy behind a ctypes address
    if isinstance(buf, bytes):
        address = ctypes.cast(ctypes.c_char_p(buf), ctypes.c_void_p).value or 0
        return torch.frombuffer((ctypes.c_ubyte * len(buf)).from_address(address), dtype=torch.uint8)
    return torch.frombuffer(buf, dtype=torch.uint8)
