"""Validating, random-access reading of a container (SPEC.md §7).

Rules: the file is opened once and read through that one source only (a path's descriptor, a file
object, or bytes: `container.sources`, the same exact reads and the same checks for each); the header,
trailer and manifest are validated (manifest digest first, then msgpack, then schema and layout) before any
blob is touched; each chunk's digest is checked before it is decoded, into memory the caller allocated, or,
for a raw blob the caller asks to map (`mapped`), every digest is checked through the copy-on-write mapping
it returns (only sources in a regular file offer one). Every TModelError raised while opening or reading
the file names it (`path`), and one about a chunk names the blob and chunk (`names_file`). A reader nobody
closed releases its source and threads when it is garbage-collected, with a `ResourceWarning`, as Python's
own files do; tensors mapped from the file stay valid (they hold the mapping).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import threading
import warnings
import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from ..codecs.frames import CHECKSUMMED_FROM
from ..codecs.planes import Merge, merge_planes
from ..codecs.table import RAW, decode_chunk
from ..container import digests
from ..container.framing import (
    ENCRYPTED,
    HEADER_SIZE,
    TAG_SIZE,
    TRAILER_SIZE,
    align,
    check_header,
    check_manifest_digest,
    parse_trailer,
)
from ..container.sources import SOURCES, ByteSource, Openable, open_source
from ..errors import BadLayout, ChecksumMismatch, InvalidArgument, TModelError, Truncated
from ..limits import DEFAULT_LIMITS, Limits
from ..manifest.checks import tensor_extent
from ..manifest.dtypes import check_bool_bytes
from ..manifest.rows import Tables
from ..manifest.schema import Blob, Manifest
from ..manifest.validated import Validated, read_validated
from .collector import collector_paused
from .progress import Progress
from .shards import ShardSet, shard_base
from .threads import default_threads

if TYPE_CHECKING:
    from .encryption import Sealer

__all__ = ["Progress", "Reader", "bool_regions"]

_J = TypeVar("_J")
_P = ParamSpec("_P")
_R = TypeVar("_R")
_BATCH = 16 << 20  # bytes of digest work handed to a thread at once


def names_file(fn: Callable[Concatenate[Reader, _P], _R]) -> Callable[Concatenate[Reader, _P], _R]:
    """For a Reader method, or a function whose first argument is a Reader: a TModelError it raises names
    the reader's file (`path`), unless the raise site named one already."""

    @functools.wraps(fn)
    def wrapper(reader: Reader, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(reader, *args, **kwargs)
        except TModelError as exc:
            exc.add_context(path=reader.path)
            raise

    return wrapper


#: one chunk to decode: its blob's record and index, the chunk's index, its file offset, its output
_Job = tuple[Blob, int, int, int, memoryview]
#: the same with the chunk's stored bytes already read, and how many bytes of padding follow them there
_RangedJob = tuple[Blob, int, int, int, memoryview, memoryview, int]


class Reader:
    """An open, validated .tmodel file; torch-free."""

    def __init__(
        self,
        source: Openable | ByteSource,
        limits: Limits = DEFAULT_LIMITS,
        threads: int = 0,
        merge: Merge = merge_planes,
        worker_init: Callable[[], None] | None = None,
        key: Any = None,
    ) -> None:
        """`source`: a path, a URL (read through fsspec's ranged requests, `container.remote`), a readable
        seekable binary file object (the archive runs from its position to its end), or a `ByteSource`
        (e.g. `container.sources.buffer_source(data)` for bytes). `merge` is
        the byte-plane merge the codecs use, `worker_init` runs first on each decoding thread. `key`: an
        encrypted file's key or passphrase (`archive.encryption.key_input`); other files ignore it."""
        if not isinstance(limits, Limits):
            raise InvalidArgument(f"limits must be a tmodel.Limits, not {type(limits).__name__}")
        if type(threads) is not int or threads < 0:
            raise InvalidArgument(f"threads must be an int >= 0 (0: one per CPU), not {threads!r}")
        self._merge = merge
        self._worker_init = worker_init
        self.limits = limits
        self._threads = threads
        self._lock = threading.Lock()
        self._starts: dict[int, array[int]] = {}
        self._map: memoryview | None = None
        self._key = key
        #: an encrypted file's keys (SPEC.md §3.5), None for a file that is not encrypted
        self.sealer: Sealer | None = None
        opened: ByteSource = (
            source if isinstance(source, SOURCES) else open_source(source)  # type: ignore[arg-type]
        )
        self.path = opened.name
        self.file_size = opened.size
        self._owned = _Owned(opened)
        self._finalizer = weakref.finalize(self, self._owned.collected, self.path)
        self._finalizer.atexit = False  # at exit the process lets go of everything anyway
        #: an index's shards (SPEC.md §5.10), opened when read; None for a file that is not an index
        self.shards: ShardSet | None = None
        try:
            #: the validated manifest: its blob and tensor tables now, the whole manifest when asked for
            self.validated = self._read_manifest()
            if self.validated.shards:

                def opener(where: str) -> Reader:
                    return Reader(where, limits, threads, merge, worker_init, key)

                self.shards = ShardSet(self.validated, self.path, shard_base(source), opener)
        except BaseException:
            self.close()
            raise

    @property
    def manifest(self) -> Manifest:
        """The whole manifest (its object tree built on first use)."""
        return self.validated.manifest

    @property
    def tables(self) -> Tables:
        """The blobs and tensors, which reading tensors needs, without building the rest of the manifest."""
        return self.validated

    @property
    def source(self) -> ByteSource:
        if self._owned.source is None:
            raise InvalidArgument("the file is closed")
        return self._owned.source

    @names_file
    def _read_manifest(self) -> Validated:
        size = self.file_size
        src = self.source
        header = src.read(min(size, HEADER_SIZE), 0)
        flags = check_header(header)
        if size < HEADER_SIZE + TRAILER_SIZE:
            raise Truncated(f"file of {size} bytes has no room for a trailer")
        trailer_raw = src.read(TRAILER_SIZE, size - TRAILER_SIZE)
        trailer = parse_trailer(trailer_raw, size, self.limits, flags)
        raw = src.read(trailer.manifest_length, trailer.manifest_offset)
        end = trailer.manifest_offset + trailer.manifest_length
        block = src.read(trailer.signatures_length, end) if trailer.signatures_length else b""
        check_manifest_digest(trailer, header, raw, trailer_raw, block)
        #: every signature, verified against its own key (an invalid one is BAD_SIGNATURE, SPEC.md §3.4),
        #: before anything of the region they sign is parsed or decrypted
        self.signatures: list[Any] = []
        if block:  # cryptography is imported only for a signed file
            from .signing import check_signed_digests, verify_block

            self.signatures = verify_block(block, raw, end)
        plain = raw
        if flags & ENCRYPTED:  # cryptography is imported only for an encrypted file
            from .encryption import open_envelope

            self.sealer, plain = open_envelope(raw, self._key, self.limits)
        self._key = None
        with collector_paused():
            manifest = read_validated(
                plain, self.limits, trailer.manifest_offset, end + TRAILER_SIZE, self.sealer is not None
            )
        self.source_schema_version = manifest.source_version
        if block:
            check_signed_digests(manifest.checksum)
        #: where the manifest starts and ends (the signed content's size), and the signature block after it
        self.manifest_offset, self.content_size, self.signature_block = trailer.manifest_offset, end, block
        self.flags = flags  # the header's required flags
        #: the trailer's manifest digest and its algorithm: one value that stands for the whole file
        self.manifest_digest, self.manifest_checksum = trailer.digest, trailer.digest_name
        return manifest

    # -- lifecycle --------------------------------------------------------------------------------------
    def close(self) -> None:
        if self.shards is not None:
            self.shards.close()
        self._finalizer.detach()
        self._owned.release(wait=True)
        self._map = None  # unmapped once no tensor holds a view of it

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._owned.source is None:
                raise InvalidArgument("the file is closed")
            if self._owned.pool is None:
                self._owned.pool = ThreadPoolExecutor(
                    max_workers=self._threads or default_threads(),
                    thread_name_prefix="tmodel-decode",
                    initializer=self._worker_init,
                )
            return self._owned.pool

    # -- blobs ------------------------------------------------------------------------------------------
    @names_file
    def chunk_span(self, blob: int, lo: int, hi: int) -> tuple[int, int]:
        """The chunks [first, last) that hold decoded bytes [lo, hi) of a blob."""
        b = self.validated.blobs[blob]
        if not 0 <= lo <= hi <= b.nbytes:
            raise InvalidArgument(f"byte range {lo}:{hi} outside blob {blob}")
        if lo == hi:
            return 0, 0
        return lo // b.chunk_size, -(-hi // b.chunk_size)

    def decode(self, blob: int, out: memoryview, first: int = 0, last: int | None = None) -> None:
        """Decode chunks [first, last) of a blob into `out`, which spans exactly their decoded bytes."""
        self.decode_many([(blob, out, first, last)])

    @names_file
    def decode_many(
        self,
        requests: Sequence[tuple[int, memoryview, int, int | None]],
        tally: Callable[[int], None] | None = None,
    ) -> None:
        """Decode several (blob, out, first, last) requests, their chunks spread over the worker threads;
        `tally(n)` hears, on this thread, of each n decoded bytes as they are done."""
        checked: list[tuple[Blob, int, memoryview, int, int]] = []
        for blob, out, first, last in requests:
            b = self.validated.blobs[blob]
            stop = len(b.chunks) if last is None else last
            base = first * b.chunk_size
            expected = min(b.nbytes, stop * b.chunk_size) - base
            if not 0 <= first <= stop <= len(b.chunks) or len(out) != expected:
                raise InvalidArgument(f"output of {len(out)} bytes for chunks {first}:{stop} of blob {blob}")
            checked.append((b, blob, out, first, stop))
        if self.source.ranged:
            self._decode_ranged(checked, tally)
            return
        jobs = self._jobs(checked)
        head = list(itertools.islice(jobs, 2))
        if len(head) == 1:
            self._decode_chunk(*head[0])
            if tally is not None:
                tally(len(head[0][4]))
        elif head:
            self._decode_bounded(itertools.chain(head, jobs), tally)
        for b, blob, _, first, stop in checked:
            if stop == len(b.chunks) and stop > first:
                self._check_padding(blob)

    def _jobs(self, checked: list[tuple[Blob, int, memoryview, int, int]]) -> Iterator[_Job]:
        """One (blob, index, chunk, start, output) job per chunk, made as the threads take them."""
        for b, blob, out, first, stop in checked:
            starts = self._chunk_starts(blob)
            base = first * b.chunk_size
            for j in range(first, stop):
                lo = j * b.chunk_size - base
                yield (b, blob, j, starts[j], out[lo : lo + min(b.chunk_size, b.nbytes - j * b.chunk_size)])

    def _decode_ranged(
        self, checked: list[tuple[Blob, int, memoryview, int, int]], tally: Callable[[int], None] | None
    ) -> None:
        """For a source whose reads are requests (a remote object): every chunk's stored bytes through one
        `read_ranges` call, which merges them into few requests fetched ahead, each chunk then checked and
        decoded on a worker thread while later ones arrive. A blob's padding comes with its last chunk."""
        spanned: collections.deque[tuple[_Job, int]] = collections.deque()  # (job, padding after it)

        def spans() -> Iterator[tuple[int, int]]:
            for job in self._jobs(checked):
                b, _, j, start, _ = job
                pad = 0
                if j == len(b.chunks) - 1:
                    end = b.offset + b.length
                    pad = align(end) - end
                spanned.append((job, pad))
                yield start, self._stored_size(b, j) + pad

        def jobs() -> Iterator[_RangedJob]:
            with contextlib.closing(self.source.read_ranges(spans())) as stored:
                for view in stored:
                    job, pad = spanned.popleft()
                    yield (*job, view, pad)

        self._decode_bounded(jobs(), tally)

    def _stored_size(self, b: Blob, j: int) -> int:
        """Chunk j's bytes in the file (with its tag, in an encrypted file)."""
        return sum(b.chunks[j].segments) + (0 if self.sealer is None else TAG_SIZE)

    def _decode_bounded(
        self, jobs: Iterator[_Job] | Iterator[_RangedJob], tally: Callable[[int], None] | None
    ) -> None:
        """Jobs over the worker threads, at most a few per thread in flight: memory stays bounded by
        threads x chunk however many chunks there are; errors surface in chunk order."""
        pool = self._executor()
        window: collections.deque[tuple[int, Future[None]]] = collections.deque()
        cap = 4 * (self._threads or default_threads())
        try:
            for job in jobs:
                window.append((len(job[4]), pool.submit(self._decode_chunk, *job)))
                if len(window) >= cap:
                    self._settle(window, tally)
            while window:
                self._settle(window, tally)
        finally:
            for _, fut in window:
                fut.cancel()
            for _, fut in window:
                if not fut.cancelled():
                    fut.exception()  # wait: a running job still writes into the caller's buffer

    @staticmethod
    def _settle(
        window: collections.deque[tuple[int, Future[None]]], tally: Callable[[int], None] | None
    ) -> None:
        n, fut = window.popleft()
        fut.result()
        if tally is not None:
            tally(n)

    def _chunk_starts(self, blob: int) -> array[int]:
        """File offsets of a blob's chunks, packed (8 bytes a chunk)."""
        starts = self._starts.get(blob)
        if starts is None:
            b = self.validated.blobs[blob]
            starts = array("Q")
            pos = b.offset
            tag = 0 if self.sealer is None else TAG_SIZE
            for c in b.chunks:
                starts.append(pos)
                pos += sum(c.segments) + tag
            self._starts[blob] = starts
        return starts

    def _decode_chunk(
        self,
        b: Blob,
        blob: int,
        j: int,
        start: int,
        out: memoryview,
        stored: memoryview | None = None,
        pad: int = 0,
    ) -> None:
        """Chunk j into `out`: read from the source, or from `stored` (its stored bytes, then `pad` bytes of
        the blob's padding, which must be zero) where they were read already."""
        try:
            if stored is None or not pad:
                self._decode_chunk_bytes(b, blob, j, start, out, stored)
            else:
                self._decode_chunk_bytes(b, blob, j, start, out, stored[: len(stored) - pad])
                self._check_padding(blob, stored[len(stored) - pad :])
        except TModelError as exc:  # a short read, a bad digest or frame: about this chunk
            exc.add_context(blob=blob, chunk=j)
            raise

    def _decode_chunk_bytes(
        self, b: Blob, blob: int, j: int, start: int, out: memoryview, stored: memoryview | None
    ) -> None:
        raw = b.codec == RAW
        view = self._plain(b, blob, j, start, len(out), out if raw else None, stored)
        if raw:
            return
        segments: list[memoryview] = []
        pos = 0
        for n in b.chunks[j].segments:
            segments.append(view[pos : pos + n])
            pos += n
        checksummed = self.source_schema_version >= CHECKSUMMED_FROM
        decode_chunk(b.codec, b.width, segments, out, self.limits.max_window_size, checksummed, self._merge)

    def _plain(
        self,
        b: Blob,
        blob: int,
        j: int,
        start: int,
        raw_len: int,
        into: memoryview | None,
        stored: memoryview | None = None,
    ) -> memoryview:
        """Chunk j's segments back to back (into `into`, else this thread's scratch, or `stored` itself
        where the chunk was read already): its stored bytes read and checked against its digest, and in an
        encrypted file opened (SPEC.md §3.5)."""
        n = sum(b.chunks[j].segments)
        if self.sealer is None:
            view = (_scratch(n) if stored is None else stored) if into is None else into
            if stored is None:
                self.source.readinto(view, start)
            elif view is not stored:
                view[:] = stored
            self._check_digest(blob, j, view)
            return view
        view = _scratch(n) if into is None else into
        sealed = _scratch(n + TAG_SIZE, "sealed") if stored is None else stored
        if stored is None:
            self.source.readinto(sealed, start)
        self._check_digest(blob, j, sealed)
        self.sealer.open_chunk(b.nonce, j, raw_len, b.width, b.codec, sealed, view)
        return view

    @names_file
    def chunk_segments(self, blob: int, j: int) -> list[bytes]:
        """Chunk j of a blob as encoded, its segments checked (and opened) but not decoded, for storing
        again as they are; the blob's padding is checked with its last chunk."""
        b = self.validated.blobs[blob]
        raw_len = min(b.chunk_size, b.nbytes - j * b.chunk_size)
        try:
            view = self._plain(b, blob, j, self._chunk_starts(blob)[j], raw_len, None)
        except TModelError as exc:
            exc.add_context(blob=blob, chunk=j)
            raise
        out, pos = [], 0
        for n in b.chunks[j].segments:
            out.append(bytes(view[pos : pos + n]))
            pos += n
        if j == len(b.chunks) - 1:
            self._check_padding(blob)
        return out

    def mapped(self, blob: int) -> memoryview | None:
        """A raw blob as a writable copy-on-write view of the file mapping (see `mapped_many`)."""
        views = self.mapped_many([blob])
        return None if views is None else views[blob]

    @names_file
    def mapped_many(
        self, blobs: Sequence[int], tally: Callable[[int], None] | None = None
    ) -> dict[int, memoryview] | None:
        """Raw blobs as writable copy-on-write views of the file mapping, zero-copy, after every chunk
        digest (checked on the worker threads) and the padding were checked; None where the source cannot
        be mapped (the caller decodes). `tally(n)` hears of each n checked bytes."""
        for blob in blobs:
            if self.validated.blobs[blob].codec != RAW:
                raise InvalidArgument(f"blob {blob} is not stored raw")
        if self.sealer is not None:  # sealed bytes are not the tensor's: they are decrypted, not mapped
            return None
        with self._lock:
            source = self.source
            if self._map is None:
                self._map = source.map()
                if self._map is None:
                    return None
            whole = self._map
        source.check_size()
        views: dict[int, memoryview] = {}
        checks: list[tuple[int, int, memoryview]] = []
        for blob in blobs:
            b = self.validated.blobs[blob]
            views[blob] = view = whole[b.offset : b.offset + b.nbytes]
            checks.extend(
                (blob, j, view[j * b.chunk_size : (j + 1) * b.chunk_size]) for j in range(len(b.chunks))
            )
        self._run_batched(checks, lambda c: self._check_digest(*c), lambda c: len(c[2]), tally)
        for blob in blobs:
            self._check_padding(blob)
        return views

    def _run_batched(
        self,
        jobs: Sequence[_J],
        work: Callable[[_J], None],
        size: Callable[[_J], int],
        tally: Callable[[int], None] | None = None,
    ) -> None:
        """Run `work` over jobs on the worker threads, in batches of at least _BATCH bytes so that small
        jobs do not pay a thread hand-off each; `tally` hears of each batch's bytes, on this thread."""
        batches: list[list[_J]] = []
        current: list[_J] = []
        total = 0
        for job in jobs:
            current.append(job)
            total += size(job)
            if total >= _BATCH:
                batches.append(current)
                current, total = [], 0
        if current:
            batches.append(current)
        if len(batches) == 1:
            _each(work, batches[0])
            if tally is not None:
                tally(sum(map(size, batches[0])))
        elif batches:
            done = self._executor().map(lambda batch: _each(work, batch), batches)
            for batch, _ in zip(batches, done, strict=True):
                if tally is not None:
                    tally(sum(map(size, batch)))

    def _check_digest(self, blob: int, j: int, stored: memoryview) -> None:
        """A chunk's stored bytes against its digest (SPEC.md §7), before anything reads them."""
        digest = digests.digest_function(self.validated.checksum)(stored)
        if digest != self.validated.blobs[blob].chunks[j].digest:
            raise ChecksumMismatch(f"blob {blob} chunk {j}: checksum mismatch", blob=blob, chunk=j)

    @property
    def fd(self) -> int:
        """The descriptor the file was opened with (for copying stored bytes into another file)."""
        fd = self.source.fileno()
        if fd is None:
            raise InvalidArgument(f"{self.path} is not a file opened from a path")
        return fd

    def _check_padding(self, blob: int, pad: memoryview | bytes | None = None) -> None:
        """The zero bytes after a blob up to the next alignment (read here unless given)."""
        if pad is None:
            b = self.validated.blobs[blob]
            end = b.offset + b.length
            pad = self.source.read(align(end) - end, end)
        if bytes(pad).count(0) != len(pad):
            raise BadLayout(f"padding after blob {blob} is not zero", blob=blob)

    @names_file
    def verify(self, progress: Progress | None = None) -> None:
        """Check every checksum, decode every chunk, check padding and the values of bool tensors (of
        every shard, for an index)."""
        if self.shards is not None:
            self.shards.verify(progress)
            return
        total = sum(b.nbytes for b in self.validated.blobs)
        done = 0
        regions = bool_regions(self.validated, range(len(self.validated.tensors)))
        for i, b in enumerate(self.validated.blobs):
            for j in range(0, len(b.chunks), 16):
                hi = min(len(b.chunks), j + 16)
                w_lo = j * b.chunk_size
                scratch = bytearray(min(b.nbytes, hi * b.chunk_size) - w_lo)
                self.decode(i, memoryview(scratch), j, hi)
                for r_lo, r_hi in regions.get(i, ()):
                    lo, up = max(r_lo, w_lo), min(r_hi, w_lo + len(scratch))
                    if lo < up:
                        check_bool_bytes(scratch[lo - w_lo : up - w_lo], f"blob {i}", blob=i)
                done += len(scratch)
                if progress is not None:
                    progress(done, total)


class _Owned:
    """What a Reader must give back (its source and worker threads), apart from the Reader itself, so
    that a finalizer can release them without keeping the Reader alive. The mapping is not here: tensors
    mapped from the file keep it alive, and it goes when the last of them does."""

    def __init__(self, source: ByteSource) -> None:
        self.source: ByteSource | None = source
        self.pool: ThreadPoolExecutor | None = None

    def release(self, wait: bool) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=wait)
            self.pool = None
        if self.source is not None:
            self.source.close()
            self.source = None

    def collected(self, path: str) -> None:
        """The Reader was garbage-collected unclosed: release (without waiting: collection may happen on
        one of the pool's own threads), then warn as an unclosed Python file does."""
        unclosed = self.source is not None
        self.release(wait=False)
        if unclosed:
            message = f"unclosed tmodel file {path!r}: close it, or use it as a context manager"
            warnings.warn(message, ResourceWarning, stacklevel=1)  # no caller's line to point at


def _each(work: Callable[[_J], None], jobs: Iterable[_J]) -> None:
    for job in jobs:
        work(job)


_local = threading.local()
_SCRATCH_MAX = 16 << 20


def _scratch(n: int, slot: str = "buf") -> memoryview:
    """This thread's reusable buffer `slot` for a chunk's stored bytes (writable, so a merge may wrap it):
    no allocation, zero-filling or page faults per chunk. Only valid until the thread's next chunk."""
    if n > _SCRATCH_MAX:  # rare (chunk_size above the default): not kept, so no thread holds it
        return memoryview(bytearray(n))
    buf: bytearray | None = getattr(_local, slot, None)
    if buf is None or len(buf) < n:
        buf = bytearray(max(n, 1 << 16))
        setattr(_local, slot, buf)
    return memoryview(buf)[:n]


def bool_regions(m: Tables, indices: Iterable[int]) -> dict[int, list[tuple[int, int]]]:
    """Per blob, the merged byte ranges [offset, offset + extent) of bool tensors: SPEC.md §5.3 requires
    every byte there to be 0 or 1, which keeps the check linear in the blob's size whatever the strides
    and however many views there are."""
    spans: dict[int, list[tuple[int, int]]] = {}
    for i in indices:
        t = m.tensors[i]
        if t.dtype == "bool" and t.blob is not None:
            spans.setdefault(t.blob, []).append((t.offset, t.offset + tensor_extent(t)))
    return {blob: _union(ranges) for blob, ranges in spans.items()}


def _union(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching ranges merged, so many views of one blob check each byte once."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
