"""Early writeback for large writes: the bytes already written are handed to the disk in pieces while
the writer goes on, so the closing fsync finds little left to flush and the writer never runs more than
a few pieces ahead of the disk (dirty pages stay bounded). Uses Linux `sync_file_range`; elsewhere, or on
filesystems that refuse it, it does nothing and the closing fsync does all the work. Durability never
depends on it: only that fsync counts.
"""

from __future__ import annotations

import ctypes
import sys
from collections import deque
from collections.abc import Callable
from typing import BinaryIO

PIECE = 64 << 20
AHEAD = 2  # pieces in flight before the writer waits for the oldest
_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4


def _load() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load()


class Writeback:
    """Tracks how far a file has been written and starts writeback of every full piece behind that."""

    def __init__(self, f: BinaryIO, piece: int | None = None, enabled: bool = True) -> None:
        self._f = f
        self._piece = piece or PIECE
        self._started = 0
        self._in_flight: deque[int] = deque()
        self._enabled = enabled and _sync_file_range is not None  # off for spools and buffers

    def written(self, end: int) -> None:
        """Everything before file offset `end` has been written (possibly still in `f`'s buffer)."""
        if not self._enabled or end - self._started < self._piece:
            return
        self._f.flush()
        fd = self._f.fileno()
        while end - self._started >= self._piece:
            if not self._call(fd, self._started, self._piece, _WRITE):
                return
            self._in_flight.append(self._started)
            self._started += self._piece
            if len(self._in_flight) > AHEAD:
                self._call(fd, self._in_flight.popleft(), self._piece, _WAIT_BEFORE | _WRITE | _WAIT_AFTER)

    def _call(self, fd: int, offset: int, length: int, flags: int) -> bool:
        assert _sync_file_range is not None
        if _sync_file_range(fd, offset, length, flags) != 0:
            self._enabled = False  # e.g. a filesystem without it: leave everything to fsync
        return self._enabled
