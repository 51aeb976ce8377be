"""Checksum algorithms a file may name; the table is closed, unknown names are an error."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import xxhash

from ..errors import UnknownChecksum

Buffer = bytes | bytearray | memoryview


def _xxh3_64(data: Buffer) -> bytes:
    return bytes(xxhash.xxh3_64_digest(data))


def _sha256(data: Buffer) -> bytes:
    return hashlib.sha256(data).digest()


#: name -> (trailer id, digest length, function). xxh3-64 digests are the canonical big-endian bytes.
ALGORITHMS: dict[str, tuple[int, int, Callable[[Buffer], bytes]]] = {
    "xxh3-64": (1, 8, _xxh3_64),
    "sha256": (2, 32, _sha256),
}
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
        self._xxh = xxhash.xxh3_64() if name == "xxh3-64" else None
        self._sha = hashlib.sha256() if name == "sha256" else None

    def update(self, data: Buffer) -> None:
        if self._xxh is not None:
            self._xxh.update(data)
        elif self._sha is not None:
            self._sha.update(data)

    def digest(self) -> bytes:
        if self._xxh is not None:
            return bytes(self._xxh.digest())
        assert self._sha is not None
        return self._sha.digest()
