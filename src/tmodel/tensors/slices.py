"""Reading part of one tensor (`get_slice`): basic indexing selects a strided view, so only the chunks
that view reaches are read and decoded."""

from __future__ import annotations

from typing import Any

import torch

from ..archive.reader import Reader
from ..errors import InvalidArgument
from ..manifest.dtypes import DTYPES, extent
from .dtypes import torch_dtype
from .load import check_bool_region
from .memory import host_view

_BASIC = (int, slice, type(Ellipsis), type(None))


def _check_key(key: Any) -> None:
    """Only basic indexing selects a strided view, which is what lets a slice read only its chunks."""
    parts = key if isinstance(key, tuple) else (key,)
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, _BASIC):
            raise InvalidArgument(f"get_slice supports ints, slices, ... and None, not {type(part).__name__}")


def read_slice(reader: Reader, index: int, key: Any) -> torch.Tensor:
    """Basic indexing (ints, slices, Ellipsis, None) of one tensor, decoding only the chunks it needs."""
    _check_key(key)
    m = reader.manifest
    t = m.tensors[index]
    dtype = torch_dtype(t.dtype)
    itemsize = DTYPES[t.dtype][0]
    base = torch.empty(0, dtype=dtype, device="meta").as_strided(t.shape, t.strides, t.offset // itemsize)
    try:
        view = base[key]
    except (IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise InvalidArgument(f"bad index for tensor {t.name!r} of shape {t.shape}: {exc}") from None
    if view.numel() == 0 or t.blob is None:
        return torch.empty(view.shape, dtype=dtype)
    lo = int(view.storage_offset()) * itemsize
    hi = lo + extent(itemsize, view.shape, view.stride())
    first, last = reader.chunk_span(t.blob, lo, hi)
    b = m.blobs[t.blob]
    start = first * b.chunk_size
    pad = start % itemsize  # buffer byte 0 is blob byte start - pad, a whole number of items
    buf = torch.empty(pad + min(b.nbytes, last * b.chunk_size) - start, dtype=torch.uint8)
    reader.decode(t.blob, host_view(buf)[pad:], first, last)
    if t.dtype == "bool":
        check_bool_region(buf[lo - start + pad : hi - start + pad], t.blob)
    out = torch.empty(0, dtype=dtype)
    out.set_(buf.untyped_storage(), (lo - start + pad) // itemsize, view.shape, view.stride())
    # A copy frees the decoded chunks, but never allocates more than they took (stride-0 views stay views).
    return out.clone() if view.numel() * itemsize <= buf.numel() else out
