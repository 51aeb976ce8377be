"""The byte framing of a .tmodel file (SPEC.md §3): header, aligned blob region, manifest, trailer.

Rules: integers are little-endian; the header is 64 bytes at offset 0, the trailer 64 bytes at the end;
the header's reserved bytes and all padding are zero; the trailer's digest covers the header, the manifest
bytes and the trailer's first 24 bytes. This module knows bytes only; it never interprets the manifest.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from . import digests
from .errors import (
    BadLayout,
    BadMagic,
    ChecksumMismatch,
    FileAccessError,
    LimitExceeded,
    ManifestDecodeError,
    NotRegularFile,
    Truncated,
    UnknownChecksum,
    UnknownFeature,
    UnsupportedType,
    UnsupportedVersion,
)
from .limits import Limits

MAGIC = b"\x89TMODEL\n"
END_MAGIC = b"TMODEND\n"
CONTAINER_VERSION = 1
HEADER_SIZE = 64
TRAILER_SIZE = 64
ALIGNMENT = 64
KNOWN_FLAGS = 0  # container v1 defines no feature flags

_HEADER = struct.Struct("<8sII48s")  # magic, container version, required flags, reserved
_TRAILER = struct.Struct("<QQH6s32s8s")  # manifest offset, length, digest id, reserved, digest, end magic
_SIGNED = 24  # trailer bytes covered by the digest


def align(offset: int) -> int:
    """The next multiple of ALIGNMENT at or after `offset`."""
    return (offset + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def pack_header() -> bytes:
    return _HEADER.pack(MAGIC, CONTAINER_VERSION, 0, bytes(48))


def check_header(raw: bytes) -> None:
    """Validate the 64-byte header."""
    if len(raw) < HEADER_SIZE:
        if MAGIC.startswith(raw[: len(MAGIC)]):
            raise Truncated(f"file of {len(raw)} bytes is shorter than the {HEADER_SIZE}-byte header")
        raise BadMagic("not a tmodel file (bad magic)")
    magic, version, flags, reserved = _HEADER.unpack(raw[:HEADER_SIZE])
    if magic != MAGIC:
        raise BadMagic("not a tmodel file (bad magic)")
    if version == 0 or version > CONTAINER_VERSION:
        raise UnsupportedVersion(f"container version {version}; this reader supports 1..{CONTAINER_VERSION}")
    if flags & ~KNOWN_FLAGS:
        raise UnknownFeature(f"unknown required container flags 0x{flags & ~KNOWN_FLAGS:08x}")
    if reserved != bytes(48):
        raise BadLayout("reserved header bytes are not zero")


@dataclass(frozen=True)
class Trailer:
    manifest_offset: int
    manifest_length: int
    digest_name: str
    digest: bytes


def pack_trailer(manifest_offset: int, manifest: bytes, digest_name: str, header: bytes) -> bytes:
    """The trailer for a manifest at `manifest_offset`, with its digest computed."""
    algo_id, _length, _ = digests.ALGORITHMS[digest_name]
    prefix = struct.pack("<QQH6s", manifest_offset, len(manifest), algo_id, bytes(6))
    digest = manifest_digest(digest_name, header, manifest, prefix)
    return _TRAILER.pack(
        manifest_offset, len(manifest), algo_id, bytes(6), digest.ljust(32, b"\0"), END_MAGIC
    )


def manifest_digest(name: str, header: bytes, manifest: bytes, prefix: bytes) -> bytes:
    h = digests.Hasher(name)
    for part in (header, manifest, prefix):
        h.update(part)
    return h.digest()


def parse_trailer(raw: bytes, file_size: int, limits: Limits) -> Trailer:
    """Validate the trailer's fields against the file's size and the limits."""
    offset, length, algo_id, reserved, digest, end = _TRAILER.unpack(raw)
    if end != END_MAGIC:
        raise Truncated("no trailer at the end of the file (torn or truncated write)")
    if reserved != bytes(6):
        raise BadLayout("reserved trailer bytes are not zero")
    if algo_id not in digests.BY_ID:
        raise UnknownChecksum(f"unknown manifest digest algorithm id {algo_id}")
    name = digests.BY_ID[algo_id]
    n = digests.ALGORITHMS[name][1]
    if digest[n:] != bytes(32 - n):
        raise BadLayout("digest padding in the trailer is not zero")
    if length > limits.max_manifest_bytes:
        raise LimitExceeded(f"manifest of {length} bytes exceeds the limit {limits.max_manifest_bytes}")
    end_of_manifest = file_size - TRAILER_SIZE
    if offset < HEADER_SIZE or offset % ALIGNMENT or offset + length != end_of_manifest:
        raise BadLayout(
            f"manifest at {offset}+{length} does not end where the trailer begins ({end_of_manifest})"
        )
    return Trailer(offset, length, name, digest[:n])


def check_manifest_digest(trailer: Trailer, header: bytes, manifest: bytes, trailer_raw: bytes) -> None:
    if manifest_digest(trailer.digest_name, header, manifest, trailer_raw[:_SIGNED]) != trailer.digest:
        raise ChecksumMismatch("manifest checksum mismatch")


# -- msgpack ------------------------------------------------------------------------------------------
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


# -- files --------------------------------------------------------------------------------------------
def open_regular(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Open once for reading without blocking on FIFOs; refuse anything but a regular file. (fd, size)"""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileAccessError(f"cannot open {os.fspath(path)!r}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"{os.fspath(path)!r} is not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def pread_exact(fd: int, length: int, offset: int) -> bytes:
    """Read exactly `length` bytes at `offset`, or raise Truncated (the file shrank or lied)."""
    try:
        data = os.pread(fd, length, offset)
    except OSError as exc:
        raise FileAccessError(f"read failed: {exc.strerror}") from None
    if len(data) != length:
        raise Truncated(f"expected {length} bytes at offset {offset}, the file has {len(data)}")
    return data


def preadinto_exact(fd: int, out: memoryview, offset: int) -> None:
    """Fill `out` from `offset`, or raise Truncated."""
    done = 0
    total = len(out)
    while done < total:
        try:
            n = os.preadv(fd, [out[done:]], offset + done)
        except OSError as exc:
            raise FileAccessError(f"read failed: {exc.strerror}") from None
        if n <= 0:
            raise Truncated(f"expected {total} bytes at offset {offset}, the file ends early")
        done += n
