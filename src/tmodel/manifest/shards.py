"""The index of a sharded set (SPEC.md §5.10): the rules its `shards` table follows on its own, before any
shard is opened. An index holds no blobs; its tensors refer to the set's blobs, those of its shards in
order, whose decoded sizes the table states, so every tensor rule of §5.2 applies to the index alone."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

from ..container import digests
from ..container.framing import HEADER_SIZE, TRAILER_SIZE
from ..errors import BadLayout, BadName, LimitExceeded
from ..limits import Limits
from .schema import Manifest

#: a shard's file: one name in the index's folder, never a path on any system (no '/', '\\' or ':', no
#: control characters), not hidden or an option (no leading '.' or '-'), no '..'; 1 to 255 bytes of UTF-8
SHARD_FILE = re.compile(r"[^\x00-\x1f\x7f/\\:.\-][^\x00-\x1f\x7f/\\:]*")
SHARD_FILE_BYTES = 255


def check_shard_file(name: str) -> None:
    """A name an index may give a shard [BAD_NAME]."""
    if not SHARD_FILE.fullmatch(name) or ".." in name:
        raise BadName(f"shard file {name!r} is not one plain file name beside the index")
    if len(name.encode("utf-8", "surrogatepass")) > SHARD_FILE_BYTES:
        raise BadName(f"shard file name of more than {SHARD_FILE_BYTES} bytes")


class SetTables(Protocol):
    """What the set's blob sizes are read from: a manifest, or a reader's validated tables."""

    @property
    def blobs(self) -> Sequence[Any]: ...

    @property
    def shards(self) -> Sequence[Any]: ...


def blob_sizes(m: SetTables) -> list[int]:
    """The decoded size of every blob the manifest's tensors refer to: its own blobs, or in an index the
    blobs of its shards, in order."""
    if not m.shards:
        return [b.nbytes for b in m.blobs]
    return [n for s in m.shards for n in s.blobs]


def check_shards(m: Manifest, limits: Limits) -> None:
    """An index's shard table on its own (SPEC.md §5.10); nothing for a file that is not an index."""
    if not m.shards:
        return
    if len(m.shards) > limits.max_shards:
        raise LimitExceeded(f"{len(m.shards)} shards exceed the limit {limits.max_shards}")
    if m.blobs:
        raise BadLayout("the index of a sharded set holds no blobs: its shards do")
    digest_len = digests.digest_length(m.checksum)
    seen: set[str] = set()
    blobs = 0
    for k, s in enumerate(m.shards):
        where = f"shard {k} ({s.file!r})"
        check_shard_file(s.file)
        if s.file in seen:
            raise BadName(f"{where}: listed twice")
        seen.add(s.file)
        if len(s.digest) != digest_len:
            raise BadLayout(f"{where}: digest of {len(s.digest)} bytes, {m.checksum} has {digest_len}")
        if s.size < HEADER_SIZE + TRAILER_SIZE:
            raise BadLayout(f"{where}: {s.size} bytes is smaller than any container")
        if not s.blobs:
            raise BadLayout(f"{where}: holds no blob")
        blobs += len(s.blobs)
        if blobs > limits.max_blobs:
            raise LimitExceeded(f"more than {limits.max_blobs} blobs in the set")
        cap = limits.max_decoded_bytes(s.size)
        if sum(s.blobs) > cap:
            raise LimitExceeded(f"{where}: decoded size exceeds {cap} bytes for a file of {s.size} bytes")
