"""The manifest's encoding (SPEC.md §4): canonical msgpack out, strict msgpack in, and the integer ranges
msgpack can carry.

Rules: str keys only; no extension types (timestamps included); no duplicate keys or trailing bytes; no
count allocated before the input justifies it; nesting bounded by `max_depth`.
"""

from __future__ import annotations

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


def unpack_manifest(raw: bytes, limits: Limits) -> Any:
    """Strict msgpack: str keys, no ext or timestamp, no duplicate keys or trailing bytes, bounded depth."""
    n = len(raw)
    try:
        obj = msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=True,
            use_list=True,
            timestamp=0,
            object_pairs_hook=_pairs,
            ext_hook=_no_ext,
            max_str_len=n,
            max_bin_len=n,
            max_array_len=n,
            max_map_len=n // 2,
            max_ext_len=0,
        )
    except ManifestDecodeError:
        raise
    except msgpack.ExtraData:
        raise ManifestDecodeError("bytes left in the manifest region after the msgpack object") from None
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError, msgpack.UnpackException) as exc:
        raise ManifestDecodeError(f"manifest is not valid msgpack: {type(exc).__name__}: {exc}") from None
    _check_types(obj, limits.max_depth)
    return obj


_SCALARS = frozenset({type(None), bool, int, float, str, bytes})


def _check_types(obj: Any, max_depth: int) -> None:
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
                raise ManifestDecodeError(f"msgpack value of type {kind.__name__} is not allowed")
        level = below
        depth += 1
