"""Where a reader's bytes come from (SPEC.md §9 step 1), behind one interface with exact reads.

A source is a path (opened once, a regular file only, never blocking on a FIFO), a real file object (the
descriptor of an `open(..., "rb")` file, duplicated: read with pread, mappable like a path), any other
readable, seekable binary file object (read under a lock, seek then read), or bytes in memory. Every source
takes its size once; the archive occupies a file object from its current position to its end. A read
returns exactly the bytes asked for or raises TRUNCATED (the source shrank or lied), and a source's own
failures are IO_ERROR: no source raises anything but a TModelError. A copy-on-write mapping is offered only
where the bytes live in a regular file, so that what was checked is what the mapping shows (SPEC.md §7);
bytes and other file objects are always read into memory the caller owns, then checked there. A string
that is a URL (`container.urls`) is an object read through fsspec's ranged requests (`container.remote`,
fsspec imported only then), with the same exact reads, never mapped.
"""

from __future__ import annotations

import io
import mmap
import os
import stat
import threading
from collections.abc import Generator, Iterable
from typing import Any, BinaryIO, Protocol

from ..errors import FileAccessError, InvalidArgument, NotRegularFile, TModelError, Truncated
from .files import open_regular, pread_exact, preadinto_exact
from .remote import RemoteSource, open_remote
from .urls import is_url, local_path

#: what `open_source` accepts: a path or a readable, seekable binary file object
Openable = str | os.PathLike[str] | BinaryIO
#: bytes-like objects a buffer source accepts (anything with the buffer protocol, C-contiguous)
BUFFER_TYPES = (bytes, bytearray, memoryview)


class ByteSource(Protocol):
    """The bytes of one archive: `size` of them, taken once, read exactly."""

    name: str
    size: int
    #: True where each read is a request (a remote object): chunks are then read through `read_ranges`
    ranged: bool

    def read(self, length: int, offset: int) -> bytes:
        """Exactly `length` bytes at `offset`, or TRUNCATED."""
        ...

    def read_ranges(self, spans: Iterable[tuple[int, int]]) -> Generator[memoryview, None, None]:
        """The bytes of each (offset, length) span in order, exactly, or TRUNCATED; a remote source merges
        near spans into one request and fetches ahead."""
        ...

    def readinto(self, out: memoryview, offset: int) -> None:
        """Fill `out` from `offset`, or TRUNCATED."""
        ...

    def map(self) -> memoryview | None:
        """A writable copy-on-write mapping of the `size` bytes, or None where there is none to offer."""
        ...

    def check_size(self) -> None:
        """TRUNCATED if the source no longer holds `size` bytes (before a mapping is trusted)."""
        ...

    def fileno(self) -> int | None:
        """A descriptor whose offsets are the archive's (for copying stored bytes file to file), or None."""
        ...

    def close(self) -> None: ...


class _OneReadPerRange:
    """`read_ranges` as one `read` per span, for sources whose reads are cheap."""

    ranged = False

    def read(self, length: int, offset: int) -> bytes:
        raise NotImplementedError

    def read_ranges(self, spans: Iterable[tuple[int, int]]) -> Generator[memoryview, None, None]:
        for offset, length in spans:
            yield memoryview(bytearray(self.read(length, offset)))


class FileSource(_OneReadPerRange):
    """A regular file read through one descriptor that this source owns, from byte `base` on."""

    def __init__(self, fd: int, size: int, name: str, base: int = 0) -> None:
        self._fd, self.size, self.name, self._base = fd, size, name, base

    def read(self, length: int, offset: int) -> bytes:
        return pread_exact(self._fd, length, self._base + offset)

    def readinto(self, out: memoryview, offset: int) -> None:
        preadinto_exact(self._fd, out, self._base + offset)

    def map(self) -> memoryview | None:
        try:
            mapping = mmap.mmap(self._fd, self._base + self.size, access=mmap.ACCESS_COPY)
        except (OSError, ValueError, AttributeError):
            return None
        return memoryview(mapping)[self._base :]

    def check_size(self) -> None:
        try:
            now = os.fstat(self._fd).st_size
        except OSError as exc:
            raise FileAccessError(f"cannot stat {self.name!r}: {exc.strerror}") from None
        if now < self._base + self.size:
            raise Truncated(f"the file shrank below {self._base + self.size} bytes while open")

    def fileno(self) -> int | None:
        return self._fd if self._base == 0 else None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class BufferSource(_OneReadPerRange):
    """Bytes in memory. Reads copy out of the buffer, and the copy is what gets checked, so a caller that
    changes a bytearray while it is read cannot slip unchecked bytes past a digest; never mapped."""

    def __init__(self, data: Any, name: str = "<bytes>") -> None:
        try:
            view = memoryview(data)
        except TypeError:
            raise InvalidArgument(f"expected bytes or another buffer, not {type(data).__name__}") from None
        if not view.c_contiguous:
            raise InvalidArgument("the buffer is not C-contiguous")
        self._view = view if view.format == "B" and view.ndim == 1 else view.cast("B")
        self.size = self._view.nbytes
        self.name = name

    def _span(self, length: int, offset: int) -> memoryview:
        if offset < 0 or length < 0 or offset + length > self.size:
            have = max(0, min(length, self.size - offset))
            raise Truncated(f"expected {length} bytes at offset {offset}, the buffer has {have}")
        return self._view[offset : offset + length]

    def read(self, length: int, offset: int) -> bytes:
        return bytes(self._span(length, offset))

    def readinto(self, out: memoryview, offset: int) -> None:
        out[:] = self._span(len(out), offset)

    def map(self) -> memoryview | None:
        return None

    def check_size(self) -> None:
        pass

    def fileno(self) -> int | None:
        return None

    def close(self) -> None:
        self._view = memoryview(b"")


class StreamSource(_OneReadPerRange):
    """Any readable, seekable binary file object, read from byte `base` on. Seek-then-read is one step
    under a lock, so decoding threads may share it; the object's own errors become IO_ERROR."""

    def __init__(self, f: Any, name: str, base: int, size: int) -> None:
        self._f, self.name, self._base, self.size = f, name, base, size
        self._lock = threading.Lock()

    def read(self, length: int, offset: int) -> bytes:
        out = bytearray(length)
        self.readinto(memoryview(out), offset)
        return bytes(out)

    def readinto(self, out: memoryview, offset: int) -> None:
        if offset < 0 or offset + len(out) > self.size:
            raise Truncated(f"expected {len(out)} bytes at offset {offset}, the file object has fewer")
        with self._lock:
            done = 0
            try:
                self._f.seek(self._base + offset)
                while done < len(out):
                    n = _read_some(self._f, out[done:])
                    if n == 0:
                        break
                    done += n
            except TModelError:
                raise
            except Exception as exc:
                raise FileAccessError(
                    f"reading the file object failed: {type(exc).__name__}: {exc}"
                ) from None
        if done != len(out):
            raise Truncated(f"expected {len(out)} bytes at offset {offset}, the file object ends early")

    def map(self) -> memoryview | None:
        return None

    def check_size(self) -> None:
        pass

    def fileno(self) -> int | None:
        return None

    def close(self) -> None:
        self._f = None  # the caller's object: never closed here


def _read_some(f: Any, out: memoryview) -> int:
    """One read into `out`: readinto where the object has it, else read; the count of bytes read."""
    readinto = getattr(f, "readinto", None)
    if readinto is not None:
        n = readinto(out)
    else:
        data = f.read(len(out))
        if data is None:
            n = None
        else:
            if not isinstance(data, BUFFER_TYPES) or len(data) > len(out):
                raise FileAccessError(f"the file object's read returned a {type(data).__name__}")
            out[: len(data)] = data
            n = len(data)
    if n is None:
        raise FileAccessError("the file object has no data now (non-blocking stream)")
    if not isinstance(n, int) or not 0 <= n <= len(out):
        raise FileAccessError(f"the file object's readinto returned {n!r}")
    return n


#: the concrete sources (what a Reader takes as already opened)
SOURCES = (FileSource, BufferSource, StreamSource, RemoteSource)


def buffer_source(data: Any) -> BufferSource:
    """A source over bytes in memory (bytes, bytearray, memoryview or any C-contiguous buffer)."""
    return BufferSource(data)


def open_source(target: Openable) -> ByteSource:
    """A path, a URL (a str) or a readable, seekable binary file object as a source. Bytes are refused
    here (a bytes path and bytes of a file would be ambiguous): `buffer_source` takes those."""
    if isinstance(target, str) and is_url(target):
        return open_remote(target)
    if isinstance(target, str):
        target = local_path(target)
    if isinstance(target, (str, os.PathLike)):
        fd, size = open_regular(target)
        return FileSource(fd, size, os.fspath(target))
    if isinstance(target, BUFFER_TYPES):
        raise InvalidArgument(
            "a path or a binary file object is needed here; for bytes in memory use tmodel.load_bytes "
            "(or wrap them in io.BytesIO)"
        )
    return _file_object_source(target)


def _name(f: Any) -> str:
    name = getattr(f, "name", None)
    return name if isinstance(name, str) else f"<{type(f).__name__}>"


def _file_object_source(f: Any) -> ByteSource:
    if isinstance(f, io.TextIOBase):
        raise InvalidArgument("the file object is in text mode: open the file with 'rb'")
    if not callable(getattr(f, "seek", None)) or not (
        callable(getattr(f, "readinto", None)) or callable(getattr(f, "read", None))
    ):
        raise InvalidArgument(f"expected a path or a binary file object, not {type(f).__name__}")
    name = _name(f)
    try:
        if getattr(f, "closed", False):
            raise InvalidArgument(f"the file object {name} is closed")
        if callable(getattr(f, "readable", None)) and not f.readable():
            raise InvalidArgument(f"the file object {name} is not open for reading")
        fd = _descriptor(f)
        if fd is not None:  # a regular file, as a path must be (a FIFO or a device: NOT_REGULAR_FILE)
            return _descriptor_source(f, fd, name)
        if callable(getattr(f, "seekable", None)) and not f.seekable():
            raise InvalidArgument(
                f"the file object {name} is not seekable: read it into bytes and use tmodel.load_bytes"
            )
        base = f.tell()
        end = f.seek(0, io.SEEK_END)
    except TModelError:
        raise
    except Exception as exc:
        raise FileAccessError(f"cannot use the file object {name}: {type(exc).__name__}: {exc}") from None
    if not isinstance(base, int) or not isinstance(end, int) or base < 0:
        raise FileAccessError(f"the file object {name} reports positions {base!r} and {end!r}")
    return StreamSource(f, name, base, max(0, end - base))


def _descriptor(f: Any) -> int | None:
    """The descriptor behind a file object from `open()` or `io.FileIO`; None for every other object, whose
    descriptor (a gzip file's, say) need not hold the bytes the object reads."""
    raw = f.raw if type(f) in (io.BufferedReader, io.BufferedRandom) else f
    if type(raw) is io.FileIO:
        return raw.fileno()
    return None


def _descriptor_source(f: Any, fd: int, name: str) -> FileSource:
    """A duplicate of the object's descriptor, read with pread from the object's position on."""
    try:
        own = os.dup(fd)
    except OSError as exc:
        raise FileAccessError(f"cannot use {name!r}: {exc.strerror}") from None
    try:
        st = os.fstat(own)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"{name!r} is not a regular file")
        base = f.tell()
    except OSError as exc:
        os.close(own)
        raise FileAccessError(f"cannot use {name!r}: {exc.strerror}") from None
    except BaseException:
        os.close(own)
        raise
    return FileSource(own, max(0, st.st_size - base), name, base)
