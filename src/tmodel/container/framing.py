"""The byte framing of a .tmodel file (SPEC.md §3): header, aligned blob region, trailer.

Rules: integers are little-endian; the header is 64 bytes at offset 0, the trailer 64 bytes at the end;
the header's reserved bytes and all padding are zero; a signed file (header flag SIGNED) holds a signature
block between the manifest and the trailer, whose length the trailer gives; the trailer's digest covers the
header, the manifest bytes, the signature block and the trailer's first 24 bytes. This module knows bytes
only; it never interprets the manifest or the signatures.
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
#: required flag: the file holds a signature block (SPEC.md §3.4)
SIGNED = 1
#: required flag: the manifest region holds an encryption envelope and every chunk is sealed (SPEC.md §3.5)
ENCRYPTED = 2
KNOWN_FLAGS = SIGNED | ENCRYPTED
#: an encrypted file's sizes: a blob's nonce, the tag after every chunk's segments; its schema is 6 or later
NONCE_SIZE = 12
TAG_SIZE = 16
ENCRYPTED_SINCE = 6

_HEADER = struct.Struct("<8sII48s")  # magic, container version, required flags, reserved
#: manifest offset, length, digest id, signature block length, reserved, digest, end magic
_TRAILER = struct.Struct("<QQHI2s32s8s")
_SIGNED = 24  # trailer bytes covered by the digest
#: the largest signature block a reader accepts (SPEC.md §3.4, §8)
MAX_SIGNATURE_BLOCK = 1 << 16


def align(offset: int) -> int:
    """The next multiple of ALIGNMENT at or after `offset`."""
    return (offset + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def pack_header(flags: int = 0) -> bytes:
    return _HEADER.pack(MAGIC, CONTAINER_VERSION, flags, bytes(48))


def check_header(raw: bytes) -> int:
    """Validate the 64-byte header; returns its required flags."""
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
    return int(flags)


@dataclass(frozen=True)
class Trailer:
    manifest_offset: int
    manifest_length: int
    digest_name: str
    digest: bytes
    signatures_length: int = 0


def pack_trailer(
    manifest_offset: int, manifest: bytes, digest_name: str, header: bytes, signatures: bytes = b""
) -> bytes:
    """The trailer for a manifest at `manifest_offset` (and the signature block after it), with its
    digest computed."""
    algo_id, _length, _ = digests.ALGORITHMS[digest_name]
    prefix = struct.pack("<QQHI2s", manifest_offset, len(manifest), algo_id, len(signatures), bytes(2))
    digest = manifest_digest(digest_name, header, manifest + signatures, prefix)
    return _TRAILER.pack(
        manifest_offset,
        len(manifest),
        algo_id,
        len(signatures),
        bytes(2),
        digest.ljust(32, b"\0"),
        END_MAGIC,
    )


def manifest_digest(name: str, header: bytes, manifest: bytes, prefix: bytes) -> bytes:
    """The trailer digest over the header, the manifest (and signature block) bytes and `prefix`."""
    h = digests.Hasher(name)
    for part in (header, manifest, prefix):
        h.update(part)
    return h.digest()


def parse_trailer(raw: bytes, file_size: int, limits: Limits, flags: int = 0) -> Trailer:
    """Validate the trailer's fields against the file's size, the header's flags and the limits."""
    offset, length, algo_id, signatures, reserved, digest, end = _TRAILER.unpack(raw)
    if end != END_MAGIC:
        raise Truncated("no trailer at the end of the file (torn or truncated write)")
    if reserved != bytes(2):
        raise BadLayout("reserved trailer bytes are not zero")
    if bool(flags & SIGNED) != (signatures > 0):
        raise BadLayout("a signature block is there exactly when the header's SIGNED flag is set")
    if signatures > MAX_SIGNATURE_BLOCK:
        raise LimitExceeded(f"signature block of {signatures} bytes exceeds {MAX_SIGNATURE_BLOCK}")
    if algo_id not in digests.BY_ID:
        raise UnknownChecksum(f"unknown manifest digest algorithm id {algo_id}")
    name = digests.BY_ID[algo_id]
    n = digests.ALGORITHMS[name][1]
    if digest[n:] != bytes(32 - n):
        raise BadLayout("digest padding in the trailer is not zero")
    if length > limits.max_manifest_bytes:
        raise LimitExceeded(f"manifest of {length} bytes exceeds the limit {limits.max_manifest_bytes}")
    end_of_manifest = file_size - TRAILER_SIZE - signatures
    if offset < HEADER_SIZE or offset % ALIGNMENT or offset + length != end_of_manifest:
        raise BadLayout(
            f"manifest at {offset}+{length} does not end where the signature block or trailer begins "
            f"({end_of_manifest})"
        )
    return Trailer(offset, length, name, digest[:n], signatures)


def check_manifest_digest(
    trailer: Trailer, header: bytes, manifest: bytes, trailer_raw: bytes, signatures: bytes = b""
) -> None:
    covered = manifest + signatures
    if manifest_digest(trailer.digest_name, header, covered, trailer_raw[:_SIGNED]) != trailer.digest:
        raise ChecksumMismatch("manifest checksum mismatch")
