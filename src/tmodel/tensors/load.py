"""Blobs -> torch tensors (SPEC.md §5.2): decoded straight into the tensors' memory (or mapped, for raw
blobs), then each tensor a view of its blob's one new storage, so sharing survives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..archive.reader import Reader, bool_regions
from ..codecs.table import RAW
from ..errors import InvalidArgument
from ..manifest.dtypes import DTYPES, check_bool_bytes
from ..manifest.schema import Manifest
from .dtypes import torch_dtype
from .memory import host_view


def device_of(map_location: Any) -> torch.device:
    """The device tensors are loaded onto (the CPU unless asked)."""
    if map_location is None:
        return torch.device("cpu")
    if isinstance(map_location, (str, torch.device)):
        try:
            return torch.device(map_location)
        except RuntimeError as exc:
            raise InvalidArgument(f"bad map_location {map_location!r}: {exc}") from None
    raise InvalidArgument("map_location must be None, a string or a torch.device")


def materialize(
    reader: Reader, indices: Sequence[int], device: torch.device, use_mmap: bool = True
) -> list[torch.Tensor]:
    """Decode the blobs behind the given tensors and return the tensors, views of shared storages. With
    `use_mmap`, raw blobs loaded on the CPU are zero-copy views of the file mapping (verified first)."""
    m = reader.manifest
    blobs = sorted({b for i in indices if (b := m.tensors[i].blob) is not None})
    buffers: dict[int, torch.Tensor] = {}
    raw = [b for b in blobs if m.blobs[b].codec == RAW]
    views = reader.mapped_many(raw) if use_mmap and device.type == "cpu" and raw else None
    for b, view in (views or {}).items():
        buffers[b] = torch.frombuffer(view, dtype=torch.uint8)
    decode = [b for b in blobs if b not in buffers]
    buffers.update({b: torch.empty(m.blobs[b].nbytes, dtype=torch.uint8) for b in decode})
    reader.decode_many([(b, host_view(buffers[b]), 0, None) for b in decode])
    for b, regions in bool_regions(m, indices).items():
        for lo, hi in regions:
            check_bool_region(buffers[b][lo:hi], b)
    if device.type != "cpu":
        buffers = {b: buf.to(device) for b, buf in buffers.items()}
    storages = {b: buf.untyped_storage() for b, buf in buffers.items()}
    return [_view(m, i, storages, device) for i in indices]


def check_bool_region(region: torch.Tensor, blob: int) -> None:
    """A bool range of a decoded blob (a uint8 slice of its buffer) holds only 0 and 1."""
    check_bool_bytes(host_view(region), f"blob {blob}")


def meta_tensors(m: Manifest) -> list[torch.Tensor]:
    """Every tensor of a file on the meta device: shapes, strides and dtypes, no data read or allocated."""
    return [
        torch.empty_strided(t.shape, t.strides, dtype=torch_dtype(t.dtype), device="meta") for t in m.tensors
    ]


def _view(
    m: Manifest, i: int, storages: dict[int, torch.UntypedStorage], device: torch.device
) -> torch.Tensor:
    """Tensor `i` as a view of its blob's storage."""
    t = m.tensors[i]
    dtype = torch_dtype(t.dtype)
    if t.blob is None:
        return torch.empty_strided(t.shape, t.strides, dtype=dtype, device=device)
    out = torch.empty(0, dtype=dtype, device=device)
    out.set_(storages[t.blob], t.offset // DTYPES[t.dtype][0], t.shape, t.strides)
    return out
