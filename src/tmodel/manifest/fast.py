"""The fast path of manifest validation (SPEC.md §9 steps 4-9): a manifest decoded in C by msgspec into
typed, strict, closed rows (`rows`), proven canonical by encoding it back byte for byte (so no map held a
duplicate key and every key came in the order of SPEC.md §5's tables), then checked with tight loops and
`checks.check_semantics` for everything its loops do not cover.

Rule: `prove` either returns a manifest that the strict path (`checks.parse`) would accept, or None, never
an error of its own: the strict path then runs and reports exactly what it always reported. So the fast
path may decline anything it does not prove (a non-canonical encoding, an older schema version, a tree
kind `fast_tree` does not know, a very large manifest), but must never accept what the strict path refuses.
A top-level field other than those below is validated by its annotation in `schema.Manifest`, so a field
added there needs nothing here.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Any, NamedTuple

import msgspec

from ..codecs.table import CODECS
from ..container import digests
from ..container.framing import ALIGNMENT, HEADER_SIZE, NONCE_SIZE, TAG_SIZE
from ..errors import TModelError
from ..limits import Limits
from .checks import check_semantics
from .dtypes import DTYPES
from .encoding import INT64_MAX, check_types
from .fast_tree import proves
from .metadata import check_metadata
from .names import check_name
from .rows import BlobRow, TensorRow
from .schema import KNOWN_FEATURES, SCHEMA_VERSION, Manifest

#: manifests larger than this take the strict path, which holds chunk lists packed as it decodes them
#: (rows cost ~150 bytes a chunk; SPEC.md §9 asks for memory a small multiple of the manifest)
FAST_MANIFEST_BYTES = 64 << 20
#: the msgspec types of the top-level fields decoded as rows; every other field is decoded as plain values
_ROWS: dict[str, Any] = {"blobs": list[BlobRow], "tensors": list[TensorRow]}
#: the nesting the rows reach: manifest, blobs, blob, chunks, chunk, segments, a segment length
_ROW_DEPTH = 7
_MASK = ~(ALIGNMENT - 1)


class Proven(NamedTuple):
    """A valid manifest whose object tree is not built yet (`root` is None): `root` is its decoded form,
    proven valid, for `schema.Node` to build on first use."""

    manifest: Manifest
    root: Any


@functools.cache
def _codec() -> tuple[msgspec.msgpack.Decoder[Any], msgspec.msgpack.Encoder]:
    """A decoder of the whole manifest (a struct of `schema.Manifest`'s fields, in their order) and the
    encoder that proves it canonical."""
    fields = [(name, _ROWS.get(name, Any)) for name in Manifest.model_fields]
    top = msgspec.defstruct("ManifestRows", fields, forbid_unknown_fields=True, gc=False)
    return msgspec.msgpack.Decoder(top), msgspec.msgpack.Encoder()


def prove(
    raw: bytes, limits: Limits, manifest_offset: int, file_size: int, encrypted: bool = False
) -> Proven | None:
    """`raw` decoded and validated as `checks.parse` would, or None when this path cannot prove it valid."""
    if len(raw) > FAST_MANIFEST_BYTES or limits.max_depth < _ROW_DEPTH:
        return None
    decoder, encoder = _codec()
    try:
        top = decoder.decode(raw)
        if encoder.encode(top) != raw:
            return None
    except (msgspec.MsgspecError, RecursionError, UnicodeDecodeError, ValueError, TypeError, OverflowError):
        return None
    blobs: list[BlobRow] = top.blobs
    tensors: list[TensorRow] = top.tensors
    if (
        type(top.schema_version) is not int
        or top.schema_version != SCHEMA_VERSION
        or len(blobs) > limits.max_blobs
        or len(tensors) > limits.max_tensors
    ):
        return None
    fields: dict[str, Any] = {}
    root_wire: Any = None
    try:
        for name in Manifest.model_fields:
            value = getattr(top, name)
            if name in _ROWS:
                fields[name] = value
            elif name == "root" and proves(value, len(tensors), 2, limits.max_depth):
                fields[name], root_wire = None, value
            else:
                fields[name] = _field(name, value, limits)
        if not _blobs_ok(blobs, fields["checksum"], limits, manifest_offset, file_size, encrypted):
            return None
        if not _tensors_ok(tensors, blobs, limits):
            return None
        m = Manifest.model_construct(**fields)
        check_semantics(
            m, limits, manifest_offset, file_size, encrypted, proven=_PROVEN if root_wire is not None else _TABLES
        )
    except (TModelError, ValueError, TypeError):  # pydantic's ValidationError is a ValueError
        return None
    return Proven(m, root_wire)


_TABLES = frozenset({"blobs", "tensors"})
_PROVEN = _TABLES | {"root"}


def _field(name: str, value: Any, limits: Limits) -> Any:
    """A top-level field other than the rows, checked (nesting, types) and in the form `Manifest` holds;
    raises for anything the strict path might refuse."""
    check_types(value, limits.max_depth - 1)
    if name == "schema_version" or name == "checksum":
        if type(value) is not (int if name == "schema_version" else str):
            raise ValueError(name)
        return value
    if name == "required_features":
        if type(value) is not list or any(type(f) is not str or f not in KNOWN_FEATURES for f in value):
            raise ValueError(name)
        return value
    if name == "metadata" or name == "extensions":
        return check_metadata(value, limits.max_depth)
    if name == "modules" and type(value) is list and not value:
        return value
    if name == "checkpoint" and value is None:
        return value
    return _adapter(name).validate_python(value, strict=True)


@functools.cache
def _adapter(name: str) -> Any:
    """pydantic's validator of one field of `schema.Manifest`, for the fields the fast path has no check of
    its own for (module records, a checkpoint version, fields added later)."""
    from pydantic import TypeAdapter

    info = Manifest.model_fields[name]
    return TypeAdapter(Annotated[info.annotation, *info.metadata])


def _blobs_ok(
    blobs: list[BlobRow],
    checksum: str,
    limits: Limits,
    manifest_offset: int,
    file_size: int,
    encrypted: bool,
) -> bool:
    """`checks._check_blobs` as one loop: packed and aligned, nonces, codecs and widths, chunk counts and
    sizes, segment lengths, digest lengths, the decoded-size and chunk limits (SPEC.md §3.3, §5.1, §8)."""
    try:
        digest_len = digests.digest_length(checksum)
    except TModelError:
        return False
    expected = HEADER_SIZE
    tag = TAG_SIZE if encrypted else 0
    nonce_len = NONCE_SIZE if encrypted else 0
    cap = limits.max_decoded_bytes(file_size)
    max_chunk = limits.max_chunk_size
    total_bytes = total_chunks = 0
    for b in blobs:
        codec = CODECS.get(b.codec)
        width, nbytes, chunk_size = b.width, b.nbytes, b.chunk_size
        if (
            b.offset != expected
            or len(b.nonce) != nonce_len
            or codec is None
            or (width != 1 and not codec.grouped)
            or chunk_size > max_chunk
            or nbytes % width
            or chunk_size % width
        ):
            return False
        total_bytes += nbytes
        chunks = b.chunks
        n = len(chunks)
        total_chunks += n
        if n != -(-nbytes // chunk_size) or total_bytes > cap or total_chunks > limits.max_chunks:
            return False
        segments_of, check = codec.segments(width), codec.check
        stored = 0
        for j, c in enumerate(chunks):
            segments = c.segments
            if len(segments) != segments_of or len(c.digest) != digest_len:
                return False
            check(width, min(chunk_size, nbytes - j * chunk_size), segments)  # BadTensor: declined
            stored += sum(segments) + tag
        if stored != b.length:
            return False
        expected = (b.offset + stored + ALIGNMENT - 1) & _MASK
    return expected == manifest_offset


def _tensors_ok(tensors: list[TensorRow], blobs: list[BlobRow], limits: Limits) -> bool:
    """`checks._check_tensors` as one loop: names valid and unique, dtypes known, ranks within the limit,
    a stride per dimension, no overflow, extents within their blob, offsets aligned, every blob used."""
    used = bytearray(len(blobs))
    n_blobs = len(blobs)
    max_rank = limits.max_rank
    for t in tensors:
        item = DTYPES.get(t.dtype)
        shape, strides = t.shape, t.strides
        rank = len(shape)
        if item is None or rank > max_rank or len(strides) != rank:
            return False
        itemsize = item[0]
        if rank == 1:  # most tensors: the general case below, unrolled
            d = shape[0]
            size = d * itemsize
            reach = itemsize * (1 + (d - 1) * strides[0]) if d else 0
        else:
            size = itemsize * math.prod(d for d in shape if d)
            reach = 0 if 0 in shape else itemsize * (1 + sum((d - 1) * s for d, s in zip(shape, strides)))
        if size > INT64_MAX:
            return False
        offset, blob = t.offset, t.blob
        if reach == 0:
            if blob is not None or offset:
                return False
            continue
        if blob is None or blob >= n_blobs or offset % itemsize or offset + reach > blobs[blob].nbytes:
            return False
        used[blob] = 1
    if used.count(0):
        return False
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        return False
    for name in names:
        check_name(name, limits)  # BadName: declined
    return True
