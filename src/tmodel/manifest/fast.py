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
from itertools import chain, compress, islice, repeat
from operator import add, attrgetter, contains, eq, floordiv, le, mod, mul, neg, not_, sub
from typing import Annotated, Any, NamedTuple

import msgpack
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
from .names import all_valid
from .rows import BlobRow, TensorRow
from .schema import KNOWN_FEATURES, SCHEMA_VERSION, Manifest

#: manifests larger than this take the strict path, which holds chunk lists packed as it decodes them
#: (rows cost ~150 bytes a chunk; SPEC.md §9 asks for memory a small multiple of the manifest)
FAST_MANIFEST_BYTES = 64 << 20
#: manifests of more bytes than this a blob on average (blobs of many chunks) take the strict path too
DENSE_BLOB_BYTES = 4096
#: the msgspec types of the top-level fields decoded as rows; every other field is decoded as plain values
_ROWS: dict[str, Any] = {"blobs": list[BlobRow], "tensors": list[TensorRow]}
#: the nesting the rows reach: manifest, blobs, blob, chunks, chunk, segments, a segment length
_ROW_DEPTH = 7


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


def _dense(raw: bytes) -> bool:
    """Whether the manifest averages more than DENSE_BLOB_BYTES a blob, from the blob count in the array
    header that follows the small fields before it (True when that is not how the manifest begins)."""
    u = msgpack.Unpacker(max_buffer_size=len(raw), raw=False, max_str_len=64)
    u.feed(raw)
    try:
        for _ in range(u.read_map_header()):
            if u.unpack() == "blobs":
                return len(raw) > DENSE_BLOB_BYTES * max(int(u.read_array_header()), 1)
            u.skip()
    except (ValueError, TypeError, msgpack.UnpackException):
        pass
    return True


def prove(
    raw: bytes, limits: Limits, manifest_offset: int, file_size: int, encrypted: bool = False
) -> Proven | None:
    """`raw` decoded and validated as `checks.parse` would, or None when this path cannot prove it valid."""
    if len(raw) > FAST_MANIFEST_BYTES or limits.max_depth < _ROW_DEPTH:
        return None
    if _dense(raw):
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
        or (type(top.modules) is list and len(top.modules) > limits.max_modules)
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
            m,
            limits,
            manifest_offset,
            file_size,
            encrypted,
            proven=_PROVEN if root_wire is not None else _TABLES,
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
    return TypeAdapter(Annotated[info.annotation, info])  # type: ignore[arg-type]


def _blobs_ok(
    blobs: list[BlobRow],
    checksum: str,
    limits: Limits,
    manifest_offset: int,
    file_size: int,
    encrypted: bool,
) -> bool:
    """`checks._check_blobs` over whole columns at once: packed and aligned, nonces, codecs and widths,
    chunk counts and sizes, segment lengths, digest lengths, the decoded-size and chunk limits (SPEC.md
    §3.3, §5.1, §8)."""
    try:
        digest_len = digests.digest_length(checksum)
    except TModelError:
        return False
    if not blobs:
        return manifest_offset == HEADER_SIZE
    offsets, lengths = _column(blobs, "offset"), _column(blobs, "length")
    nbytes, widths, sizes = _column(blobs, "nbytes"), _column(blobs, "width"), _column(blobs, "chunk_size")
    codecs, chunks = _column(blobs, "codec"), _column(blobs, "chunks")
    counts = list(map(len, chunks))
    nonce_len = NONCE_SIZE if encrypted else 0
    kinds = set(zip(codecs, widths, strict=True))
    if (
        offsets[0] != HEADER_SIZE
        or any(map(mod, offsets, repeat(ALIGNMENT)))
        or not _packed(offsets, lengths, manifest_offset)
        or set(map(len, _column(blobs, "nonce"))) != {nonce_len}
        or any(c not in CODECS or (w != 1 and not CODECS[c].grouped) for c, w in kinds)
        or max(sizes) > limits.max_chunk_size
        or any(map(mod, nbytes, widths))
        or any(map(mod, sizes, widths))
        or sum(nbytes) > limits.max_decoded_bytes(file_size)
        or sum(counts) > limits.max_chunks
        or counts != list(map(neg, map(floordiv, map(neg, nbytes), sizes)))  # ceil(nbytes / chunk_size)
    ):
        return False
    flat = list(chain.from_iterable(chunks))
    segments = list(map(attrgetter("segments"), flat))
    if set(map(len, map(attrgetter("digest"), flat))) != {digest_len}:
        return False
    per_kind = {kind: CODECS[kind[0]].segments(kind[1]) for kind in kinds}
    chunk_codecs = list(chain.from_iterable(map(repeat, codecs, counts)))
    chunk_widths = list(chain.from_iterable(map(repeat, widths, counts)))
    if list(map(len, segments)) != list(
        map(per_kind.__getitem__, zip(chunk_codecs, chunk_widths, strict=True))
    ):
        return False
    last = map(sub, nbytes, map(mul, map(sub, counts, repeat(1)), sizes))  # a blob's last chunk's bytes
    raw_lens = list(
        chain.from_iterable(map(chain, map(repeat, sizes, map(sub, counts, repeat(1))), zip(last)))
    )
    for name in set(codecs):
        pick = list(map(eq, chunk_codecs, repeat(name)))
        if not CODECS[name].accepts(
            list(compress(raw_lens, pick)), list(compress(chunk_widths, pick)), list(compress(segments, pick))
        ):
            return False
    stored = list(map(sum, segments))
    if encrypted:
        stored = list(map(add, stored, repeat(TAG_SIZE)))
    it = iter(stored)
    return list(map(sum, map(islice, repeat(it), counts))) == lengths


def _column(rows: list[Any], field: str) -> list[Any]:
    return list(map(attrgetter(field), rows))


def _packed(offsets: list[int], lengths: list[int], manifest_offset: int) -> bool:
    """Each blob (its offset aligned) starts where the one before ends, padded to the next multiple of
    ALIGNMENT, and the manifest where the last one ends, padded likewise."""
    ends = list(map(add, offsets, lengths))
    gaps = list(map(sub, [*offsets[1:], manifest_offset], ends))
    return manifest_offset % ALIGNMENT == 0 and min(gaps) >= 0 and max(gaps) < ALIGNMENT


def _tensors_ok(tensors: list[TensorRow], blobs: list[BlobRow], limits: Limits) -> bool:
    """`checks._check_tensors` over whole columns at once: names valid and unique, dtypes known, ranks within
    the limit, a stride per dimension, no overflow, extents within their blob, offsets aligned, every blob
    used by a tensor (SPEC.md §5.2, §5.6)."""
    names = _column(tensors, "name")
    if len(set(names)) != len(names) or not all_valid(names, limits):
        return False
    if not tensors:
        return not blobs
    items = list(map(_ITEMSIZE.get, _column(tensors, "dtype")))
    shapes, strides = _column(tensors, "shape"), _column(tensors, "strides")
    ranks = list(map(len, shapes))
    if None in items or max(ranks) > limits.max_rank or list(map(len, strides)) != ranks:
        return False
    sizes = map(mul, items, map(math.prod, map(filter, repeat(None), shapes)))  # zeros left out
    if max(sizes) > INT64_MAX:
        return False
    # extent = itemsize * (1 + sum((d - 1) * s)) = itemsize * (1 + sum(d * s) - sum(s)), 0 if a d is 0
    spans_list = list(map(sub, map(sum, map(map, repeat(mul), shapes, strides)), map(sum, strides)))
    empty = list(map(contains, shapes, repeat(0)))
    offsets, refs = _column(tensors, "offset"), _column(tensors, "blob")
    full = list(map(not_, empty))
    if any(compress(offsets, empty)) or set(compress(refs, empty)) - {None}:
        return False
    refs = list(compress(refs, full))
    offsets = list(compress(offsets, full))
    if None in refs or max(refs, default=-1) >= len(blobs) or len(set(refs)) != len(blobs):
        return False
    items = list(compress(items, full))
    reach = map(mul, items, map(add, compress(spans_list, full), repeat(1)))
    capacity = map(_column(blobs, "nbytes").__getitem__, refs)
    return not any(map(mod, offsets, items)) and all(map(le, map(add, offsets, reach), capacity))


_ITEMSIZE = {name: item for name, (item, _) in DTYPES.items()}
