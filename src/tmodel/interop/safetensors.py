"""Safetensors files and Hugging Face sharded indexes, read and written by our own strict code.

Rules: no trust in the header: its length, the JSON (duplicate keys rejected), dtypes, shapes and offsets
(no holes, overlaps or trailing bytes) are all checked before a byte of tensor data is read, into tensors we
allocate. A header or index whose JSON, fields or metadata are not valid is BAD_SOURCE (`BadSourceFile`);
sizes, layout, dtypes and data keep the codes a tmodel file would get; a read error names its file (`path`).
Metadata mapping, so that nothing is dropped silently:
- safetensors `__metadata__` (str -> str) becomes tmodel metadata as is;
- tmodel metadata -> safetensors: str values are copied; other values that JSON can hold (None, bool, int,
  finite float, lists and maps of those) are stored JSON-encoded and their keys listed, as a JSON array,
  under the reserved key `__tmodel_json__`, which our reader uses to decode them back (exact round trip);
  bytes and non-finite floats cannot be stored and raise UnsupportedType naming the key;
- a sharded index: its "metadata" object (any JSON) is the tmodel metadata; each shard's `__metadata__`
  adds the keys not already present (first shard wins).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import torch

from ..archive.reader import Progress
from ..container.atomic import replace_atomically
from ..container.files import open_regular, pread_exact, preadinto_exact
from ..errors import (
    BadLayout,
    BadName,
    BadSourceFile,
    BadTensor,
    LimitExceeded,
    ManifestSchemaError,
    TModelError,
    Truncated,
    UnknownDtype,
    UnsupportedType,
)
from ..limits import DEFAULT_LIMITS
from ..manifest.dtypes import DTYPES, check_bool_bytes
from ..manifest.encoding import INT64_MAX
from ..manifest.metadata import check_metadata
from ..tensors.dtypes import DTYPE_NAMES, TORCH_DTYPES
from ..tensors.memory import host_view
from ..tensors.storage import check_tensor

PathLike = str | os.PathLike[str]

#: safetensors dtype name -> tmodel dtype name (complex128, complex32 and the bits types have no safetensors
#: name; safetensors' F6_E2M3 and F6_E3M2 have no torch dtype).
ST_DTYPES: dict[str, str] = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2": "float8_e5m2",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "C64": "complex64",
    "BOOL": "bool",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "U8": "uint8",
    "U16": "uint16",
    "U32": "uint32",
    "U64": "uint64",
    "F8_E8M0": "float8_e8m0fnu",
    # safetensors counts F4 values (4 bits each), torch's float4_e2m1fn_x2 counts bytes holding two of
    # them: the header's last dimension is twice torch's (and must be even), the bytes are the same
    "F4": "float4_e2m1fn_x2",
}
_ST_NAMES = {v: k for k, v in ST_DTYPES.items()}
_PAIRS = "float4_e2m1fn_x2"
MAX_HEADER_BYTES = 100_000_000  # the reference implementation's cap
JSON_KEYS = "__tmodel_json__"
_METADATA_KEY = "__metadata__"
_WRITE_PIECE = 16 << 20


@contextlib.contextmanager
def naming(path: PathLike) -> Iterator[None]:
    """A TModelError raised inside names the source file `path`, unless it names one already."""
    try:
        yield
    except TModelError as exc:
        exc.add_context(path=path)
        raise


def _source_metadata(metadata: Any) -> dict[str, Any]:
    """Source metadata that tmodel metadata cannot hold (an integer beyond 64 bits, deep nesting) is the
    source file's fault: BAD_SOURCE, with check_metadata's message."""
    try:
        return check_metadata(metadata)
    except ManifestSchemaError as exc:
        raise BadSourceFile(exc.message) from None


# -- strict JSON ----------------------------------------------------------------------------------------
def _load_json(raw: bytes, what: str) -> Any:
    """UTF-8 JSON with duplicate keys and NaN/Infinity literals rejected."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise BadSourceFile(f"{what}: duplicate JSON key {key!r}")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise BadSourceFile(f"{what}: {name} is not JSON")

    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant)
    except BadSourceFile:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadSourceFile(f"{what}: not valid UTF-8 JSON: {exc}") from None


def _size(value: Any, where: str) -> int:
    if type(value) is not int or not 0 <= value <= INT64_MAX:
        raise BadSourceFile(f"{where}: {value!r} is not an integer in 0..2^63-1")
    return value


# -- safetensors header -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StEntry:
    """One tensor of a safetensors header; offsets are relative to the byte buffer."""

    name: str
    dtype: str  # tmodel dtype name
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class StHeader:
    """A validated safetensors header: entries in file order, raw metadata, where the buffer starts."""

    entries: list[StEntry]
    metadata: dict[str, str]
    data_start: int


def parse_safetensors_header(raw: bytes, buffer_size: int) -> StHeader:
    """Validate a safetensors JSON header against a byte buffer of `buffer_size` bytes."""
    if not raw.startswith(b"{"):
        raise BadSourceFile("safetensors header does not start with '{'")
    doc = _load_json(raw, "safetensors header")
    if not isinstance(doc, dict):
        raise BadSourceFile("safetensors header is not a JSON object")
    metadata = _st_metadata(doc.pop(_METADATA_KEY, {}))
    if len(doc) > DEFAULT_LIMITS.max_tensors:
        raise LimitExceeded(f"{len(doc)} tensors exceed the limit {DEFAULT_LIMITS.max_tensors}")
    entries = [_st_entry(name, info) for name, info in doc.items()]
    expected = 0
    for e in sorted(entries, key=lambda e: (e.begin, e.end)):
        if e.begin != expected:
            problem = "overlaps the tensor before it" if e.begin < expected else "leaves a hole before it"
            raise BadLayout(f"tensor {e.name!r} at bytes {e.begin}:{e.end} {problem} (expected {expected})")
        expected = e.end
    if expected > buffer_size:
        raise Truncated(f"tensors need {expected} bytes of data, the file has {buffer_size}")
    if expected < buffer_size:
        raise BadLayout(f"{buffer_size - expected} trailing bytes after the last tensor")
    return StHeader(entries, metadata, 8 + len(raw))


def _st_metadata(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(type(v) is str for v in value.values()):
        raise BadSourceFile("safetensors __metadata__ must map strings to strings")
    return dict(value)


def _st_entry(name: str, info: Any) -> StEntry:
    where = f"safetensors tensor {name!r}"
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise BadSourceFile(f"{where}: needs exactly the keys dtype, shape and data_offsets")
    st_dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if type(st_dtype) is not str or st_dtype not in ST_DTYPES:
        raise UnknownDtype(f"{where}: unsupported dtype {st_dtype!r}")
    if not isinstance(shape, list) or not isinstance(offsets, list) or len(offsets) != 2:
        raise BadSourceFile(f"{where}: shape must be a list and data_offsets a pair")
    if len(shape) > DEFAULT_LIMITS.max_rank:
        raise LimitExceeded(f"{where}: rank {len(shape)} exceeds the limit {DEFAULT_LIMITS.max_rank}")
    dims = tuple(_size(d, f"{where} shape") for d in shape)
    begin, end = (_size(o, f"{where} data_offsets") for o in offsets)
    if begin > end:
        raise BadLayout(f"{where}: data_offsets {begin}:{end} run backwards")
    dtype = ST_DTYPES[st_dtype]
    nbits = DTYPES[dtype][0] * (4 if dtype == _PAIRS else 8)
    for d in dims:  # checked multiply: stop as soon as the product leaves the int64 range
        nbits *= d
        if nbits > 8 * INT64_MAX:
            raise BadTensor(f"{where}: shape {list(dims)} overflows")
    if nbits % 8:
        raise BadTensor(f"{where}: {st_dtype} values of shape {list(dims)} do not end at a byte boundary")
    if nbits // 8 != end - begin:
        raise BadTensor(
            f"{where}: shape {list(dims)} of {st_dtype} needs {nbits // 8} bytes, offsets span {end - begin}"
        )
    if dtype == _PAIRS:
        if not dims or dims[-1] % 2:
            raise UnsupportedType(
                f"{where}: F4 values of shape {list(dims)} have no {_PAIRS} form (its last dimension counts "
                "pairs, so it must be even)"
            )
        dims = (*dims[:-1], dims[-1] // 2)
    return StEntry(name, dtype, dims, begin, end)


# -- safetensors files ------------------------------------------------------------------------------------
def read_safetensors(
    path: PathLike, *, progress: Progress | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a .safetensors file: (tensors in header order, raw `__metadata__`). Validates before reading.

    >>> tensors, metadata = read_safetensors("model.safetensors")
    """
    _check_little_endian()
    with naming(path):
        return _read_safetensors(path, progress)


def _read_safetensors(
    path: PathLike, progress: Progress | None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    fd, size = open_regular(path)
    try:
        if size < 8:
            raise Truncated(f"{os.fspath(path)!r}: {size} bytes, too short for a safetensors file")
        (n,) = struct.unpack("<Q", pread_exact(fd, 8, 0))
        if n > MAX_HEADER_BYTES:
            raise LimitExceeded(f"safetensors header of {n} bytes exceeds the limit {MAX_HEADER_BYTES}")
        if n > size - 8:
            raise Truncated(f"safetensors header of {n} bytes is longer than the file ({size} bytes)")
        header = parse_safetensors_header(pread_exact(fd, n, 8), size - 8 - n)
        total = size - header.data_start
        done = 0
        tensors: dict[str, torch.Tensor] = {}
        for e in header.entries:
            tensors[e.name] = _read_tensor(fd, e, header.data_start)
            done += e.end - e.begin
            if progress is not None:
                progress(done, total)
        return tensors, header.metadata
    finally:
        os.close(fd)


def _read_tensor(fd: int, e: StEntry, data_start: int) -> torch.Tensor:
    try:
        t = torch.empty(e.shape, dtype=TORCH_DTYPES[e.dtype])
    except RuntimeError as exc:
        raise BadTensor(f"tensor {e.name!r}: cannot allocate shape {list(e.shape)}: {exc}") from None
    preadinto_exact(fd, host_view(t), data_start + e.begin)
    if e.dtype == "bool":
        check_bool_bytes(host_view(t), f"tensor {e.name!r}")
    return t


def write_safetensors(
    tensors: Mapping[str, torch.Tensor],
    path: PathLike,
    *,
    metadata: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> None:
    """Write a .safetensors file atomically; tensors that share memory are written as separate copies.

    >>> write_safetensors({"w": torch.ones(2)}, "model.safetensors", metadata={"format": "pt"})
    """
    _check_little_endian()
    header: dict[str, Any] = {}
    meta = dict(metadata or {})
    if not all(type(k) is str and type(v) is str for k, v in meta.items()):
        raise UnsupportedType("safetensors metadata maps strings to strings only")
    if meta:
        header[_METADATA_KEY] = meta
    data: list[torch.Tensor] = []
    offset = 0
    for name, t in tensors.items():
        if type(name) is not str or name == _METADATA_KEY:
            raise BadName(
                f"invalid safetensors tensor name {name!r}", tensor=name if type(name) is str else None
            )
        if not isinstance(t, torch.Tensor):
            raise UnsupportedType(f"{name!r}: {type(t).__name__} is not a tensor")
        check_tensor(t, name)
        if t.dtype not in DTYPE_NAMES or DTYPE_NAMES[t.dtype] not in _ST_NAMES:
            raise UnsupportedType(f"tensor {name!r}: safetensors has no dtype for {t.dtype}")
        c = t.detach().resolve_conj().resolve_neg().cpu().contiguous()
        nbytes = c.numel() * c.element_size()
        shape = list(c.shape)
        if DTYPE_NAMES[t.dtype] == _PAIRS:  # safetensors counts the 4-bit values
            if not shape:
                raise UnsupportedType(f"tensor {name!r}: a 0-d {_PAIRS} tensor has no safetensors F4 shape")
            shape[-1] *= 2
        header[name] = {
            "dtype": _ST_NAMES[DTYPE_NAMES[t.dtype]],
            "shape": shape,
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
        data.append(c)
    try:
        raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        raise UnsupportedType("a tensor name or metadata string is not valid Unicode") from None
    raw += b" " * (-len(raw) % 8)  # as the reference writer: the buffer starts 8-byte aligned
    if len(raw) > MAX_HEADER_BYTES:
        raise LimitExceeded(f"safetensors header of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}")

    def write(f: BinaryIO) -> None:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        done = 0
        for c in data:
            view = host_view(c)
            for start in range(0, len(view), _WRITE_PIECE):
                piece = view[start : start + _WRITE_PIECE]
                f.write(piece)
                done += len(piece)
                if progress is not None:
                    progress(done, offset)

    replace_atomically(path, write)


def _check_little_endian() -> None:
    if sys.byteorder != "little":  # pragma: no cover - no big-endian CI
        raise UnsupportedType("safetensors conversion needs a little-endian machine")


# -- Hugging Face sharded index -----------------------------------------------------------------------------
def read_safetensors_index(
    path: PathLike, *, progress: Progress | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a `*.safetensors.index.json` and its shards: (tensors in weight_map order, tmodel metadata).

    Shards must be plain file names in the index's directory and hold exactly the tensors mapped to them.
    """
    with naming(path):
        return _read_index(path, progress)


def _index_doc(path: PathLike) -> dict[str, Any]:
    """A sharded index's JSON, with its 'weight_map' object."""
    fd, size = open_regular(path)
    try:
        if size > MAX_HEADER_BYTES:
            raise LimitExceeded(f"index of {size} bytes exceeds the limit {MAX_HEADER_BYTES}")
        doc = _load_json(pread_exact(fd, size, 0), "safetensors index")
    finally:
        os.close(fd)
    if not isinstance(doc, dict) or not isinstance(doc.get("weight_map"), dict):
        raise BadSourceFile("safetensors index needs a 'weight_map' object")
    return doc


def index_shards(path: PathLike) -> dict[str, int]:
    """Each tensor's shard in a sharded index, shards numbered in the order the weight map first names
    them (to keep the split when converting)."""
    with naming(path):
        order: dict[str, int] = {}
        return {
            name: order.setdefault(_shard_name(shard), len(order))
            for name, shard in _index_doc(path)["weight_map"].items()
        }


def _read_index(path: PathLike, progress: Progress | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    doc = _index_doc(path)
    index_meta = doc.get("metadata")
    index_meta = {} if index_meta is None else index_meta
    if not isinstance(index_meta, dict):
        raise BadSourceFile("safetensors index 'metadata' must be an object")
    metadata = _source_metadata(index_meta)
    weight_map: dict[str, Any] = doc["weight_map"]
    shards: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        shards.setdefault(_shard_name(shard), []).append(name)
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    found: dict[str, torch.Tensor] = {}
    for i, (shard, names) in enumerate(shards.items()):
        tensors, shard_meta = read_safetensors(os.path.join(directory, shard))
        extra = sorted(set(tensors) - set(names))
        missing = [n for n in names if n not in tensors]
        if missing or extra:
            problem = (
                f"lacks {missing[0]!r}" if missing else f"holds {extra[0]!r}, which the index maps elsewhere"
            )
            raise BadTensor(f"shard {shard!r} {problem}")
        found.update(tensors)
        for key, value in metadata_from_safetensors(shard_meta).items():
            metadata.setdefault(key, value)
        if progress is not None:
            progress(i + 1, len(shards))
    return {name: found[name] for name in weight_map}, metadata


def write_safetensors_index(
    shards: list[dict[str, torch.Tensor]],
    path: PathLike,
    *,
    metadata: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> None:
    """Write a Hugging Face sharded set: `<stem>-00001-of-0000N.safetensors` ... beside `path`
    (`<stem>.safetensors.index.json`), each atomically, then the index, whose "metadata" holds
    `total_size` and the tmodel metadata as JSON (bytes or non-finite floats are UNSUPPORTED_TYPE)."""
    name = os.path.basename(os.fspath(path))
    stem = name[: -len(".safetensors.index.json")] if name.endswith(".safetensors.index.json") else name
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    meta = dict(metadata or {})
    for key, value in meta.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise UnsupportedType(f"metadata {key!r}: a safetensors index holds JSON values only") from None
    weight_map: dict[str, str] = {}
    total = 0
    for k, tensors in enumerate(shards):
        file = f"{stem}-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(tensors, os.path.join(directory, file), metadata={"format": "pt"})
        for tensor_name, t in tensors.items():
            weight_map[tensor_name] = file
            total += t.numel() * t.element_size()
        if progress is not None:
            progress(k + 1, len(shards))
    doc = {"metadata": {**meta, "total_size": total}, "weight_map": weight_map}
    raw = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    def write(f: BinaryIO) -> None:
        f.write(raw)

    replace_atomically(path, write)


def _shard_name(shard: Any) -> str:
    """A shard is a plain file name next to the index: no directories, no '..', nothing absolute."""
    if (
        type(shard) is not str
        or shard in ("", ".", "..")
        or any(c in shard for c in "/\\\0")
        or os.path.isabs(shard)
        or os.path.basename(shard) != shard
    ):
        raise BadName(f"shard {shard!r} is not a plain file name in the index's directory")
    return shard


# -- metadata mapping ---------------------------------------------------------------------------------------
def metadata_to_safetensors(metadata: Mapping[str, Any]) -> dict[str, str]:
    """tmodel metadata -> safetensors `__metadata__`: strings as is, other values JSON-encoded and listed."""
    if JSON_KEYS in metadata:
        raise UnsupportedType(f"metadata key {JSON_KEYS!r} is reserved for safetensors conversion")
    out: dict[str, str] = {}
    encoded: list[str] = []
    for key, value in metadata.items():
        if type(value) is str:
            out[key] = value
            continue
        try:
            out[key] = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError):
            raise UnsupportedType(
                f"metadata[{key!r}]: safetensors metadata holds strings and JSON only, not this value"
            ) from None
        encoded.append(key)
    if encoded:
        out[JSON_KEYS] = json.dumps(encoded, ensure_ascii=False)
    return out


def metadata_from_safetensors(metadata: Mapping[str, str]) -> dict[str, Any]:
    """safetensors `__metadata__` -> tmodel metadata, decoding the values `__tmodel_json__` lists."""
    out: dict[str, Any] = dict(metadata)
    marker = out.pop(JSON_KEYS, None)
    if marker is None:
        return out
    keys = _load_json(marker.encode("utf-8"), f"metadata {JSON_KEYS!r}")
    if not isinstance(keys, list) or not all(type(k) is str and k in out for k in keys):
        raise BadSourceFile(f"metadata {JSON_KEYS!r} must list keys present in the metadata")
    for key in keys:
        out[key] = _load_json(out[key].encode("utf-8"), f"metadata[{key!r}]")
    return _source_metadata(out)
