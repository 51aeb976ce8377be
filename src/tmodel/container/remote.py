"""A ByteSource over an fsspec URL (s3://, gs://, https://, memory://, ...): reads are ranged requests.

Opening asks for the object's size (one metadata request), then reads its first HEAD and last TAIL bytes
at once (two concurrent ranged requests, one for an object that small): they hold the header, the trailer
and, for most files, the signatures and manifest, and reads inside them are served from memory; a manifest
longer than the tail costs one more request, for the part before the tail. Chunks come through
`read_ranges`: spans in file order merged into requests (a span joins the request before it when it starts
at most GAP bytes after its end and the request stays within MAX_REQUEST bytes), AHEAD of them in flight
on this source's threads while the caller decodes what arrived. Every answer is checked for its exact
length (short: TRUNCATED; longer: IO_ERROR, and the whole object for a range means the server ignored
Range, also IO_ERROR), every request has a timeout, and no exception of fsspec or its backends escapes but
as IO_ERROR. Never mapped: bytes are copied into memory this process owns, then checked as any source's.
"""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import FileAccessError, InvalidArgument, NotRegularFile, TModelError, Truncated
from .urls import filesystem, wrapped

HEAD = 4 << 10  # bytes read speculatively from the start (the header is 64)
TAIL = 256 << 10  # bytes read speculatively from the end (trailer, signatures, most manifests)
GAP = 4 << 10  # spans at most this far apart share a request (the bytes between are read and dropped)
MAX_REQUEST = 16 << 20  # the most bytes a merged request asks for (a longer span is one request alone)
AHEAD = 4  # merged requests in flight or waiting while the caller works through one
TIMEOUT = 60.0  # seconds a request may take

_T = TypeVar("_T")


@dataclass
class _Group:
    """One request: bytes [start, end) holding `spans` (offset, length), in order."""

    start: int
    end: int
    spans: list[tuple[int, int]] = field(default_factory=list)


def merged(spans: Iterable[tuple[int, int]], gap: int = GAP, cap: int = MAX_REQUEST) -> Iterator[_Group]:
    """Spans, in the order given, grouped into requests: a span joins the current group when it starts
    at or after the group's end and at most `gap` bytes after it, and the group stays within `cap` bytes;
    lazily, so a long list of chunks is never held whole."""
    group: _Group | None = None
    for offset, length in spans:
        end = offset + length
        if group is not None and group.end <= offset <= group.end + gap and end - group.start <= cap:
            group.end = end
            group.spans.append((offset, length))
            continue
        if group is not None:
            yield group
        group = _Group(offset, end, [(offset, length)])
    if group is not None:
        yield group


class RemoteSource:
    """The object at a URL, `size` bytes, read through ranged requests (see the module's docstring)."""

    #: each read is a request: the reader reads chunks through `read_ranges`, merged, not one by one
    ranged = True

    def __init__(self, fs: Any, path: str, name: str, timeout: float = TIMEOUT) -> None:
        self._fs, self._path, self.name, self._timeout = fs, path, name, timeout
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(AHEAD + 2, "tmodel-fetch")
        self._kept: list[tuple[int, bytes]] = []  # (offset, bytes) of the speculative reads
        try:
            self.size = self._size()
            self._keep_ends()
        except BaseException:
            self.close()
            raise

    # -- requests ---------------------------------------------------------------------------------------
    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """The filesystem's method `name`, on this thread, within the timeout for an async filesystem."""
        fs = self._fs
        try:
            if getattr(fs, "async_impl", False) and getattr(fs, "loop", None) is not None:
                from fsspec.asyn import sync

                return sync(fs.loop, getattr(fs, "_" + name), *args, timeout=self._timeout, **kwargs)
            return getattr(fs, name)(*args, **kwargs)
        except (TimeoutError, concurrent.futures.TimeoutError):  # fsspec's and aiohttp's timeouts
            raise self._timed_out(name) from None
        except Exception as exc:
            raise wrapped(exc, self.name, "reading") from None

    def _timed_out(self, what: str) -> FileAccessError:
        return FileAccessError(f"no answer from {self.name!r} within {self._timeout:g} s ({what})")

    def _submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        if self._pool is None:
            raise FileAccessError(f"{self.name!r} is closed")
        return self._pool.submit(fn, *args)

    def _wait(self, pending: Future[_T], what: str) -> _T:
        """A request's result within the timeout, or IO_ERROR (a server that never answers)."""
        try:
            return pending.result(timeout=self._timeout)
        except concurrent.futures.TimeoutError:
            pending.cancel()
            raise self._timed_out(what) from None
        except concurrent.futures.CancelledError:
            raise FileAccessError(f"{self.name!r} was closed while reading ({what})") from None

    def _size(self) -> int:
        info = self._wait(self._submit(self._call, "info", self._path), "its size")
        if not isinstance(info, dict):
            raise FileAccessError(f"{self.name!r}: the filesystem describes it as {type(info).__name__}")
        if info.get("type") == "directory":
            raise NotRegularFile(f"{self.name!r} is a directory, not a file")
        size = info.get("size")
        if type(size) is not int or size < 0:
            raise FileAccessError(f"{self.name!r}: the server does not say its size ({size!r})")
        return size

    def _fetch(self, start: int, end: int) -> bytes:
        """Bytes [start, end) in one request (run on a fetch thread), exactly, or a coded error."""
        data = self._call("cat_file", self._path, start=start, end=end)
        if not isinstance(data, (bytes, bytearray)):
            raise FileAccessError(f"{self.name!r}: the filesystem returned a {type(data).__name__}")
        want = end - start
        if len(data) == want:
            return bytes(data)
        if len(data) == self.size and want < self.size:
            raise FileAccessError(
                f"{self.name!r}: the server ignored the range request for bytes {start}-{end - 1} and sent "
                f"the whole object ({self.size} bytes): serve it from a server that honours Range "
                "requests, or download it and open it locally"
            )
        if len(data) < want:
            raise Truncated(f"expected {want} bytes at offset {start}, the server sent {len(data)}")
        raise FileAccessError(f"{self.name!r}: asked for {want} bytes at offset {start}, got {len(data)}")

    def _get(self, start: int, end: int) -> bytes:
        return self._wait(self._submit(self._fetch, start, end), f"bytes {start}-{end - 1}")

    def _keep_ends(self) -> None:
        """The first HEAD and last TAIL bytes, in one round trip, kept for the reads of opening."""
        size = self.size
        tail = max(0, size - TAIL)
        if tail <= HEAD:  # small: one request for all of it
            self._kept = [(0, self._get(0, size))] if size else []
            return
        head = self._submit(self._fetch, 0, HEAD)
        end = self._submit(self._fetch, tail, size)
        self._kept = [(0, self._wait(head, "its header")), (tail, self._wait(end, "its end"))]

    def _kept_bytes(self, start: int, end: int) -> bytes | None:
        for at, data in self._kept:
            if at <= start and end <= at + len(data):
                return data[start - at : end - at]
        return None

    # -- ByteSource -------------------------------------------------------------------------------------
    def _check(self, length: int, offset: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise Truncated(f"expected {length} bytes at offset {offset}, {self.name!r} has {self.size}")

    def read(self, length: int, offset: int) -> bytes:
        self._check(length, offset)
        end = offset + length
        if length == 0:
            return b""
        kept = self._kept_bytes(offset, end)
        if kept is not None:
            return kept
        for at, data in self._kept:  # a range that runs into the tail (a long manifest): the rest only
            if offset < at < end <= at + len(data):
                return self._get(offset, at) + data[: end - at]
        return self._get(offset, end)

    def readinto(self, out: memoryview, offset: int) -> None:
        out[:] = self.read(len(out), offset)

    def read_ranges(self, spans: Iterable[tuple[int, int]]) -> Generator[memoryview, None, None]:
        """The bytes of each (offset, length) span, in order, as writable views of memory this source
        allocated: merged into requests, AHEAD in flight while the caller works (module docstring)."""
        window: collections.deque[tuple[_Group, Future[bytes] | bytes]] = collections.deque()
        try:
            for group in merged(spans):
                self._check(group.end - group.start, group.start)
                kept = self._kept_bytes(group.start, group.end)
                window.append((group, kept if kept is not None else self._submit(self._fetch, *_ends(group))))
                if len(window) >= AHEAD:
                    yield from self._served(*window.popleft())
            while window:
                yield from self._served(*window.popleft())
        finally:
            for _, pending in window:
                if isinstance(pending, Future):
                    pending.cancel()

    def _served(self, group: _Group, pending: Future[bytes] | bytes) -> Iterator[memoryview]:
        data = pending if isinstance(pending, bytes) else self._wait(pending, _what(group))
        view = memoryview(bytearray(data))
        for offset, length in group.spans:
            yield view[offset - group.start : offset - group.start + length]

    def map(self) -> memoryview | None:
        return None

    def check_size(self) -> None:
        pass

    def fileno(self) -> int | None:
        return None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._kept = []


def _ends(group: _Group) -> tuple[int, int]:
    return group.start, group.end


def _what(group: _Group) -> str:
    return f"bytes {group.start}-{group.end - 1}"


def open_remote(url: str, *, timeout: float = TIMEOUT, options: dict[str, Any] | None = None) -> RemoteSource:
    """The object at `url` as a source; `options` are the filesystem's (fsspec storage options:
    credentials, endpoints), `timeout` the seconds one request may take."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InvalidArgument(f"timeout must be a number of seconds > 0, not {timeout!r}")
    fs, path = filesystem(url, options)
    try:
        return RemoteSource(fs, path, url, float(timeout))
    except TModelError as exc:
        exc.add_context(path=url)
        raise
