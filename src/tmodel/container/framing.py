"""The byte framing of a .tmodel file (SPEC.md §3): header, aligned blob region, trailer.

Rules: integers are little-endian; the header is 64 bytes at offset 0, the trailer 64 bytes at the end;
the header's reserved bytes and all padding are zero; the trailer's digest covers the header, the manifest
bytes and the trailer's first 24 bytes. This module knows bytes only; it never interprets the manifest.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import (
    BadLayout,
    BadMagic,
    ChecksumMismatch,
    LimitExceeded,
    Truncated,
    UnknownChecksum,
    UnknownFeature,
    UnsupportedVersion,
)
from ..limits import Limits
from . import digests

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
