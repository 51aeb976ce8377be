"""Streaming, atomic writing of a container: blobs are chunked and encoded on worker threads as they
are written, so memory stays bounded by chunk size × threads; the target path only ever holds a complete
file (temporary file in the same directory, fsync, rename, fsync of the directory).

Rule: a written file is within a reader's default limits. A file whose data compresses more than the
expansion limit allows (large tensors of zeros) is written again, storing raw, in file order, just enough of
its frames that are more than `max_expansion` times shorter than their data (SPEC.md §11).
"""

from __future__ import annotations

import io
import os
import secrets
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from ..codecs.planes import Split, split_planes
from ..codecs.table import encode_chunk
from ..container import digests, writeback
from ..container.atomic import replace_atomically
from ..container.framing import (
    ALIGNMENT,
    ENCRYPTED,
    NONCE_SIZE,
    SIGNED,
    TRAILER_SIZE,
    align,
    pack_header,
    pack_trailer,
)
from ..container.streams import write_into
from ..errors import InvalidArgument, LimitExceeded, TModelError, Truncated, UnsupportedType
from ..limits import DEFAULT_LIMITS
from ..manifest.encoding import pack_manifest
from ..manifest.validated import Validated, read_validated
from ..manifest.wire import BlobWire, ChunkWire, ManifestWire
from .collector import collector_paused
from .progress import Progress
from .threads import default_threads

if TYPE_CHECKING:
    from .encryption import Sealer

Buffer = bytes | bytearray | memoryview
DEFAULT_CHUNK_SIZE = 4 << 20
DEFAULT_LEVEL = 1
T = TypeVar("T")


@dataclass(frozen=True)
class BlobSource:
    """Decoded bytes to store as one blob, and how to encode them."""

    data: memoryview
    codec: str
    width: int


@dataclass(frozen=True)
class StoredBlob:
    """A blob copied byte for byte from another file (a migration's untouched tensors): its stored bytes
    are copied file to file (copy_file_range where the OS has it), its chunk records reused; nothing is
    decoded, and the digests travel with the bytes, so the copy is exactly as verifiable as the original."""

    codec: str
    width: int
    nbytes: int
    chunk_size: int
    chunks: Sequence[ChunkWire]
    fd: int  # the source file, open for reading
    offset: int
    length: int
    #: the blob's nonce in an encrypted source, which the copy keeps (its chunks are sealed with it)
    nonce: bytes = b""


@dataclass(frozen=True)
class ResealedBlob:
    """A blob whose encoded chunks come from another file (as they were encoded: nothing is recompressed
    unless `read` does it) and are stored again, sealed when this file is encrypted (`tmodel encrypt`,
    `tmodel decrypt`, `tmodel migrate`). `read(j, max_ratio)` returns chunk j's segments, checked, on a
    worker thread; one it encodes again keeps its frames within `max_ratio` (0: no bound)."""

    codec: str
    width: int
    nbytes: int
    chunk_size: int
    read: Callable[[int, int], list[Buffer]]


Source = BlobSource | StoredBlob | ResealedBlob


@dataclass(frozen=True)
class Options:
    """Writer settings that do not change what a reader sees, only how it was produced."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    level: int = DEFAULT_LEVEL
    threads: int = 0
    checksum: str = digests.DEFAULT
    split: Split = split_planes
    #: run first on each encoding thread (the torch split's: `tensors.planes.one_intra_op_thread`)
    worker_init: Callable[[], None] | None = None
    #: run on the written manifest, as the reader validated it, before the file is complete (the API's
    #: rebuild of modules on the meta device); what it raises fails the write
    check: Callable[[Validated], None] | None = None
    #: bytes by which raw-stored frames must grow the file (0 on a first write; see the module's rule)
    raw_needed: int = 0
    #: the signature block for (manifest bytes, size up to the manifest's end): the file is signed
    sign: Callable[[bytes, int], bytes] | None = None
    #: the keys that seal every chunk and the manifest: the file is encrypted (SPEC.md §3.5)
    seal: Sealer | None = None

    def validated(self) -> Options:
        for name in ("chunk_size", "level", "threads"):
            if type(getattr(self, name)) is not int:
                raise InvalidArgument(f"{name} must be an int, not {type(getattr(self, name)).__name__}")
        if not 1 <= self.chunk_size <= DEFAULT_LIMITS.max_chunk_size:
            raise InvalidArgument(f"chunk_size must be in 1..{DEFAULT_LIMITS.max_chunk_size}")
        if not -7 <= self.level <= 22:
            raise InvalidArgument("level must be in -7..22")
        if self.threads < 0:
            raise InvalidArgument("threads must be >= 0 (0: one per CPU)")
        digests.digest_function(self.checksum)
        return self


@dataclass(frozen=True)
class EncodeJob:
    """One chunk of a blob, encoded (or, from a ResealedBlob, read as encoded), sealed if the file is
    encrypted, and hashed, on a worker thread."""

    blob: int
    index: int
    data: memoryview | ResealedBlob
    raw_len: int
    codec: str
    width: int
    nonce: bytes
    options: Options


@dataclass(frozen=True)
class CopyJob:
    """A stored blob, copied on the writing thread in file order."""

    blob: int
    source: StoredBlob


@dataclass(frozen=True)
class Encoded:
    """An encoded chunk: the bytes stored (its segments, or them sealed), its segments' lengths, digest."""

    stored: list[Buffer]
    segments: list[int]
    digest: bytes


def _encode(job: EncodeJob, ratio: int = 0) -> Encoded:
    if isinstance(job.data, ResealedBlob):
        stored = job.data.read(job.index, ratio)
    else:
        o = job.options
        stored = encode_chunk(job.codec, job.width, job.data, o.level, o.split, ratio)
    lengths = [len(seg) for seg in stored]
    seal = job.options.seal
    if seal is not None:
        plain = stored[0] if len(stored) == 1 else b"".join(stored)
        stored = [seal.seal_chunk(job.nonce, job.index, job.raw_len, job.width, job.codec, plain)]
    h = digests.Hasher(job.options.checksum)
    for part in stored:
        h.update(part)
    return Encoded(stored, lengths, h.digest())


def chunk_size_for(width: int, chunk_size: int) -> int:
    """The chunk size actually used for a blob: a multiple of its width."""
    return max(width, chunk_size // width * width)


def write_atomic(
    path: str | os.PathLike[str],
    sources: Sequence[Source],
    finish: Callable[[list[BlobWire]], ManifestWire],
    options: Options,
    progress: Progress | None = None,
) -> None:
    """Write blobs then the manifest that `finish` builds from the blob records, atomically at `path`."""
    _bounded(
        lambda o: replace_atomically(path, lambda f: _write(f, sources, finish, o, progress)),
        options.validated(),
    )


def write_stream(
    target: BinaryIO,
    sources: Sequence[Source],
    finish: Callable[[list[BlobWire]], ManifestWire],
    options: Options,
    progress: Progress | None = None,
) -> None:
    """Write the same file into a binary file object, from its position: built in a spool, then copied
    into the object whole (`container.streams`: a complete file or an error, never atomic)."""
    options = _no_stored(sources, options.validated())
    _bounded(
        lambda o: write_into(
            target, lambda f: _write(f, sources, finish, o, progress, early_writeback=False)
        ),
        options,
    )


def write_bytes(
    sources: Sequence[Source],
    finish: Callable[[list[BlobWire]], ManifestWire],
    options: Options,
    progress: Progress | None = None,
) -> bytes:
    """The same file, as bytes."""
    options = _no_stored(sources, options.validated())

    def run(o: Options) -> bytes:
        buf = io.BytesIO()
        _write(buf, sources, finish, o, progress, early_writeback=False)
        return buf.getvalue()

    return _bounded(run, options)


class _Expands(Exception):
    """The file written would decode to more than a reader's default limits allow for its size."""

    def __init__(self, needed: int) -> None:
        self.needed = needed


def _bounded(run: Callable[[Options], T], options: Options) -> T:
    """`run`, once more with frames bounded by the expansion limit if the first file would exceed it."""
    try:
        return run(options)
    except _Expands as short:
        return run(replace(options, raw_needed=short.needed))


def _no_stored(sources: Sequence[Source], options: Options) -> Options:
    if any(isinstance(src, StoredBlob) for src in sources):
        raise InvalidArgument("stored blobs are copied between files only, not into streams")
    return options


def _jobs(
    sources: Sequence[Source], records: Sequence[BlobWire], options: Options
) -> Iterator[EncodeJob | CopyJob]:
    """A job for every chunk (or stored blob), in file order."""
    for i, src in enumerate(sources):
        nonce = records[i].get("nonce", b"")
        if isinstance(src, StoredBlob):
            yield CopyJob(i, src)
        elif isinstance(src, ResealedBlob):
            for j in range(-(-src.nbytes // src.chunk_size)):
                raw_len = min(src.chunk_size, src.nbytes - j * src.chunk_size)
                yield EncodeJob(i, j, src, raw_len, src.codec, src.width, nonce, options)
        else:
            cs = chunk_size_for(src.width, options.chunk_size)
            for j, start in enumerate(range(0, len(src.data), cs)):
                data = src.data[start : start + cs]
                yield EncodeJob(i, j, data, len(data), src.codec, src.width, nonce, options)


#: chunks of at most this many bytes are encoded on the writing thread, in order, not handed to the pool
_INLINE_BYTES = 16 << 10


def _write(
    f: BinaryIO,
    sources: Sequence[Source],
    finish: Callable[[list[BlobWire]], ManifestWire],
    options: Options,
    progress: Progress | None,
    early_writeback: bool = True,
) -> None:
    flags = (SIGNED if options.sign is not None else 0) | (ENCRYPTED if options.seal is not None else 0)
    header = pack_header(flags)
    f.write(header)
    pos = len(header)
    total = sum(len(s.data) if isinstance(s, BlobSource) else s.nbytes for s in sources)
    done = 0
    need = options.raw_needed
    threads = options.threads or default_threads()
    records = [_record(src, options) for src in sources]
    wb = writeback.Writeback(f, enabled=early_writeback)
    jobs = _jobs(sources, records, options)
    pending: deque[tuple[EncodeJob | CopyJob, Future[Encoded] | Encoded | None]] = deque()
    with ThreadPoolExecutor(
        max_workers=threads, thread_name_prefix="tmodel-encode", initializer=options.worker_init
    ) as pool:

        def fill() -> None:
            while len(pending) < 2 * threads:
                job = next(jobs, None)
                if job is None:
                    return
                if not isinstance(job, EncodeJob):
                    pending.append((job, None))
                elif job.raw_len <= _INLINE_BYTES:  # a thread hand-off would cost more than the work
                    pending.append((job, _encode(job)))
                else:
                    pending.append((job, pool.submit(_encode, job)))

        fill()
        while pending:
            job, future = pending.popleft()
            encoded = future.result() if isinstance(future, Future) else future
            fill()
            record = records[job.blob]
            if isinstance(job, CopyJob):
                src = job.source
                pos = _pad(f, pos)
                record["offset"], record["length"] = pos, src.length
                record["chunks"] = [
                    {"digest": c["digest"], "segments": list(c["segments"])} for c in src.chunks
                ]
                pos = _copy(src, f, pos, wb)
                done += src.nbytes
            else:
                assert encoded is not None
                if need > 0:  # a chunk stored as it was comes back the same
                    bounded = _encode(job, DEFAULT_LIMITS.max_expansion)
                    grown = sum(map(len, bounded.stored)) - sum(map(len, encoded.stored))
                    if grown > 0:
                        encoded, need = bounded, need - grown
                if not record["chunks"]:
                    pos = _pad(f, pos)
                    record["offset"] = pos
                for part in encoded.stored:
                    f.write(part)
                    pos += len(part)
                    record["length"] += len(part)
                record["chunks"].append({"digest": encoded.digest, "segments": encoded.segments})
                wb.written(pos)
                done += job.raw_len
            if progress is not None:
                progress(done, total)
    pos = _pad(f, pos)
    manifest = pack_manifest(finish(records))
    region = manifest if options.seal is None else options.seal.envelope(manifest)
    if len(region) > DEFAULT_LIMITS.max_manifest_bytes:
        raise LimitExceeded(
            f"manifest of {len(region)} bytes exceeds the limit {DEFAULT_LIMITS.max_manifest_bytes}"
        )
    size = pos + len(region) + TRAILER_SIZE
    if not options.raw_needed and total > DEFAULT_LIMITS.max_decoded_bytes(size):  # `total`: decoded bytes
        least = -(-(total - DEFAULT_LIMITS.decoded_slack) // DEFAULT_LIMITS.max_expansion)
        raise _Expands(least - size + ALIGNMENT * len(sources) + 4096)  # room for padding and manifest
    checked = check_written(manifest, pos, options.seal is not None)
    if options.check is not None:
        options.check(checked)
    f.write(region)
    block = b"" if options.sign is None else options.sign(region, pos + len(region))
    f.write(block)
    f.write(pack_trailer(pos, region, options.checksum, header, block))


def check_written(raw: bytes, offset: int, encrypted: bool = False) -> Validated:
    """The manifest about to be written, through the reader's own validation (`read_validated`, default
    limits) before anything is replaced: content the reader would refuse is UNSUPPORTED_TYPE, naming the
    reader's code (SPEC.md §11)."""
    try:
        end = offset + len(raw) + TRAILER_SIZE
        with collector_paused():
            return read_validated(raw, DEFAULT_LIMITS, offset, end, encrypted)
    except TModelError as exc:
        hint = " (a reader's default limit, SPEC.md §8)" if isinstance(exc, LimitExceeded) else ""
        raise UnsupportedType(
            f"cannot be saved, the file would not be readable: {exc} [{exc.code}]{hint}", tensor=exc.tensor
        ) from None


def _copy(src: StoredBlob, f: BinaryIO, pos: int, wb: writeback.Writeback) -> int:
    """Copy a stored blob's bytes to `pos` of `f`, kernel to kernel where possible; returns the new end."""
    f.flush()
    out, copied = f.fileno(), 0
    while copied < src.length:
        n = min(src.length - copied, writeback.PIECE)
        try:
            step = os.copy_file_range(src.fd, out, n, src.offset + copied, pos + copied)
        except (AttributeError, OSError):  # no copy_file_range here, or not between these files
            step = os.pwrite(out, os.pread(src.fd, min(n, 8 << 20), src.offset + copied), pos + copied)
        if step <= 0:
            raise Truncated(f"the source file ends inside a blob being copied (offset {src.offset + copied})")
        copied += step
        wb.written(pos + copied)
    f.seek(pos + src.length)
    return pos + src.length


def _record(src: Source, options: Options) -> BlobWire:
    """The manifest entry of a blob, to be completed as its chunks are written; in an encrypted file, with
    its nonce (a copied blob keeps the one its chunks were sealed with, any other gets a random one)."""
    if isinstance(src, BlobSource):
        if len(src.data) == 0 or len(src.data) % src.width:
            raise InvalidArgument("a blob must be non-empty and a multiple of its width")
        nbytes, codec, width = len(src.data), src.codec, src.width
        chunk_size = chunk_size_for(src.width, options.chunk_size)
    else:
        nbytes, codec, width, chunk_size = src.nbytes, src.codec, src.width, src.chunk_size
    record: BlobWire = {
        "offset": 0,
        "length": 0,
        "nbytes": nbytes,
        "codec": codec,
        "width": width,
        "chunk_size": chunk_size,
        "chunks": [],
    }
    if isinstance(src, StoredBlob) and bool(src.nonce) != (options.seal is not None):
        raise InvalidArgument("a blob is copied byte for byte only between files both encrypted or not")
    if options.seal is not None:
        record["nonce"] = src.nonce if isinstance(src, StoredBlob) else secrets.token_bytes(NONCE_SIZE)
    return record


def _pad(f: BinaryIO, pos: int) -> int:
    end = align(pos)
    if end > pos:
        f.write(bytes(end - pos))
    assert end % ALIGNMENT == 0
    return end
