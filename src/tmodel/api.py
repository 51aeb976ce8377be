"""save / load / open: the only place that knows the order of the steps.

Where files come from and go to, as torch.save / torch.load take them: a path (written atomically); a
URL string (`s3://`, `https://`, `memory://`, ... through fsspec: read in ranged requests, saved by an
upload that never leaves a partial object at the target, `container.remote` and `container.upload`); a
binary file object (written from its position: a complete file or an error, never atomic, see
`container.streams`; read from its position to its end, which must be seekable); or bytes
(`save_bytes` / `load_bytes`, as safetensors.torch's save / load). Every rule of reading applies to each.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from operator import attrgetter
from types import TracebackType
from typing import Any, BinaryIO

import torch

from .archive.encryption import Sealer
from .archive.progress import ProgressArg, progress_for
from .archive.reader import Reader, names_file
from .archive.sharding import Split, by_size, parse_size, remove_stale_shards, write_sharded
from .archive.trust import require
from .archive.writer import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_LEVEL,
    Options,
    Source,
    write_atomic,
    write_bytes,
    write_stream,
)
from .checkpoint import flatten, rebuild
from .container import digests
from .container.sources import buffer_source
from .container.streams import check_writable
from .container.upload import staged, staged_set
from .container.urls import is_url, local_path
from .errors import InvalidArgument, NotFound, StateMismatch, TModelError, UnsupportedType
from .limits import DEFAULT_LIMITS, Limits
from .manifest.encoding import pack_manifest
from .manifest.metadata import check_metadata, with_libraries
from .manifest.module_tree import roots
from .manifest.schema import Manifest
from .manifest.wire import BlobWire, CheckpointWire, ManifestWire, manifest_wire
from .nn.apply import Upgraded, apply_steps, needs_steps
from .nn.checkpoint_steps import checkpoint_version
from .nn.records import ModuleBuilder, check_modules, check_rebuild
from .nn.registry import finding
from .tensors.dtypes import DTYPE_NAMES, PACKED, torch_dtype
from .tensors.into import LoadReport
from .tensors.into import load_into as _load_into
from .tensors.load import MapLocation, Placement, common_device_of, materialize, meta_tensors, placement
from .tensors.planes import one_intra_op_thread, torch_merge, torch_split
from .tensors.slices import read_slice
from .tensors.storage import plan_blobs

PathLike = str | os.PathLike[str]
#: where `load`, `open` and `load_into` read from: a path or a readable, seekable binary file object
ReadTarget = PathLike | BinaryIO
#: where `save` writes to: a path (atomically) or a writable binary file object
WriteTarget = PathLike | BinaryIO
log = logging.getLogger("tmodel")
__all__ = ["LoadReport", "TModelFile", "load", "load_bytes", "load_into", "open_file", "save", "save_bytes"]


def _reader(f: Any, limits: Limits, threads: int, key: Any = None) -> Reader:
    """A reader whose codecs merge byte planes with torch, one intra-op thread per decoding thread."""
    return Reader(f, limits, threads, torch_merge, one_intra_op_thread, key)


def save(
    obj: Any,
    f: WriteTarget,
    *,
    metadata: dict[str, Any] | None = None,
    codec: str = "auto",
    level: int = DEFAULT_LEVEL,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    threads: int = 0,
    checksum: str | None = None,
    progress: ProgressArg = None,
    checkpoint: str | None = None,
    sign_with: Any = None,
    encrypt_with: Any = None,
    encrypt_manifest: bool = True,
    max_shard_size: int | str | None = None,
) -> None:
    """Save a state dict or checkpoint (dict/list/tuple/str/int/float/bool/None/bytes/tensors/modules) to a
    path, atomically, to a URL (written locally, then uploaded: never a partial object at the target,
    `container.upload`), or into a writable binary file object from its position (built whole first, then
    copied in: the object receives a complete file or nothing tmodel wrote, unless its own write fails).
    `progress=True` draws a bar on a terminal; a callable gets (done, total).
    Values: what `torch.load(weights_only=True)` accepts, with its types kept (OrderedDict and its
    `_metadata`, Counter, set, bytearray, complex, torch.Size, device, dtype, Parameters), modules, and numpy
    arrays and scalars (SPEC.md §5.4); optimizers, LR schedulers, gradient scalers and `tmodel.rng_state()`
    as training state. `checkpoint` names a layout type registered with `tmodel.register_checkpoint`, whose
    version the file records for checkpoint steps. `sign_with` (a private key, PEM/OpenSSH bytes or key
    file) embeds a signature (SPEC.md §3.4); `checksum` is then `"blake3"` unless given (xxh3-64 otherwise).
    `encrypt_with` (32 raw bytes, or a passphrase: a str or `tmodel.Passphrase`) encrypts every chunk and
    the manifest (SPEC.md §3.5); `encrypt_manifest=False` leaves the manifest readable, still authenticated.
    `max_shard_size` (bytes, or "5GB"/"5GiB") splits a larger object into shards beside a path or URL,
    `model-00001-of-00003.tmodel`, ..., each a complete file, and writes at the path their index, which
    `load`, `open` and `verify` take as they take one file (SPEC.md §5.10; `archive.sharding`).

    >>> tmodel.save({"w": torch.ones(2)}, "ckpt.tmodel", metadata={"step": 10})
    >>> buf = io.BytesIO(); tmodel.save(model.state_dict(), buf)
    """
    split = None if max_shard_size is None else by_size(parse_size(max_shard_size))
    save_split(
        obj,
        f,
        split,
        metadata=metadata,
        codec=codec,
        level=level,
        chunk_size=chunk_size,
        threads=threads,
        checksum=checksum,
        progress=progress,
        checkpoint=checkpoint,
        sign_with=sign_with,
        encrypt_with=encrypt_with,
        encrypt_manifest=encrypt_manifest,
    )


def save_split(
    obj: Any,
    f: WriteTarget,
    split: Split | None,
    *,
    metadata: dict[str, Any] | None = None,
    codec: str = "auto",
    level: int = DEFAULT_LEVEL,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    threads: int = 0,
    checksum: str | None = None,
    progress: ProgressArg = None,
    checkpoint: str | None = None,
    sign_with: Any = None,
    encrypt_with: Any = None,
    encrypt_manifest: bool = True,
) -> None:
    """`save`, with `split` choosing the blobs of each shard (None: one file; `archive.sharding`)."""
    if isinstance(f, (bytes, bytearray, memoryview)):
        raise InvalidArgument(
            "save takes a path or a writable binary file object; tmodel.save_bytes returns bytes"
        )
    to_url = is_url(f)
    to_path = isinstance(f, (str, os.PathLike))
    if split is not None and not to_path:
        raise InvalidArgument("max_shard_size needs a path or URL to write the shards beside")
    if isinstance(f, str):
        f = local_path(f)
    if not to_path:
        check_writable(f)
    sources, finish, options = _prepare(
        obj,
        metadata,
        codec,
        level,
        chunk_size,
        threads,
        checksum,
        checkpoint,
        sign_with,
        encrypt_with,
        encrypt_manifest,
    )
    if split is not None:
        groups = split(sources, finish([])["tensors"])

        def new_seal() -> Sealer | None:
            return None if encrypt_with is None else Sealer.new(encrypt_with, encrypt_manifest)

        def write_set(target: str | os.PathLike[str], report: Any) -> None:
            if len(groups) > 1:
                write_sharded(target, sources, finish, options, groups, new_seal, report)
            else:
                write_atomic(target, sources, finish, options, report)
                remove_stale_shards(target)

        with progress_for(progress, "save") as report:
            if to_url:  # written locally, then uploaded: the shards first, the index last
                with staged_set(f) as local:  # type: ignore[arg-type]
                    write_set(local, report)
            else:
                write_set(f, report)  # type: ignore[arg-type]
        return
    with progress_for(progress, "save") as report:
        if to_url:  # written whole locally, then uploaded (`container.upload`)
            with staged(f) as local:  # type: ignore[arg-type]
                write_atomic(local, sources, finish, options, report)
        elif to_path:
            write_atomic(f, sources, finish, options, report)  # type: ignore[arg-type]
        else:
            write_stream(f, sources, finish, options, report)  # type: ignore[arg-type]


def save_bytes(
    obj: Any,
    *,
    metadata: dict[str, Any] | None = None,
    codec: str = "auto",
    level: int = DEFAULT_LEVEL,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    threads: int = 0,
    checksum: str | None = None,
    progress: ProgressArg = None,
    checkpoint: str | None = None,
    sign_with: Any = None,
    encrypt_with: Any = None,
    encrypt_manifest: bool = True,
) -> bytes:
    """What `save` would write, as bytes (safetensors.torch.save's counterpart; `load_bytes` reads them).

    >>> data = tmodel.save_bytes({"w": torch.ones(2)})
    """
    sources, finish, options = _prepare(
        obj,
        metadata,
        codec,
        level,
        chunk_size,
        threads,
        checksum,
        checkpoint,
        sign_with,
        encrypt_with,
        encrypt_manifest,
    )
    with progress_for(progress, "save") as report:
        return write_bytes(sources, finish, options, report)


def _prepare(
    obj: Any,
    metadata: dict[str, Any] | None,
    codec: str,
    level: int,
    chunk_size: int,
    threads: int,
    checksum: str | None,
    checkpoint: str | None = None,
    sign_with: Any = None,
    encrypt_with: Any = None,
    encrypt_manifest: bool = True,
) -> tuple[list[Source], Any, Options]:
    """Everything checked and planned before a byte is written: the blobs, the manifest builder, options.
    (The returned sources view the planned tensors' memory; `finish` keeps the plan alive.)"""
    if checksum is None:
        checksum = digests.DEFAULT if sign_with is None else "blake3"
    sign = None
    if sign_with is not None:
        from .archive.signing import check_signable, private_key, signed_block

        signer = private_key(sign_with)
        check_signable(checksum)  # before any blob is written

        def sign(manifest: bytes, content_size: int) -> bytes:
            return signed_block(b"", signer, manifest, content_size, str(checksum))

    try:
        meta = check_metadata(metadata or {})
    except TModelError as exc:
        raise UnsupportedType(str(exc)) from None
    options = Options(
        chunk_size=chunk_size,
        level=level,
        threads=threads,
        checksum=checksum,
        split=torch_split,
        worker_init=one_intra_op_thread,
        check=check_modules,
        sign=sign,
        seal=None if encrypt_with is None else Sealer.new(encrypt_with, encrypt_manifest),
    ).validated()
    layout: CheckpointWire | None = None
    if checkpoint is not None:
        layout = {"type": checkpoint, "version": checkpoint_version(checkpoint)}
    flat = flatten(obj)
    meta = with_libraries(meta, flat.libraries())
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
            checkpoint=layout,
        )

    return list(planned.sources), finish, options


def load(
    f: ReadTarget,
    map_location: MapLocation = None,
    *,
    dtype: torch.dtype | None = None,
    limits: Limits = DEFAULT_LIMITS,
    threads: int = 0,
    mmap: bool = True,
    progress: ProgressArg = None,
    trusted_keys: Any = None,
    require_signature: bool = False,
    key: Any = None,
) -> Any:
    """Load what `save` wrote, from a path, a URL (`s3://`, `https://`, ...: ranged requests through
    fsspec, `container.remote`) or a readable, seekable binary file object (from its position to its
    end): the same structure, tensors bit-exact, shared storages still shared, modules rebuilt from
    registered classes. `map_location` as torch.load takes it: a device ("meta" builds without reading
    tensor data), a dict of location tags or a callable `(storage, location)`; every stored storage's
    location is "cpu" (`tensors.load`). `dtype` casts floating-point tensors; with `mmap` (the default)
    tensors stored raw in a file are copy-on-write views of its mapping, checked but not copied
    (`mmap=False` copies them); `progress=True` draws a bar on a terminal. `key`: an encrypted file's raw
    key or passphrase (SPEC.md §3.5); `trusted_keys` and `require_signature`: see `tmodel.sign_file`.

    >>> model = tmodel.load("model.tmodel", map_location="cpu")
    >>> sd = tmodel.load(buf, map_location={"cpu": "cuda:0"})
    """
    where = placement(map_location)
    with _reader(f, limits, threads, key) as reader, progress_for(progress, "load") as report:
        require(reader.signatures, trusted_keys, require_signature)
        return _load_root(reader, where, dtype, mmap, report)


def load_bytes(
    data: bytes | bytearray | memoryview,
    map_location: MapLocation = None,
    *,
    dtype: torch.dtype | None = None,
    limits: Limits = DEFAULT_LIMITS,
    threads: int = 0,
    progress: ProgressArg = None,
    trusted_keys: Any = None,
    require_signature: bool = False,
    key: Any = None,
) -> Any:
    """`load` from bytes in memory (what `save_bytes` returned), with every check a file gets. Tensors are
    decoded into their own memory, never views of `data`.

    >>> sd = tmodel.load_bytes(data)
    """
    where = placement(map_location)
    source = buffer_source(data)
    with _reader(source, limits, threads, key) as reader, progress_for(progress, "load") as report:
        require(reader.signatures, trusted_keys, require_signature)
        return _load_root(reader, where, dtype, False, report)


def _tensors(
    reader: Reader, where: Placement, dtype: torch.dtype | None, use_mmap: bool, progress: Any = None
) -> list[torch.Tensor]:
    m = reader.manifest
    meta = isinstance(where, torch.device) and where.type == "meta"
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise InvalidArgument(f"dtype must be a floating-point dtype, not {dtype}")
    tensors = (
        meta_tensors(m) if meta else materialize(reader, range(len(m.tensors)), where, use_mmap, progress)
    )
    return tensors if dtype is None else _cast(tensors, dtype)


def _cast(tensors: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    """Floating-point tensors cast to `dtype`, each storage once per dtype viewing it, so that views that
    shared a storage (ties, stride-0 expansions, slices) share the cast one, with their strides."""
    out = list(tensors)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, t in enumerate(tensors):
        if not t.is_floating_point() or t.dtype in PACKED or t.dtype == dtype:
            continue
        if t.numel() == 0 or t.device.type == "meta":
            out[i] = t.to(dtype)
        else:
            groups.setdefault((t.device, t.untyped_storage().data_ptr(), t.dtype), []).append(i)
    for members in groups.values():
        first = tensors[members[0]]
        storage = first.untyped_storage()
        base = torch.empty(0, dtype=first.dtype, device=first.device)
        base.set_(storage, 0, (storage.nbytes() // first.element_size(),), (1,))
        cast = base.to(dtype)
        for i in members:
            t = tensors[i]
            out[i] = cast.as_strided(t.shape, t.stride(), t.storage_offset())
    return out


@names_file  # rebuild and migration errors name the file too
def _load_root(
    reader: Reader, where: Placement, dtype: torch.dtype | None, use_mmap: bool, progress: Any = None
) -> Any:
    with finding(reader.limits.max_found_names):  # names an integration registers on first use
        return _load_modules(reader, where, dtype, use_mmap, progress)


_STEPS_READ = "layers of this file need migration steps, which read tensors: load it on a device"


def _load_modules(
    reader: Reader, where: Placement, dtype: torch.dtype | None, use_mmap: bool, progress: Any
) -> Any:
    m = reader.manifest
    steps = needs_steps(m)
    meta = isinstance(where, torch.device) and where.type == "meta"
    if steps and meta:
        raise InvalidArgument(_STEPS_READ)
    dry = None
    if m.modules and not steps and not meta:
        dry = check_rebuild(m, [i for _, i in roots(m)], reader.limits)  # before any tensor memory is spent
    tensors = _tensors(reader, where, dtype, use_mmap, progress)
    device = _device_of(where, tensors)
    if steps:
        m, tensors = _upgraded(reader, m, tensors, device)
        dry = check_rebuild(m, [i for _, i in roots(m)], reader.limits)
    return _rebuild(reader, m, tensors, device, dry)


def _rebuild(
    reader: Reader, m: Manifest, tensors: list[torch.Tensor], device: torch.device, dry: ModuleBuilder | None
) -> Any:
    """The object tree, its modules those of the dry run when they can be, else constructed with meta
    parameters; the file's tensors replace every parameter. Again with real parameters when a constructor
    computed a buffer from a parameter (it would be left on meta)."""
    if dry is not None and device.type != "meta":
        builder = ModuleBuilder.reusing(dry, tensors, device)
    else:
        builder = ModuleBuilder(m, tensors, device, meta_params=device.type != "meta")
    out = rebuild(m.root, tensors, builder)
    if builder.left_on_meta():
        log.info(
            "tmodel: %s: a constructor computes a buffer from its parameters; rebuilt with real ones",
            reader.path,
        )
        out = rebuild(m.root, tensors, ModuleBuilder(m, tensors, device))
    return out


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
    wire["checkpoint"] = up.checkpoint
    return Manifest.model_validate(wire, strict=True)


def load_into(
    model: torch.nn.Module,
    f: ReadTarget,
    *,
    strict: bool = True,
    key: str | None = None,
    assign: bool = False,
    dtype: torch.dtype | None = None,
    map_location: MapLocation = None,
    mmap: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    threads: int = 0,
    progress: ProgressArg = None,
    trusted_keys: Any = None,
    require_signature: bool = False,
    decryption_key: Any = None,
) -> LoadReport:
    """Load the weights a file holds (a saved module, or a state dict; `key` picks an entry of the file's
    top-level dict) into a model you built. Strict by default: any missing, unexpected or mismatched key
    raises STATE_MISMATCH with the full report, and the model is left as it was. Tied weights are filled
    once, from whichever of their keys the file holds, and stay tied. `assign=True` gives the model the
    file's tensors (on `map_location`, cast to `dtype`; a model built on the meta device becomes real),
    as torch's load_state_dict(assign=True); `assign=False` copies values into the model's own tensors
    (a meta model is refused: use assign=True). The file's layer types need not be registered.

    >>> report = tmodel.load_into(model, "ckpt.tmodel", key="model", strict=False)
    >>> with torch.device("meta"): model = Net()
    >>> tmodel.load_into(model, "model.tmodel", assign=True)
    """
    where = placement(map_location)
    with (
        _reader(f, limits, threads, decryption_key) as reader,
        progress_for(progress, "load") as report,
    ):
        require(reader.signatures, trusted_keys, require_signature)
        m = reader.manifest
        with finding(reader.limits.max_found_names):
            steps = needs_steps(m)
        if steps and isinstance(where, torch.device) and where.type == "meta":
            raise InvalidArgument(_STEPS_READ)
        if steps:  # the file's layers are older than the program's: upgraded in memory first, as by load
            loaded = _tensors(reader, where, None, mmap, report)
            m, tensors = _upgraded(reader, m, loaded, _device_of(where, loaded))

            def read(indices: list[int]) -> list[torch.Tensor]:
                return [tensors[i] for i in indices]
        else:

            def read(indices: list[int]) -> list[torch.Tensor]:
                return materialize(reader, indices, where, mmap, report)

        try:
            return _load_into(model, m, read, strict=strict, key=key, assign=assign, dtype=dtype)
        except StateMismatch as exc:
            if m.modules:
                raise
            raise StateMismatch(
                f"{exc} (the file records no layers, only tensors, so no layer migration could apply: "
                "save the module itself, tmodel.save(model, path), for its layers and versions to be "
                "recorded)"
            ) from None


def _device_of(where: Placement, tensors: list[torch.Tensor]) -> torch.device:
    """Where tensors a migration step makes go: the load's device, or where the file's tensors went."""
    if isinstance(where, torch.device):
        return where
    return common_device_of({t.device for t in tensors}, torch.device("cpu"))


def _upgraded(
    reader: Reader, m: Manifest, tensors: list[torch.Tensor], device: torch.device
) -> tuple[Manifest, list[torch.Tensor]]:
    """The manifest and tensors of the file with every layer upgraded in memory."""
    up = apply_steps(m, tensors.__getitem__)
    log.info("tmodel: upgraded %s in memory: %s", reader.path, "; ".join(up.applied))
    return _upgraded_manifest(m, up), [tensors[i] for i in up.kept] + [t.tensor.to(device) for t in up.new]


class TensorSlice:
    """A tensor not yet read: index it to read only the chunks the slice needs."""

    def __init__(self, file: TModelFile, index: int) -> None:
        self._file = file
        self._index = index

    def get_shape(self) -> list[int]:
        return list(self._file.reader.tables.tensors[self._index].shape)

    def get_dtype(self) -> torch.dtype:
        return torch_dtype(self._file.reader.tables.tensors[self._index].dtype)

    def __getitem__(self, key: Any) -> torch.Tensor:
        return read_slice(self._file.reader, self._index, key)


class TModelFile:
    """A lazily read .tmodel file; use as a context manager.

    >>> with tmodel.open("ckpt.tmodel") as f:
    ...     w = f.get_slice("w")[:1]
    """

    def __init__(
        self,
        f: ReadTarget,
        limits: Limits = DEFAULT_LIMITS,
        threads: int = 0,
        mmap: bool = True,
        key: Any = None,
    ) -> None:
        self._reader: Reader | None = _reader(f, limits, threads, key)
        self._mmap = mmap
        tensors = self._reader.tables.tensors
        self._index: dict[str, int] = dict(
            zip(map(attrgetter("name"), tensors), range(len(tensors)), strict=True)
        )

    @property
    def reader(self) -> Reader:
        if self._reader is None:
            raise InvalidArgument("the file is closed")
        return self._reader

    @property
    def manifest(self) -> Manifest:
        """The file's whole manifest (its object tree is built when first asked for)."""
        return self.reader.manifest

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
            path = None if self._reader is None else self._reader.path
            tensor = name if isinstance(name, str) else None
            raise NotFound(f"no tensor named {name!r}", path=path, tensor=tensor) from None

    def get_tensor(self, name: str, map_location: MapLocation = None) -> torch.Tensor:
        """Read one tensor (only its blob; a raw blob of a file is mapped, not copied, unless opened
        mmap=False). `map_location` as for `tmodel.load`."""
        return materialize(self.reader, [self._lookup(name)], placement(map_location), self._mmap)[0]

    def get_slice(self, name: str) -> TensorSlice:
        """A tensor to index: `f.get_slice("emb")[:16]`, `[[3, 1, 4]]`, `[mask]`, `[[]]`, reading only the
        chunks the rows live in (`tensors.slices`)."""
        return TensorSlice(self, self._lookup(name))

    def load(
        self,
        map_location: MapLocation = None,
        *,
        dtype: torch.dtype | None = None,
        progress: ProgressArg = None,
    ) -> Any:
        """The whole saved object, as `tmodel.load` returns it."""
        where = placement(map_location)
        with progress_for(progress, "load") as report:
            return _load_root(self.reader, where, dtype, self._mmap, report)

    def verify(self, progress: ProgressArg = None) -> None:
        """Check every checksum and decode every chunk; raise the first problem found. `progress=True`
        draws a bar on a terminal; a callable gets (done, total)."""
        reader = self.reader
        with progress_for(progress, "verify") as report:
            reader.verify(report)

    @property
    def signatures(self) -> list[Any]:
        """The file's signatures, each verified on open (algorithm and key id); empty when unsigned."""
        return list(self.reader.signatures)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> TModelFile:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def open_file(
    f: ReadTarget,
    *,
    limits: Limits = DEFAULT_LIMITS,
    threads: int = 0,
    mmap: bool = True,
    trusted_keys: Any = None,
    require_signature: bool = False,
    key: Any = None,
) -> TModelFile:
    """Open a file lazily: the manifest is read and validated now, tensors when asked for. `f` is a path,
    a URL (only the requested tensors' chunks are fetched) or a readable, seekable binary file object
    (read from its position; keep it open while the result is; for bytes, `tmodel.open(io.BytesIO(data))`).
    Signatures as `load` checks them."""
    opened = TModelFile(f, limits, threads, mmap, key)
    try:
        require(opened.reader.signatures, trusted_keys, require_signature)
    except BaseException:
        opened.close()
        raise
    return opened
