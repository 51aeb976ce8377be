"""Reading files the way a reader must (SPEC.md §9 step 1): opened once, regular files only, never blocking
on a FIFO, and every read exact or an error."""

from __future__ import annotations

import os
import stat

from ..errors import FileAccessError, NotRegularFile, Truncated, file_error


def open_regular(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Open once for reading without blocking on FIFOs; refuse anything but a regular file. (fd, size)"""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:  # a file that does not exist is a MissingFile, also a FileNotFoundError
        raise file_error(exc, f"cannot open {os.fspath(path)!r}: {exc.strerror}", path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"{os.fspath(path)!r} is not a regular file", path=path)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def pread_exact(fd: int, length: int, offset: int) -> bytes:
    """Read exactly `length` bytes at `offset`, or raise Truncated (the file shrank or lied)."""
    try:
        data = os.pread(fd, length, offset)
    except OSError as exc:
        raise FileAccessError(f"read failed: {exc.strerror}") from None
    if len(data) != length:
        raise Truncated(f"expected {length} bytes at offset {offset}, the file has {len(data)}")
    return data


def preadinto_exact(fd: int, out: memoryview, offset: int) -> None:
    """Fill `out` from `offset`, or raise Truncated."""
    done = 0
    total = len(out)
    while done < total:
        try:
            n = os.preadv(fd, [out[done:]], offset + done)
        except OSError as exc:
            raise FileAccessError(f"read failed: {exc.strerror}") from None
        if n <= 0:
            raise Truncated(f"expected {total} bytes at offset {offset}, the file ends early")
        done += n
