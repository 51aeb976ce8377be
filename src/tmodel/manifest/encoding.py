"""The manifest's encoding (SPEC.md §4): canonical msgpack out, strict msgpack in, and the integer ranges
msgpack can carry.

Rules: str keys only; no extension types (timestamps included); no duplicate keys or trailing bytes; no
count allocated before the input justifies it; nesting bounded by `max_depth`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from ..errors import LimitExceeded, ManifestDecodeError, UnsupportedType
from ..limits import Limits

#: msgpack integers: int64 and uint64; sizes, offsets and indices of the manifest are the int64 half.
INT_MIN = -(1 << 63)
INT_MAX = (1 << 64) - 1
INT64_MAX = (1 << 63) - 1


def pack_manifest(obj: Any) -> bytes:
    """Canonical msgpack: maps in insertion order, str as str, bytes as bin, floats as float64."""
    try:
        return bytes(msgpack.packb(obj, use_bin_type=True, use_single_float=False, strict_types=True))
    except (UnicodeEncodeError, OverflowError, TypeError, ValueError) as exc:
        raise UnsupportedType(f"cannot encode the manifest: {type(exc).__name__}: {exc}") from None


def _no_ext(code: int, data: bytes) -> Any:
    raise ManifestDecodeError(f"msgpack extension type {code} is not allowed")


def _pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key, value in pairs:
        if type(key) is not str:
            raise ManifestDecodeError(f"map key {key!r} is not a msgpack str")
        if key in out:
            raise ManifestDecodeError(f"duplicate map key {key!r} in the manifest")
        out[key] = value
    return out


#: builds a packed chunk table from a batch of a blob's decoded chunk maps (tables `absorb` the next batch's),
#: or raises ValueError (the chunk list is then kept as decoded, for the schema to report)
PackChunks = Callable[[list[Any]], Any]
_MAP_HEADS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}
_ARRAY_HEADS = frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}


def unpack_manifest(raw: bytes, limits: Limits, pack_chunks: PackChunks | None = None) -> Any:
    """Strict msgpack: str keys, no ext or timestamp, no duplicate keys or trailing bytes, bounded depth.
    With `pack_chunks`, each blob's chunk list is packed as it is decoded, a bounded batch at a time, so a
    manifest of many chunks never holds a Python map per chunk (SPEC.md §8: memory bounded by the file)."""
    n = len(raw)
    settings: dict[str, Any] = {
        "raw": False,
        "strict_map_key": True,
        "use_list": True,
        "timestamp": 0,
        "object_pairs_hook": _pairs,
        "ext_hook": _no_ext,
        "max_str_len": n,
        "max_bin_len": n,
        "max_array_len": n,
        "max_map_len": n // 2,
        "max_ext_len": 0,
    }
    try:
        if pack_chunks is None or not n or raw[0] not in _MAP_HEADS:
            obj = msgpack.unpackb(raw, **settings)
        else:
            obj = _Streamed(raw, settings, pack_chunks).manifest()
    except ManifestDecodeError:
        raise
    except msgpack.ExtraData:
        raise ManifestDecodeError("bytes left in the manifest region after the msgpack object") from None
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError, msgpack.UnpackException) as exc:
        raise ManifestDecodeError(f"manifest is not valid msgpack: {type(exc).__name__}: {exc}") from None
    check_types(obj, limits.max_depth)
    return obj


class _Streamed:
    """The manifest map and its blobs' maps read header by header, each blob's `chunks` array a batch of
    chunk maps at a time; everything else is unpacked whole."""

    def __init__(self, raw: bytes, settings: dict[str, Any], pack_chunks: PackChunks) -> None:
        self.raw = raw
        self.u = msgpack.Unpacker(None, max_buffer_size=max(len(raw), 1), **settings)
        self.u.feed(raw)
        self.pack_chunks = pack_chunks

    def _next_is(self, heads: frozenset[int]) -> bool:
        pos = self.u.tell()
        return pos < len(self.raw) and self.raw[pos] in heads

    def manifest(self) -> Any:
        out = self._map(lambda key: self._blobs() if key == "blobs" and self._next_is(_ARRAY_HEADS) else None)
        if self.u.tell() != len(self.raw):
            raise msgpack.ExtraData(out, b"")
        return out

    def _map(self, special: Callable[[str], Any]) -> dict[str, Any]:
        """A map read by its header, its pairs under `_pairs`' rules: each value unpacked whole, unless
        `special(key)` reads it."""
        pairs: list[tuple[Any, Any]] = []
        for _ in range(self.u.read_map_header()):
            key = self.u.unpack()
            value = special(key) if type(key) is str else None
            pairs.append((key, self.u.unpack() if value is None else value))
        return _pairs(pairs)

    def _blobs(self) -> list[Any]:
        blobs = []
        for _ in range(self.u.read_array_header()):
            if self._next_is(_MAP_HEADS):
                blobs.append(self._map(self._blob_field))
            else:
                blobs.append(self.u.unpack())
        return blobs

    def _blob_field(self, key: str) -> Any:
        return self._chunks() if key == "chunks" and self._next_is(_ARRAY_HEADS) else None

    def _chunks(self) -> Any:
        """A chunk array, packed in batches of decoded maps; kept as decoded once a map does not pack."""
        left = self.u.read_array_header()
        table: Any = None
        decoded: list[Any] | None = None
        while left:
            batch = [self.u.unpack() for _ in range(min(left, 4096))]
            left -= len(batch)
            if decoded is None:
                try:
                    part = self.pack_chunks(batch)
                    table = part if table is None else table.absorb(part)
                    continue
                except ValueError:
                    decoded = [] if table is None else table.to_wire()
            decoded.extend(batch)
        if decoded is not None:
            return decoded
        return self.pack_chunks([]) if table is None else table


_SCALARS = frozenset({type(None), bool, int, float, str, bytes})


def check_types(obj: Any, max_depth: int) -> None:
    """Reject anything but nil/bool/int/float/str/bin/array/map, and nesting deeper than `max_depth`
    (walked level by level; msgpack returns exact types, so `type()` lookups suffice)."""
    level: list[Any] = [obj]
    depth = 1
    while level:
        if depth > max_depth:
            raise LimitExceeded(f"manifest nesting deeper than {max_depth}")
        below: list[Any] = []
        for item in level:
            kind = type(item)
            if kind is dict:
                below.extend(item.values())
            elif kind is list:
                below.extend(item)
            elif kind not in _SCALARS:
                levels = getattr(item, "msgpack_levels", None)  # a packed chunk table (`unpack_manifest`)
                if levels is None:
                    raise ManifestDecodeError(f"msgpack value of type {kind.__name__} is not allowed")
                if depth + levels - 1 > max_depth:
                    raise LimitExceeded(f"manifest nesting deeper than {max_depth}")
        level = below
        depth += 1
