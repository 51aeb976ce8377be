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
    if t.layout != torch.strided or t.is_quantized or t.is_nested:
        raise UnsupportedType(f"{path}: unsupported tensor layout {t.layout}")
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


def _storage_bytes(t: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Bytes [lo, hi) of a tensor's storage as a CPU uint8 tensor (a view when already on the CPU)."""
    raw = torch.empty(0, dtype=torch.uint8, device=t.device)
    raw.set_(t.untyped_storage(), 0, (t.untyped_storage().nbytes(),), (1,))
    return raw[lo:hi].cpu()


def _bytes_of(t: torch.Tensor) -> torch.Tensor:
    """A tensor's elements as a contiguous CPU uint8 tensor (keep it alive while viewing it)."""
    return t.contiguous().view(torch.uint8).cpu().reshape(-1)


def _group_key(t: torch.Tensor, i: int, name: str) -> tuple[str, int]:
    """Tensors with equal keys share a blob. A bool view whose byte range also holds other bytes
    (it shares storage with, say, a uint8 tensor) gets its own blob, so that SPEC.md §5.3 holds."""
    key = (str(t.device), t.untyped_storage().data_ptr())
    if t.dtype == torch.bool:
        lo = int(t.storage_offset())
        span = _storage_bytes(t, lo, lo + _extent(t))
        if not bool_bytes_ok(host_view(span)):
            own = _bytes_of(t)
            check_bool_bytes(host_view(own), name)  # the tensor's own bytes must be 0 or 1
            return ("own", i)
    return key


def plan_blobs(tensors: Sequence[torch.Tensor], names: Sequence[str], codec: str) -> Planned:
    """Group tensors by storage and describe the blobs that hold them."""
    _codec_for(codec, 1)
    resolved = [t.resolve_conj().resolve_neg().detach() for t in tensors]
    groups: dict[tuple[str, int], list[int]] = {}
    for i, t in enumerate(resolved):
        if t.numel() > 0:
            groups.setdefault(_group_key(t, i, names[i]), []).append(i)
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
    for members in groups.values():
        first = resolved[members[0]]
        itemsize, width = DTYPES[DTYPE_NAMES[first.dtype]]
        if len(members) == 1 and _extent(first) > first.numel() * itemsize:
            data = first.contiguous().cpu().view(-1).view(torch.uint8)
            entries[members[0]]["strides"] = _contiguous_strides(list(first.shape))
            offsets = {members[0]: 0}
        else:
            los = {i: int(resolved[i].storage_offset()) * resolved[i].element_size() for i in members}
            lo = min(los.values())
            hi = max(los[i] + _extent(resolved[i]) for i in members)
            data = _storage_bytes(first, lo, hi)
            offsets = {i: los[i] - lo for i in members}
        if data.numel() % width or any(off % width for off in offsets.values()):
            width = 1
        name, width = _codec_for(codec, width)
        keepalive.append(data)
        for i in members:
            entries[i]["blob"] = len(sources)
            entries[i]["offset"] = offsets[i]
        sources.append(BlobSource(host_view(data), name, width))
    return Planned(sources, entries, keepalive)


def _contiguous_strides(shape: list[int]) -> list[int]:
    strides = [1] * len(shape)
    for k in range(len(shape) - 2, -1, -1):
        strides[k] = strides[k + 1] * max(shape[k + 1], 1)
    return strides
