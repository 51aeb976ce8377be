"""Blobs -> torch tensors (SPEC.md §5.2): decoded straight into the tensors' memory (or mapped, for raw
blobs), then each tensor a view of its blob's one new storage, so sharing survives.

`map_location`, as torch.load takes it: None (the CPU), a device or device string, a dict of location
tags, or a callable `(storage, location) -> storage | None`. A .tmodel file records no device: tensors
are saved from memory copied to the CPU, so the location of every stored storage is "cpu" (torch.load's
tag for CPU storages). A dict therefore applies its "cpu" entry (e.g. {"cpu": "cuda:0"}) and ignores tags
no file can have (e.g. {"cuda:1": "cuda:0"}: the tensors stay on the CPU); a callable is called once per
stored blob (each blob is one storage, shared by the tensors that were views of one storage) with that
storage, already decoded and checked on the CPU (a copy-on-write view of the file for raw blobs with
mmap), and "cpu"; it returns a storage of the same size, on any device, or None to keep the CPU one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..archive.progress import Progress, Tally, shifted
from ..archive.reader import Reader, bool_regions, names_file
from ..codecs.table import RAW
from ..errors import InvalidArgument
from ..manifest.dtypes import DTYPES, check_bool_bytes
from ..manifest.rows import Tables
from ..manifest.schema import Manifest
from ..manifest.shards import blob_sizes
from .dtypes import torch_dtype
from .memory import host_view

#: the location tag of every storage a .tmodel file holds (see the module's docstring)
SAVED_LOCATION = "cpu"
StorageMap = Callable[[torch.UntypedStorage, str], Any]
#: what `map_location` may be
MapLocation = str | torch.device | dict[str, str | torch.device] | StorageMap | None
#: a resolved map_location: one device for every storage, or a callable per storage
Placement = torch.device | StorageMap


def _device(value: Any, what: str) -> torch.device:
    if not isinstance(value, (str, torch.device)):
        raise InvalidArgument(f"{what} must be a string or a torch.device, not {type(value).__name__}")
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise InvalidArgument(f"bad {what} {value!r}: {exc}") from None
    _check_available(device, what)
    return device


def _check_available(device: torch.device, what: str) -> None:
    """A device this build and machine have (INVALID_ARGUMENT, not torch's AssertionError, for e.g. "cuda"
    on a CPU-only build); cpu and meta always are."""
    if device.type in ("cpu", "meta"):
        return
    backend = getattr(torch, device.type, None)
    available = getattr(backend, "is_available", None)
    count = getattr(backend, "device_count", None)
    try:
        ok = callable(available) and bool(available())
        if ok and device.index is not None and callable(count):
            ok = device.index < int(count())
    except Exception:  # a backend that cannot even say: not available
        ok = False
    if not ok:
        raise InvalidArgument(
            f"{what} {str(device)!r}: that device is not available in this torch build or machine"
        )


def placement(map_location: Any) -> Placement:
    """`map_location` resolved: a dict becomes the device of its "cpu" entry (the CPU without one), after
    every entry was checked; a callable stays a callable; anything else is INVALID_ARGUMENT."""
    if map_location is None:
        return torch.device("cpu")
    if isinstance(map_location, dict):
        for tag, target in map_location.items():
            if not isinstance(tag, str):
                raise InvalidArgument(f"map_location keys are location tags (strings), not {tag!r}")
            _device(target, f"map_location[{tag!r}]")
        return _device(map_location.get(SAVED_LOCATION, SAVED_LOCATION), "map_location")
    if isinstance(map_location, (str, torch.device)):
        return _device(map_location, "map_location")
    if callable(map_location) and not isinstance(map_location, type):
        return map_location  # type: ignore[no-any-return]
    raise InvalidArgument(
        "map_location must be None, a device string, a torch.device, a dict of location tags or a "
        f"callable (storage, location), not {type(map_location).__name__}"
    )


def device_of(map_location: Any) -> torch.device:
    """The one device tensors are loaded onto (the CPU unless asked); a callable map_location is refused
    here, where there is no storage to give it."""
    where = placement(map_location)
    if not isinstance(where, torch.device):
        raise InvalidArgument("a callable map_location is not accepted here")
    return where


def _mapped_storage(fn: StorageMap, storage: torch.UntypedStorage, blob: int) -> torch.UntypedStorage:
    """What a callable map_location makes of one blob's storage (None: the storage as it is)."""
    result = fn(storage, SAVED_LOCATION)  # its own errors are the caller's, and propagate as torch.load's do
    if result is None:
        return storage
    if isinstance(result, torch.TypedStorage):
        result = result._untyped_storage
    if not isinstance(result, torch.UntypedStorage):
        raise InvalidArgument(f"map_location returned a {type(result).__name__}, not a storage or None")
    if result.nbytes() != storage.nbytes():
        raise InvalidArgument(
            f"map_location returned a storage of {result.nbytes()} bytes for blob {blob} of "
            f"{storage.nbytes()} bytes"
        )
    return result


@names_file
def materialize(
    reader: Reader,
    indices: Sequence[int],
    where: Placement,
    use_mmap: bool = True,
    progress: Progress | None = None,
) -> list[torch.Tensor]:
    """Decode the blobs behind the given tensors and return the tensors, views of shared storages, on a
    device or where a callable map_location puts each blob's storage. With `use_mmap`, raw blobs decoded
    on the CPU are zero-copy views of the file mapping (verified first); `progress(done, total)` counts
    the blobs' bytes. From an index, each shard's tensors are read from it (`archive.shards`)."""
    if reader.shards is not None:
        return _from_shards(reader, indices, where, use_mmap, progress)
    m = reader.tables
    device = where if isinstance(where, torch.device) else torch.device("cpu")
    blobs = sorted({b for i in indices if (b := m.tensors[i].blob) is not None})
    tally = Tally(progress, sum(m.blobs[b].nbytes for b in blobs)) if progress is not None else None
    buffers: dict[int, torch.Tensor] = {}
    raw = [b for b in blobs if m.blobs[b].codec == RAW]
    views = reader.mapped_many(raw, tally) if use_mmap and device.type == "cpu" and raw else None
    for b, view in (views or {}).items():
        buffers[b] = torch.frombuffer(view, dtype=torch.uint8)
    decode = [b for b in blobs if b not in buffers]
    buffers.update({b: torch.empty(m.blobs[b].nbytes, dtype=torch.uint8) for b in decode})
    reader.decode_many([(b, host_view(buffers[b]), 0, None) for b in decode], tally)
    for b, regions in bool_regions(m, indices).items():
        for lo, hi in regions:
            check_bool_region(buffers[b][lo:hi], b)
    if device.type != "cpu":
        buffers = {b: buf.to(device) for b, buf in buffers.items()}
    storages = {b: buf.untyped_storage() for b, buf in buffers.items()}
    if not isinstance(where, torch.device):
        storages = {b: _mapped_storage(where, st, b) for b, st in storages.items()}
        device = common_device_of({st.device for st in storages.values()}, device)  # for empty tensors
    return [_view(m, i, storages, device) for i in indices]


def _from_shards(
    reader: Reader, indices: Sequence[int], where: Placement, use_mmap: bool, progress: Progress | None
) -> list[torch.Tensor]:
    """`materialize` through an index, shard by shard (the set keeps a bounded number open); empty
    tensors, which are in no shard, made here."""
    shards = reader.shards
    assert shards is not None
    m = reader.validated
    sizes = blob_sizes(m)
    blobs = {b for i in indices if (b := m.tensors[i].blob) is not None}
    total = sum(sizes[b] for b in blobs)
    out: list[torch.Tensor | None] = [None] * len(indices)
    devices: set[torch.device] = set()
    done = 0
    for k, members in sorted(shards.parts(indices).items()):
        shard = shards.reader(k)
        got = materialize(shard, [j for _, j in members], where, use_mmap, shifted(progress, done, total))
        local = {e.blob for _, j in members if (e := shard.tables.tensors[j]).blob is not None}
        done += sum(shard.tables.blobs[b].nbytes for b in local)
        for (pos, _), tensor in zip(members, got, strict=True):
            out[pos] = tensor
            devices.add(tensor.device)
    device = where if isinstance(where, torch.device) else common_device_of(devices, torch.device("cpu"))
    return [t if t is not None else _view(m, i, {}, device) for t, i in zip(out, indices, strict=True)]


def common_device_of(devices: set[torch.device], default: torch.device) -> torch.device:
    """The one device of a set, or `default` when it is empty or holds several (where modules are built
    and empty tensors made after a callable map_location placed each storage)."""
    return next(iter(devices)) if len(devices) == 1 else default


def check_bool_region(region: torch.Tensor, blob: int) -> None:
    """A bool range of a decoded blob (a uint8 slice of its buffer) holds only 0 and 1."""
    check_bool_bytes(host_view(region), f"blob {blob}", blob=blob)


def meta_tensors(m: Manifest) -> list[torch.Tensor]:
    """Every tensor of a file on the meta device: shapes, strides and dtypes, no data read or allocated."""
    return [
        torch.empty_strided(t.shape, t.strides, dtype=torch_dtype(t.dtype), device="meta") for t in m.tensors
    ]


def _view(m: Tables, i: int, storages: dict[int, torch.UntypedStorage], device: torch.device) -> torch.Tensor:
    """Tensor `i` as a view of its blob's storage."""
    t = m.tensors[i]
    dtype = torch_dtype(t.dtype)
    if t.blob is None:
        return torch.empty_strided(t.shape, t.strides, dtype=dtype, device=device)
    storage = storages[t.blob]
    out = torch.empty(0, dtype=dtype, device=storage.device)
    out.set_(storage, t.offset // DTYPES[t.dtype][0], t.shape, t.strides)
    return out
