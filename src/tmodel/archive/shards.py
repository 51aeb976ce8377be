"""Reading a sharded set through its index (SPEC.md §5.10): each shard is opened only when a tensor in it is
read, and checked against the index before any of its blobs is trusted.

Rules: a shard is the file the index names in the index's own folder (or beside its URL); it must be the
very file the index was saved with (its size and manifest digest, CHECKSUM_MISMATCH otherwise, naming the
shard), hold exactly the blobs the index lists and, in order, exactly the index's tensors that live in
those blobs (BAD_LAYOUT otherwise), and be no index itself. A bounded number of shards stays open; tensors
already read (mapped ones too) stay valid when their shard is closed.
"""

from __future__ import annotations

import bisect
import collections
import os
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..container.urls import is_url
from ..errors import BadLayout, ChecksumMismatch, InvalidArgument, TModelError
from ..manifest.schema import Shard
from ..manifest.validated import Validated
from .progress import Progress, shifted

if TYPE_CHECKING:
    from .reader import Reader

#: shards kept open at once (the least recently used one is closed beyond)
OPEN_SHARDS = 32


def shard_base(source: Any) -> str | None:
    """Where an index read from `source` finds its shards: its folder, its URL's parent, or None (a file
    object or bytes, which has no folder)."""
    if isinstance(source, str) and is_url(source):
        return source.rsplit("/", 1)[0] + "/"
    if isinstance(source, (str, os.PathLike)):
        return os.path.dirname(os.path.realpath(os.fspath(source)))  # where the writer put them
    return None


class ShardSet:
    """The shards of an index, opened on demand by `opener` (a Reader with the index's limits, threads and
    key), and where each of the index's tensors and blobs lives in them."""

    def __init__(
        self, index: Validated, path: str, base: str | None, opener: Callable[[str], Reader]
    ) -> None:
        self.manifest = index
        self.path = path
        self._base = base
        self._opener = opener
        self._lock = threading.Lock()
        self._open: collections.OrderedDict[int, Reader] = collections.OrderedDict()
        #: the set-wide index of each shard's first blob
        self.first_blob: list[int] = []
        n = 0
        for s in index.shards:
            self.first_blob.append(n)
            n += len(s.blobs)
        #: for each tensor of the index: its shard (-1: an empty tensor, in no shard) and its index there
        self.tensor_shard: list[int] = []
        self.local_tensor: list[int] = []
        #: the index's tensors each shard holds, in order (a shard's own tensor table, SPEC.md §5.10)
        self._members: list[list[int]] = [[] for _ in index.shards]
        for i, t in enumerate(index.tensors):
            k = -1 if t.blob is None else self.shard_of_blob(t.blob)
            self.tensor_shard.append(k)
            self.local_tensor.append(-1 if k < 0 else len(self._members[k]))
            if k >= 0:
                self._members[k].append(i)

    def shard_of_blob(self, blob: int) -> int:
        return bisect.bisect_right(self.first_blob, blob) - 1

    def location(self, k: int) -> str:
        """Where shard k is read from."""
        if self._base is None:
            raise InvalidArgument(
                f"{self.path} is the index of a sharded set, read from a file object: open it by path or "
                "URL so that its shards can be found beside it"
            )
        name = self.manifest.shards[k].file
        return self._base + name if is_url(self._base) else os.path.join(self._base, name)

    def reader(self, k: int) -> Reader:
        """Shard k, open and checked against the index."""
        with self._lock:
            r = self._open.get(k)
            if r is not None:
                self._open.move_to_end(k)
                return r
        r = self._checked(k)
        with self._lock:
            other = self._open.get(k)  # another thread opened it meanwhile: keep one
            if other is not None:
                r.close()
                return other
            self._open[k] = r
            while len(self._open) > OPEN_SHARDS:
                self._open.popitem(last=False)[1].close()
        return r

    def _checked(self, k: int) -> Reader:
        rec = self.manifest.shards[k]
        where = self.location(k)
        try:
            r = self._opener(where)
        except TModelError as exc:
            exc.message = f"shard {k} ({rec.file}) of {self.path}: {exc.message}"
            exc.args = (exc.message,)
            raise exc.add_context(path=where) from None
        try:
            self._check(k, rec, r, where)
        except BaseException:
            r.close()
            raise
        return r

    def _check(self, k: int, rec: Shard, r: Reader, where: str) -> None:
        what = f"shard {k} ({rec.file}) of {self.path}"
        if (
            r.file_size != rec.size
            or r.manifest_checksum != self.manifest.checksum
            or r.manifest_digest != rec.digest
        ):
            raise ChecksumMismatch(
                f"{what} is not the file the index was saved with (its size or manifest digest differs: "
                "replaced, or from another save)",
                path=where,
            )
        m = r.validated  # its tables: a shard's object tree is never built here
        if m.shards:
            raise BadLayout(f"{what} is itself an index", path=where)
        if [b.nbytes for b in m.blobs] != rec.blobs:
            raise BadLayout(f"{what} holds other blobs than the index lists", path=where)
        first = self.first_blob[k]
        mine = [self.manifest.tensors[i] for i in self._members[k]]
        if len(m.tensors) != len(mine) or any(
            (a.name, a.dtype, a.shape, a.strides, a.offset, a.blob)
            != (b.name, b.dtype, b.shape, b.strides, b.offset, None if b.blob is None else b.blob - first)
            for a, b in zip(m.tensors, mine, strict=True)
        ):
            raise BadLayout(f"{what} holds other tensors than the index lists", path=where)

    def parts(self, indices: Iterable[int]) -> dict[int, list[tuple[int, int]]]:
        """The tensors asked for (positions in `indices`), by shard: (position, index in the shard)."""
        out: dict[int, list[tuple[int, int]]] = {}
        for pos, i in enumerate(indices):
            k = self.tensor_shard[i]
            if k >= 0:
                out.setdefault(k, []).append((pos, self.local_tensor[i]))
        return out

    def verify(self, progress: Progress | None = None) -> None:
        """Every shard checked against the index and verified whole, one open at a time."""
        total = sum(sum(s.blobs) for s in self.manifest.shards)
        done = 0
        for k, s in enumerate(self.manifest.shards):
            r = self._checked(k)
            try:
                r.verify(shifted(progress, done, total))
            finally:
                r.close()
            done += sum(s.blobs)

    def close(self) -> None:
        with self._lock:
            opened, self._open = list(self._open.values()), collections.OrderedDict()
        for r in opened:
            r.close()


def refuse_index(reader: Reader, doing: str) -> None:
    """INVALID_ARGUMENT for an index given to an operation that rewrites one file's blobs."""
    if reader.shards is not None:
        raise InvalidArgument(
            f"{reader.path} is the index of a sharded set, whose blobs are in its shards: it cannot be "
            f"{doing} as one file; load it and save it again (tmodel.save(tmodel.load(index), path, ...))"
        )
