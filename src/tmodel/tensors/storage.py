"""Torch tensors <-> blobs (SPEC.md §5.2, §5.3): storage grouping on save, zero-intermediate decoding on load.

Rules: tensors that share a storage are stored once, as the span of the storage they touch, each keeping
its offset and strides, and come back as views of one new storage. A lone tensor keeps its strides when
it is dense (a transpose, channels-last) and is stored compactly when its view has gaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..archive.writer import BlobSource
from ..codecs.table import BYTEGROUP_ZSTD, CHOICES, RAW, ZSTD
from ..errors import InvalidArgument, UnsupportedType
from ..manifest.dtypes import DTYPES, bool_bytes_ok, check_bool_bytes, extent
from ..manifest.wire import TensorWire
from .dtypes import DTYPE_NAMES
from .memory import host_view

_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter, torch.nn.Buffer)


def check_tensor(t: torch.Tensor, path: str) -> None:
    """Refuse tensors the format cannot hold, naming where they are."""
    if type(t) not in _PLAIN_TYPES:
        raise UnsupportedType(f"{path}: unsupported tensor type {type(t).__name__}")
    if t.is_quantized:
        raise UnsupportedType(f"{path}: quantized tensors ({t.dtype}) are not supported")
    if t.is_nested:
        raise UnsupportedType(f"{path}: nested tensors are not supported")
    if t.layout != torch.strided:
        raise UnsupportedType(f"{path}: tensors of layout {t.layout} are not supported (only torch.strided)")
    if t._is_zerotensor():
        raise UnsupportedType(
            f"{path}: a zero tensor (torch._efficientzerotensor) has no memory to save (torch.save refuses "
            "it too); save torch.zeros_like(t)"
        )
    if t.dtype not in DTYPE_NAMES:
        raise UnsupportedType(f"{path}: unsupported dtype {t.dtype}")
    if t.device.type == "meta":
        raise UnsupportedType(f"{path}: a meta tensor has no data to save")


@dataclass
class Planned:
    """Blobs to write and the tensor table that points into them."""

    sources: list[BlobSource]
    entries: list[TensorWire]
    keepalive: list[torch.Tensor]


def _codec_for(codec: str, width: int) -> tuple[str, int]:
    if codec not in CHOICES:
        raise InvalidArgument(f"codec must be one of {CHOICES}, not {codec!r}")
    if codec == RAW:
        return RAW, 1
    if width > 1 and codec in ("auto", BYTEGROUP_ZSTD):
        return BYTEGROUP_ZSTD, width
    return ZSTD, 1


def _extent(t: torch.Tensor) -> int:
    return extent(t.element_size(), t.shape, t.stride())


def _storage_bytes(st: torch.UntypedStorage, lo: int, hi: int) -> torch.Tensor:
    """Bytes [lo, hi) of a storage as a CPU uint8 tensor (a view when already on the CPU)."""
    raw = torch.empty(0, dtype=torch.uint8, device=st.device)
    raw.set_(st, 0, (st.nbytes(),), (1,))
    return raw[lo:hi].cpu()


def _bytes_of(t: torch.Tensor) -> torch.Tensor:
    """A tensor's elements as a contiguous CPU uint8 tensor (keep it alive while viewing it)."""
    return t.contiguous().view(torch.uint8).cpu().reshape(-1)


def _own_blob(t: torch.Tensor, name: str) -> bool:
    """A bool view whose byte range also holds other bytes (it shares storage with, say, a uint8 tensor)
    gets its own blob, so that SPEC.md §5.3 holds; its own bytes must be 0 or 1."""
    if t.dtype != torch.bool:
        return False
    lo = int(t.storage_offset())
    if bool_bytes_ok(host_view(_storage_bytes(t.untyped_storage(), lo, lo + _extent(t)))):
        return False
    check_bool_bytes(host_view(_bytes_of(t)), name)
    return True


@dataclass
class _Member:
    """A tensor to store: its index, the absolute address of its element (0, ..., 0), its storage."""

    index: int
    address: int
    storage: torch.UntypedStorage


def _groups(resolved: Sequence[torch.Tensor], names: Sequence[str]) -> list[list[_Member]]:
    """Tensors whose storages overlap in memory (on one device), each group in index order: a storage's
    bytes are the same bytes whatever storage object (a numpy array's, a view's) reaches them."""
    spans: list[tuple[str, int, int, _Member]] = []
    groups: list[list[_Member]] = []
    for i, t in enumerate(resolved):
        if t.numel() == 0:
            continue
        st = t.untyped_storage()
        member = _Member(i, st.data_ptr() + int(t.storage_offset()) * t.element_size(), st)
        if _own_blob(t, names[i]):
            groups.append([member])
        else:
            spans.append((str(t.device), st.data_ptr(), st.data_ptr() + st.nbytes(), member))
    spans.sort(key=lambda s: (s[0], s[1]))
    end: tuple[str, int] | None = None
    for device, lo, hi, member in spans:
        if end is not None and device == end[0] and lo < end[1]:
            groups[-1].append(member)
            end = (device, max(end[1], hi))
        else:
            groups.append([member])
            end = (device, hi)
    return sorted((sorted(g, key=lambda m: m.index) for g in groups), key=lambda g: g[0].index)


def _span_start(members: list[_Member], resolved: Sequence[torch.Tensor], names: Sequence[str]) -> int:
    """The address a shared blob starts at: at or below every member, and one every member's item size
    divides its distance to (a blob offset is a multiple of the item size, SPEC.md §5.2). Item sizes are
    powers of two, so the largest fixes the residue; members whose addresses disagree with it cannot
    share one blob and are refused."""
    widest = max(members, key=lambda m: resolved[m.index].element_size())
    step = resolved[widest.index].element_size()
    for m in members:
        size = resolved[m.index].element_size()
        if (m.address - widest.address) % size:
            raise UnsupportedType(
                f"{names[m.index]}: shares memory with {names[widest.index]} at an address {size}-byte "
                f"elements cannot be aligned with (item sizes {size} and {step}, addresses "
                f"{m.address - widest.address} bytes apart)"
            )
    lowest = min(m.address for m in members)
    return lowest - (lowest - widest.address) % step


def _span_bytes(members: list[_Member], lo: int, hi: int) -> torch.Tensor:
    """Bytes [lo, hi) of memory as a CPU uint8 tensor: a view of one storage that covers them, else a copy
    gathered from the group's storages (zeros where none reaches, below the lowest storage)."""
    stores = {(m.storage.data_ptr(), m.storage.nbytes()): m.storage for m in members}
    for (start, n), st in stores.items():
        if start <= lo and hi <= start + n:
            return _storage_bytes(st, lo - start, hi - start)
    out = torch.zeros(hi - lo, dtype=torch.uint8)
    for (start, n), st in stores.items():
        a, b = max(lo, start), min(hi, start + n)
        if a < b:
            out[a - lo : b - lo] = _storage_bytes(st, a - start, b - start)
    return out


def plan_blobs(tensors: Sequence[torch.Tensor], names: Sequence[str], codec: str) -> Planned:
    """Group tensors by the memory they reach and describe the blobs that hold them."""
    _codec_for(codec, 1)
    resolved = [t.resolve_conj().resolve_neg().detach() for t in tensors]
    groups = _groups(resolved, names)
    entries: list[TensorWire] = [
        {
            "name": n,
            "dtype": DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "strides": [],
            "blob": None,
            "offset": 0,
        }
        for n, t in zip(names, resolved, strict=False)
    ]
    for i, t in enumerate(resolved):
        entries[i]["strides"] = list(t.stride()) if t.numel() else _contiguous_strides(list(t.shape))
    sources: list[BlobSource] = []
    keepalive: list[torch.Tensor] = []
    for members in groups:
        first = resolved[members[0].index]
        itemsize, width = DTYPES[DTYPE_NAMES[first.dtype]]
        if len(members) == 1 and _extent(first) > first.numel() * itemsize:
            data = first.contiguous().cpu().view(-1).view(torch.uint8)
            entries[members[0].index]["strides"] = _contiguous_strides(list(first.shape))
            offsets = {members[0].index: 0}
        else:
            lo = _span_start(members, resolved, names)
            hi = max(m.address + _extent(resolved[m.index]) for m in members)
            data = _span_bytes(members, lo, hi)
            offsets = {m.index: m.address - lo for m in members}
        if data.numel() % width or any(off % width for off in offsets.values()):
            width = 1
        name, width = _codec_for(codec, width)
        keepalive.append(data)
        for i in offsets:
            entries[i]["blob"] = len(sources)
            entries[i]["offset"] = offsets[i]
        sources.append(BlobSource(host_view(data), name, width))
    return Planned(sources, entries, keepalive)


def _contiguous_strides(shape: list[int]) -> list[int]:
    strides = [1] * len(shape)
    for k in range(len(shape) - 2, -1, -1):
        strides[k] = strides[k + 1] * max(shape[k + 1], 1)
    return strides
