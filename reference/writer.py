"""Streaming, atomic writing of a container: blobs are chunked and encoded on worker threads as they
are written, so memory stays bounded by chunk size × threads; the target path only ever holds a complete
file (temporary file in the same directory, fsync, rename, fsync of the directory).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

from . import codecs, digests
from .atomic import replace_atomically
from .container import ALIGNMENT, align, pack_header, pack_manifest, pack_trailer
from .errors import InvalidArgument, LimitExceeded
from .limits import DEFAULT_LIMITS
from .threads import default_threads

Buffer = bytes | bytearray | memoryview
Progress = Callable[[int, int], None]
DEFAULT_CHUNK_SIZE = 4 << 20
DEFAULT_LEVEL = 1


@dataclass(frozen=True)
class BlobSource:
    """Decoded bytes to store as one blob, and how to encode them."""

    data: memoryview
    codec: str
    width: int


@dataclass(frozen=True)
class Options:
    """Writer settings that do not change what a reader sees, only how it was produced."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    level: int = DEFAULT_LEVEL
    threads: int = 0
    checksum: str = digests.DEFAULT

    def validated(self) -> Options:
        if not 1 <= self.chunk_size <= DEFAULT_LIMITS.max_chunk_size:
            raise InvalidArgument(f"chunk_size must be in 1..{DEFAULT_LIMITS.max_chunk_size}")
        if not -7 <= self.level <= 22:
            raise InvalidArgument("level must be in -7..22")
        if self.threads < 0:
            raise InvalidArgument("threads must be >= 0 (0: one per CPU)")
        digests.digest_function(self.checksum)
        return self


def _encode(job: tuple[str, int, memoryview, int, str]) -> tuple[list[Buffer], bytes]:
    codec, width, data, level, checksum = job
    segments = codecs.encode_chunk(codec, width, data, level)
    h = digests.Hasher(checksum)
    for seg in segments:
        h.update(seg)
    return segments, h.digest()


def chunk_size_for(width: int, chunk_size: int) -> int:
    """The chunk size actually used for a blob: a multiple of its width."""
    return max(width, chunk_size // width * width)


def write_atomic(
    path: str | os.PathLike[str],
    sources: Sequence[BlobSource],
    finish: Callable[[list[dict[str, Any]]], dict[str, Any]],
    options: Options,
    progress: Progress | None = None,
) -> None:
    """Write blobs then the manifest that `finish` builds from the blob records, atomically at `path`."""
    options = options.validated()
    replace_atomically(path, lambda f: _write(f, sources, finish, options, progress))


def _jobs(
    sources: Sequence[BlobSource], options: Options
) -> Iterator[tuple[int, tuple[str, int, memoryview, int, str]]]:
    for i, src in enumerate(sources):
        cs = chunk_size_for(src.width, options.chunk_size)
        for start in range(0, len(src.data), cs):
            yield i, (src.codec, src.width, src.data[start : start + cs], options.level, options.checksum)


def _write(
    f: BinaryIO,
    sources: Sequence[BlobSource],
    finish: Callable[[list[dict[str, Any]]], dict[str, Any]],
    options: Options,
    progress: Progress | None,
) -> None:
    header = pack_header()
    f.write(header)
    pos = len(header)
    total = sum(len(s.data) for s in sources)
    done = 0
    threads = options.threads or default_threads()
    records: list[dict[str, Any]] = []
    for src in sources:
        if len(src.data) == 0 or len(src.data) % src.width:
            raise InvalidArgument("a blob must be non-empty and a multiple of its width")
        records.append(
            {
                "offset": 0,
                "length": 0,
                "nbytes": len(src.data),
                "codec": src.codec,
                "width": src.width,
                "chunk_size": chunk_size_for(src.width, options.chunk_size),
                "chunks": [],
            }
        )
    jobs = _jobs(sources, options)
    pending: deque[tuple[int, int, Future[tuple[list[Buffer], bytes]]]] = deque()
    with ThreadPoolExecutor(max_workers=threads) as pool:

        def fill() -> None:
            while len(pending) < 2 * threads:
                item = next(jobs, None)
                if item is None:
                    return
                pending.append((item[0], len(item[1][2]), pool.submit(_encode, item[1])))

        fill()
        while pending:
            i, raw_len, future = pending.popleft()
            segments, digest = future.result()
            fill()
            record = records[i]
            if not record["chunks"]:
                pos = _pad(f, pos)
                record["offset"] = pos
            for seg in segments:
                f.write(seg)
                pos += len(seg)
                record["length"] += len(seg)
            record["chunks"].append({"digest": digest, "segments": [len(s) for s in segments]})
            done += raw_len
            if progress is not None:
                progress(done, total)
    pos = _pad(f, pos)
    manifest = pack_manifest(finish(records))
    if len(manifest) > DEFAULT_LIMITS.max_manifest_bytes:
        raise LimitExceeded(
            f"manifest of {len(manifest)} bytes exceeds the limit {DEFAULT_LIMITS.max_manifest_bytes}"
        )
    f.write(manifest)
    f.write(pack_trailer(pos, manifest, options.checksum, header))


def _pad(f: BinaryIO, pos: int) -> int:
    end = align(pos)
    if end > pos:
        f.write(bytes(end - pos))
    assert end % ALIGNMENT == 0
    return end
