"""Reading part of one tensor (`get_slice`), decoding only the chunks the part lives in.

Basic indexing (ints, slices with a positive step, Ellipsis, None; a 0-d integer tensor counts as an int)
selects a strided view, so only the chunks that view reaches are read. One advanced index is taken too, as
the first index (dimension 0), as safetensors' slices take it: a list of ints (negative ones count from the
end), an empty list (`[[]]`: no rows), a list of bools or a 1-d bool tensor of the dimension's length (a
mask), or an integer tensor of any shape; the rows it names are read, each distinct row once, and nothing
between rows that lie chunks apart. Any other index (an advanced index after the first position, nested
lists, floats, uint8 masks, several masked dimensions) is INVALID_ARGUMENT, never a wrong answer.
"""

from __future__ import annotations

from typing import Any

import torch

from ..archive.reader import Reader, names_file
from ..errors import InvalidArgument
from ..manifest.dtypes import DTYPES, extent
from ..manifest.schema import TensorEntry
from .dtypes import torch_dtype
from .load import check_bool_region
from .memory import host_view

_BASIC = (int, slice, type(Ellipsis), type(None))
_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32, torch.uint64)


def _is_advanced(part: Any) -> bool:
    return isinstance(part, list) or (isinstance(part, torch.Tensor) and part.dim() > 0)


def _basic(part: Any) -> Any:
    """A basic index as Python's indexing takes it (a 0-d integer tensor becomes its int)."""
    if isinstance(part, torch.Tensor):
        if part.dtype in _INT_DTYPES:
            return int(part)
        raise InvalidArgument(f"get_slice takes 0-d integer tensors as indices, not {part.dtype} ones")
    if isinstance(part, bool) or not isinstance(part, _BASIC):
        raise InvalidArgument(
            f"get_slice supports ints, slices, ..., None, and a list or tensor first index, not "
            f"{type(part).__name__}"
        )
    return part


def _split_key(key: Any) -> tuple[Any, tuple[Any, ...]]:
    """(the advanced first index or None, the basic rest)."""
    parts = key if isinstance(key, tuple) else (key,)
    rows = None
    if parts and _is_advanced(parts[0]):
        rows, parts = parts[0], parts[1:]
    for part in parts:
        if _is_advanced(part):
            raise InvalidArgument(
                "get_slice takes a list or tensor index only as the first index (dimension 0)"
            )
    return rows, tuple(_basic(p) for p in parts)


def _rows(index: Any, n: int) -> torch.Tensor:
    """An advanced first index as int64 row numbers in [0, n), in its own shape."""
    if isinstance(index, list):
        if not all(type(v) in (int, bool) for v in index):
            raise InvalidArgument(
                "a list index holds ints (or bools, for a mask), not nested lists or floats"
            )
        try:
            index = torch.tensor(index, dtype=None if index else torch.int64)
        except (RuntimeError, OverflowError) as exc:
            raise InvalidArgument(f"bad list index: {exc}") from None
    index = index.detach().cpu()
    if index.dtype == torch.bool:
        if index.dim() != 1 or index.shape[0] != n:
            raise InvalidArgument(
                f"a mask index must be 1-d of the first dimension's length {n}, "
                f"not of shape {list(index.shape)}"
            )
        mask_rows: torch.Tensor = index.nonzero().flatten()
        return mask_rows
    if index.dtype not in _INT_DTYPES:
        raise InvalidArgument(f"tensor indices must be integer or bool tensors, not {index.dtype}")
    rows = index.to(torch.int64)
    if rows.numel() and (int(rows.min()) < -n or int(rows.max()) >= n):
        bad = int(rows[(rows < -n) | (rows >= n)].flatten()[0])
        raise InvalidArgument(f"index {bad} is out of bounds for dimension 0 with size {n}")
    return torch.where(rows < 0, rows + n, rows)


def _meta_view(t: TensorEntry) -> torch.Tensor:
    itemsize = DTYPES[t.dtype][0]
    dtype = torch_dtype(t.dtype)
    return torch.empty(0, dtype=dtype, device="meta").as_strided(t.shape, t.strides, t.offset // itemsize)


def _index(base: torch.Tensor, key: Any, t: TensorEntry) -> torch.Tensor:
    try:
        return base[key]
    except (IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise InvalidArgument(
            f"bad index for tensor {t.name!r} of shape {t.shape}: {exc}", tensor=t.name
        ) from None


@names_file
def read_slice(reader: Reader, index: int, key: Any) -> torch.Tensor:
    """`key` applied to one tensor (see the module's docstring), decoding only the chunks it needs."""
    if reader.shards is not None and reader.shards.tensor_shard[index] >= 0:  # read from its shard
        shards = reader.shards
        return read_slice(shards.reader(shards.tensor_shard[index]), shards.local_tensor[index], key)
    rows, rest = _split_key(key)
    m = reader.tables
    t = m.tensors[index]
    if rows is not None:
        return _read_rows(reader, t, rows, rest)
    dtype = torch_dtype(t.dtype)
    itemsize = DTYPES[t.dtype][0]
    view = _index(_meta_view(t), rest if isinstance(key, tuple) else rest[0], t)
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


def _read_rows(reader: Reader, t: TensorEntry, index: Any, rest: tuple[Any, ...]) -> torch.Tensor:
    """`t[(index, *rest)]` for an advanced first index: the basic rest selects a strided view whose dim 0
    is the tensor's, each distinct row of it is read from the chunks it lies in (rows whose chunks touch
    share one read), and the rows are gathered in the order and shape of `index`."""
    if not t.shape:
        raise InvalidArgument(f"tensor {t.name!r} has no dimensions to index")
    rows = _rows(index, t.shape[0])
    sub = _index(_meta_view(t), (slice(None), *rest), t)
    dtype = torch_dtype(t.dtype)
    shape = (*rows.shape, *sub.shape[1:])
    if rows.numel() == 0 or sub[0].numel() == 0 or t.blob is None:
        return torch.empty(shape, dtype=dtype)
    itemsize = DTYPES[t.dtype][0]
    b = reader.tables.blobs[t.blob]
    uniq, inverse = torch.unique(rows.flatten(), sorted=True, return_inverse=True)
    stride0, inner_shape, inner_strides = sub.stride(0), sub.shape[1:], sub.stride()[1:]
    lo = (int(sub.storage_offset()) + uniq * stride0) * itemsize
    hi = lo + extent(itemsize, inner_shape, inner_strides)
    first = torch.div(lo, b.chunk_size, rounding_mode="floor")
    last = -torch.div(-hi, b.chunk_size, rounding_mode="floor")
    # a new read starts at a row whose first chunk lies past the previous row's last (rows never go back)
    starts = [0, *(torch.nonzero(first[1:] > last[:-1]).flatten() + 1).tolist()]
    ends = [*starts[1:], len(uniq)]
    picked = torch.empty((len(uniq), *inner_shape), dtype=dtype)
    runs = []
    for a, z in zip(starts, ends, strict=True):
        f, l_ = int(first[a]), int(last[z - 1])
        start = f * b.chunk_size
        pad = start % itemsize  # buffer byte 0 is blob byte start - pad, a whole number of items
        buf = torch.empty(pad + min(b.nbytes, l_ * b.chunk_size) - start, dtype=torch.uint8)
        runs.append((a, z, start, pad, buf))
    reader.decode_many(
        [(t.blob, host_view(buf)[pad:], int(first[a]), int(last[z - 1])) for a, z, _, pad, buf in runs]
    )
    for a, z, start, pad, buf in runs:
        r_lo, r_hi = int(lo[a]) - start + pad, int(hi[z - 1]) - start + pad
        if t.dtype == "bool":
            check_bool_region(buf[r_lo:r_hi], t.blob)
        r_a = int(uniq[a])
        view = torch.empty(0, dtype=dtype)
        count = int(uniq[z - 1]) - r_a + 1
        view.set_(buf.untyped_storage(), r_lo // itemsize, (count, *inner_shape), (stride0, *inner_strides))
        picked[a:z] = view[uniq[a:z] - r_a]
    if len(uniq) == rows.numel() and torch.equal(uniq, rows.flatten()):
        return picked.reshape(shape)
    return picked[inverse].reshape(shape)
