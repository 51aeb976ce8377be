"""save / load / open: the only place that knows the order of the steps."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch

from .archive.reader import Progress, Reader
from .archive.writer import DEFAULT_CHUNK_SIZE, DEFAULT_LEVEL, Options, write_atomic
from .checkpoint import flatten, rebuild
from .container import digests
from .errors import InvalidArgument, NotFound, StateMismatch, TModelError, UnsupportedType
from .limits import DEFAULT_LIMITS, Limits
from .manifest.encoding import pack_manifest
from .manifest.metadata import check_metadata
from .manifest.module_tree import roots, state_of
from .manifest.nodes import ModuleRef, mapping_items, tensor_index
from .manifest.schema import Manifest
from .manifest.wire import BlobWire, ManifestWire, manifest_wire
from .nn.apply import Upgraded, apply_steps, steps_per_record
from .nn.records import ModuleBuilder, check_rebuild
from .tensors.dtypes import DTYPE_NAMES, PACKED, torch_dtype
from .tensors.load import device_of, materialize, meta_tensors
from .tensors.planes import torch_merge, torch_split
from .tensors.slices import read_slice
from .tensors.storage import plan_blobs

PathLike = str | os.PathLike[str]
log = logging.getLogger("tmodel")


def save(
    obj: Any,
    path: PathLike,
    *,
    metadata: dict[str, Any] | None = None,
    codec: str = "auto",
    level: int = DEFAULT_LEVEL,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    threads: int = 0,
    checksum: str = digests.DEFAULT,
    progress: Progress | None = None,
) -> None:
    """Save a state dict, checkpoint or module atomically: what `torch.load(weights_only=True)` accepts, with
    its types kept (OrderedDict and its `_metadata`, Counter, set, bytearray, complex, torch.Size, device,
    dtype, Parameters), modules, and numpy arrays and scalars (SPEC.md §5.4).

    >>> tmodel.save({"w": torch.ones(2)}, "ckpt.tmodel", metadata={"step": 10})
    """
    try:
        meta = check_metadata(metadata or {})
    except TModelError as exc:
        raise UnsupportedType(str(exc)) from None
    options = Options(
        chunk_size=chunk_size, level=level, threads=threads, checksum=checksum, split=torch_split
    ).validated()
    flat = flatten(obj)
    pack_manifest({"root": flat.root, "metadata": meta})  # refuse what cannot be encoded before writing
    planned = plan_blobs(flat.tensors, flat.names, codec)

    def finish(blobs: list[BlobWire]) -> ManifestWire:
        return manifest_wire(
            checksum=checksum,
            blobs=blobs,
            tensors=planned.entries,
            root=flat.root,
            metadata=meta,
            modules=flat.records(),
        )

    write_atomic(path, planned.sources, finish, options, progress)


def load(
    path: PathLike,
    map_location: str | torch.device | None = None,
    *,
    dtype: torch.dtype | None = None,
    limits: Limits = DEFAULT_LIMITS,
    threads: int = 0,
    mmap: bool = True,
) -> Any:
    """Load what `save` wrote: the same structure, tensors bit-exact, shared storages still shared, modules
    rebuilt from registered classes. `map_location="meta"` builds without reading tensor data; `dtype` casts
    floating-point tensors; with `mmap` (the default) tensors stored raw are copy-on-write views of the file
    mapping, checked but not copied (`mmap=False` copies them).

    >>> model = tmodel.load("model.tmodel", map_location="cpu")
    """
    with Reader(path, limits, threads, torch_merge) as reader:
        return _load_root(reader, device_of(map_location), dtype, mmap)


def _tensors(
    reader: Reader, device: torch.device, dtype: torch.dtype | None, use_mmap: bool
) -> list[torch.Tensor]:
    m = reader.manifest
    meta = device.type == "meta"
    tensors = meta_tensors(m) if meta else materialize(reader, range(len(m.tensors)), device, use_mmap)
    if dtype is not None:
        if not dtype.is_floating_point:
            raise InvalidArgument(f"dtype must be a floating-point dtype, not {dtype}")
        tensors = [t.to(dtype) if t.is_floating_point() and t.dtype not in PACKED else t for t in tensors]
    return tensors


def _load_root(reader: Reader, device: torch.device, dtype: torch.dtype | None, use_mmap: bool) -> Any:
    m = reader.manifest
    steps = steps_per_record(m) if m.modules else {}
    if steps and device.type == "meta":
        raise InvalidArgument(
            "layers of this file need migration steps, which read tensors: load it on a device"
        )
    if m.modules and not steps and device.type != "meta":
        check_rebuild(m, [i for _, i in roots(m)], reader.limits)  # before any tensor memory is spent
    tensors = _tensors(reader, device, dtype, use_mmap)
    if steps:
        up = apply_steps(m, tensors.__getitem__)
        m = _upgraded_manifest(m, up)
        tensors = [tensors[i] for i in up.kept] + [t.tensor.to(device) for t in up.new]
        log.info("tmodel: upgraded %s in memory: %s", reader.path, "; ".join(up.applied))
        check_rebuild(m, [i for _, i in roots(m)], reader.limits)
    return rebuild(m.root, tensors, ModuleBuilder(m, tensors, device))


def _upgraded_manifest(m: Manifest, up: Upgraded) -> Manifest:
    """The manifest a migrated file would have, for rebuilding in memory (new tensors have no blob yet)."""
    wire = m.to_wire()
    kept = [{**wire["tensors"][i], "name": up.renamed.get(i, wire["tensors"][i]["name"])} for i in up.kept]
    wire["tensors"] = kept + [
        {
            "name": t.name,
            "dtype": DTYPE_NAMES[t.tensor.dtype],
            "shape": list(t.tensor.shape),
            "strides": list(t.tensor.stride()),
            "blob": None,
            "offset": 0,
        }
        for t in up.new
    ]
    wire["modules"] = up.modules
    wire["root"] = up.root
    return Manifest.model_validate(wire, strict=True)


@dataclass(frozen=True)
class LoadReport:
    """What `load_into` matched: keys the model has and the file lacks, the reverse, and shape mismatches."""

    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]

    def __bool__(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def load_into(
    model: torch.nn.Module,
    path: PathLike,
    *,
    strict: bool = True,
    key: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> LoadReport:
    """Load the weights a file holds (a saved module, or a state dict; `key` picks an entry of the file's
    top-level dict) into a model you built. Strict by default: any missing, unexpected or mismatched key
    raises STATE_MISMATCH with the full report. The file's layer types need not be registered.

    >>> report = tmodel.load_into(model, "ckpt.tmodel", key="model", strict=False)
    """
    with Reader(path, limits, 0, torch_merge) as reader:
        m = reader.manifest
        keys = _state_keys(m, key)
        want = model.state_dict()
        missing = sorted(set(want) - set(keys))
        unexpected = sorted(set(keys) - set(want))
        common = [k for k in want if k in keys]
        mismatched = sorted(
            f"{k}: file {list(m.tensors[keys[k]].shape)}, model {list(want[k].shape)}"
            for k in common
            if list(m.tensors[keys[k]].shape) != list(want[k].shape)
        )
        report = LoadReport(missing, unexpected, mismatched)
        if strict and not report:
            raise StateMismatch(
                f"weights do not match the model: missing {missing}, unexpected {unexpected}, "
                f"mismatched {mismatched}"
            )
        bad = {s.split(":")[0] for s in mismatched}
        take = [k for k in common if k not in bad]
        tensors = materialize(reader, [keys[k] for k in take], torch.device("cpu"))
        with torch.no_grad():
            for k, t in zip(take, tensors, strict=True):
                want[k].copy_(t)
        return report


def _state_keys(m: Manifest, key: str | None) -> dict[str, int]:
    node = m.root
    if key is not None:
        entries = dict((k, v) for k, v in mapping_items(node) or ())
        if key not in entries:
            raise NotFound(f"the file's top level has no entry {key!r}")
        node = entries[key]
    if isinstance(node, ModuleRef):
        return state_of(m, node.module)
    pairs = mapping_items(node)  # a state dict: a dict or an OrderedDict (keep_vars: of Parameters)
    if pairs is not None and all(type(k) is str and tensor_index(v) is not None for k, v in pairs):
        return {str(k): int(tensor_index(v)) for k, v in pairs}  # type: ignore[arg-type]
    raise InvalidArgument("the file (or its entry `key`) holds neither a module nor a state dict")


class TensorSlice:
    """A tensor not yet read: index it to read only the chunks the slice needs."""

    def __init__(self, file: TModelFile, index: int) -> None:
        self._file = file
        self._index = index

    def get_shape(self) -> list[int]:
        return list(self._file.manifest.tensors[self._index].shape)

    def get_dtype(self) -> torch.dtype:
        return torch_dtype(self._file.manifest.tensors[self._index].dtype)

    def __getitem__(self, key: Any) -> torch.Tensor:
        return read_slice(self._file.reader, self._index, key)


class TModelFile:
    """A lazily read .tmodel file; use as a context manager.

    >>> with tmodel.open("ckpt.tmodel") as f:
    ...     w = f.get_slice("w")[:1]
    """

    def __init__(
        self, path: PathLike, limits: Limits = DEFAULT_LIMITS, threads: int = 0, mmap: bool = True
    ) -> None:
        self._reader: Reader | None = Reader(path, limits, threads, torch_merge)
        self._mmap = mmap
        self.manifest: Manifest = self._reader.manifest
        self._index = {t.name: i for i, t in enumerate(self.manifest.tensors)}

    @property
    def reader(self) -> Reader:
        if self._reader is None:
            raise InvalidArgument("the file is closed")
        return self._reader

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.manifest.metadata)

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def _lookup(self, name: str) -> int:
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise NotFound(f"no tensor named {name!r}") from None

    def get_tensor(self, name: str, map_location: str | torch.device | None = None) -> torch.Tensor:
        """Read one tensor (only its blob; a raw blob is mapped, not copied, unless opened mmap=False)."""
        return materialize(self.reader, [self._lookup(name)], device_of(map_location), self._mmap)[0]

    def get_slice(self, name: str) -> TensorSlice:
        return TensorSlice(self, self._lookup(name))

    def load(
        self, map_location: str | torch.device | None = None, *, dtype: torch.dtype | None = None
    ) -> Any:
        """The whole saved object, as `tmodel.load` returns it."""
        return _load_root(self.reader, device_of(map_location), dtype, self._mmap)

    def verify(self, progress: Progress | None = None) -> None:
        """Check every checksum and decode every chunk; raise the first problem found."""
        self.reader.verify(progress)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> TModelFile:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def open_file(
    path: PathLike, *, limits: Limits = DEFAULT_LIMITS, threads: int = 0, mmap: bool = True
) -> TModelFile:
    """Open a file lazily: the manifest is read and validated now, tensors when asked for."""
    return TModelFile(path, limits, threads, mmap)
