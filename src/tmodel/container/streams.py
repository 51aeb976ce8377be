"""Writing a file into a caller's binary file object (`tmodel.save(obj, f)`), where no rename can make the
write atomic. What is promised instead: the whole file is built in a spool first (memory up to SPOOL bytes,
then an unnamed temporary file), so any error while building it leaves the object untouched; only a
complete file is then copied into the object, from its current position. If the object's own write fails
during that copy, the error is raised (IO_ERROR for an OSError) and the object may hold a prefix of the
file, which no reader accepts (it has no trailer). The object is flushed, never closed.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

from ..errors import FileAccessError, InvalidArgument, TModelError

SPOOL = 64 << 20  # bytes kept in memory before the spool moves to a temporary file
_COPY = 1 << 20


def check_writable(target: Any) -> None:
    """Refuse what is not an open, writable binary file object, before any work is done."""
    if isinstance(target, io.TextIOBase):
        raise InvalidArgument("the file object is in text mode: open the file with 'wb'")
    if not callable(getattr(target, "write", None)):
        raise InvalidArgument(
            f"expected a path or a writable binary file object, not {type(target).__name__}"
        )
    if getattr(target, "closed", False):
        raise InvalidArgument("the file object is closed")
    writable = getattr(target, "writable", None)
    try:
        ok = writable() if callable(writable) else True
    except Exception as exc:
        raise FileAccessError(f"cannot use the file object: {type(exc).__name__}: {exc}") from None
    if not ok:
        raise InvalidArgument("the file object is not open for writing")


def write_into(target: BinaryIO, write: Callable[[BinaryIO], None]) -> None:
    """Build a file with `write` in a spool, then copy it into `target` (see the module's promise)."""
    check_writable(target)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL) as spool:
        write(spool)  # type: ignore[arg-type]
        spool.seek(0)
        try:
            while chunk := spool.read(_COPY):
                _write_all(target, memoryview(chunk))
            flush = getattr(target, "flush", None)
            if callable(flush):
                flush()
        except TModelError:
            raise
        except OSError as exc:
            raise FileAccessError(f"writing to the file object failed: {exc.strerror or exc}") from None
        except Exception as exc:  # the caller's object, failing its own way
            raise FileAccessError(f"writing to the file object failed: {type(exc).__name__}: {exc}") from None


def _write_all(target: BinaryIO, data: memoryview) -> None:
    """Write all of `data`. A raw (unbuffered) object may take fewer bytes per call than it is given, or
    none (None: non-blocking); any other object takes everything per call, as torch.save assumes."""
    if not isinstance(target, io.RawIOBase):
        target.write(data)
        return
    while data:
        n = target.write(data)
        if n is None:
            raise FileAccessError("the file object accepted no bytes (non-blocking stream)")
        if not isinstance(n, int) or not 0 < n <= len(data):
            raise FileAccessError(f"the file object's write returned {n!r} for {len(data)} bytes")
        data = data[n:]
