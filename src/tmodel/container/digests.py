"""Checksum algorithms a file may name; the table is closed, unknown names are an error. blake3 (from
schema 6) is the fast cryptographic one: the `blake3` package hashes large buffers on several threads."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import blake3
import xxhash

from ..errors import UnknownChecksum

Buffer = bytes | bytearray | memoryview


def _xxh3_64(data: Buffer) -> bytes:
    return bytes(xxhash.xxh3_64_digest(data))


def _sha256(data: Buffer) -> bytes:
    return hashlib.sha256(data).digest()


def _blake3(data: Buffer) -> bytes:
    return blake3.blake3(data, max_threads=blake3.blake3.AUTO if len(data) >= _PARALLEL else 1).digest()


#: buffers at least this large are hashed on several threads (below, threads cost more than they save)
_PARALLEL = 1 << 20

#: name -> (trailer id, digest length, function). xxh3-64 digests are the canonical big-endian bytes.
ALGORITHMS: dict[str, tuple[int, int, Callable[[Buffer], bytes]]] = {
    "xxh3-64": (1, 8, _xxh3_64),
    "sha256": (2, 32, _sha256),
    "blake3": (3, 32, _blake3),
}
#: the algorithms that resist deliberate collisions (what signing requires)
CRYPTOGRAPHIC = frozenset({"sha256", "blake3"})
BY_ID: dict[int, str] = {spec[0]: name for name, spec in ALGORITHMS.items()}
DEFAULT = "xxh3-64"


def digest_function(name: str) -> Callable[[Buffer], bytes]:
    """The function for a checksum name, or UnknownChecksum."""
    try:
        return ALGORITHMS[name][2]
    except KeyError:
        raise UnknownChecksum(f"unknown checksum algorithm {name!r}") from None


def digest_length(name: str) -> int:
    digest_function(name)
    return ALGORITHMS[name][1]


class Hasher:
    """Incremental digest over several buffers (the trailer digest spans header, manifest, trailer)."""

    def __init__(self, name: str) -> None:
        digest_function(name)
        self._state: Any = (
            xxhash.xxh3_64()
            if name == "xxh3-64"
            else hashlib.sha256()
            if name == "sha256"
            else blake3.blake3()
        )

    def update(self, data: Buffer) -> None:
        self._state.update(data)

    def digest(self) -> bytes:
        return bytes(self._state.digest())
