"""Progress of long calls (save, load, verify, convert, migrate): the one progress bar, and what `progress=`
accepts everywhere: a callable `(done, total)`, called on the calling thread; True, a bar on stderr drawn
only when stderr is a terminal (nothing at all is written otherwise); False or None, nothing."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from ..errors import InvalidArgument

Progress = Callable[[int, int], None]
#: what the public functions take as `progress=`
ProgressArg = bool | Progress | None


class ProgressBar:
    """A one-line text bar with the percentage and, once it can tell, the time left (counted from the
    start of each phase: done going back starts one); redrawn with '\\r' at most ten times a second;
    `close` erases it."""

    def __init__(self, stream: TextIO, label: str, width: int = 30) -> None:
        self._stream, self._label, self._width = stream, label, width
        self._last = 0.0
        self._start: float | None = None
        self._done = 0
        self._drawn = 0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self._start is None or done < self._done:  # a new phase (convert reads, then writes)
            self._start = now
        self._done = done
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        frac = min(1.0, done / total) if total else 1.0
        fill = int(frac * self._width)
        line = f"\r{self._label} [{'#' * fill}{'.' * (self._width - fill)}] {frac * 100:5.1f}%"
        elapsed = now - self._start
        if 0 < frac < 1 and elapsed >= 0.5:
            left = int(elapsed * (1 - frac) / frac)
            line += f"  {left // 60}:{left % 60:02d} left"
        self._stream.write(line.ljust(self._drawn))
        self._stream.flush()
        self._drawn = len(line)

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\r" + " " * self._drawn + "\r")
            self._stream.flush()
            self._drawn = 0


def is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):  # no isatty, or a closed stream
        return False


@contextlib.contextmanager
def progress_for(progress: ProgressArg, label: str) -> Iterator[Progress | None]:
    """The callback for a `progress=` argument, for the length of one call; a bar is erased at the end."""
    if progress is None or progress is False:
        yield None
    elif progress is True:
        stream = sys.stderr
        bar = ProgressBar(stream, label) if is_terminal(stream) else None
        try:
            yield bar
        finally:
            if bar is not None:
                bar.close()
    elif callable(progress):
        yield progress
    else:
        raise InvalidArgument(
            f"progress must be True, False, None or a callable (done, total), not {progress!r}"
        )


def shifted(progress: Progress | None, base: int, total: int) -> Progress | None:
    """A part's progress reported as the whole's: (base + done of the part, total of the whole)."""
    if progress is None:
        return None
    outer = progress

    def report(done: int, _part: int) -> None:
        outer(base + done, total)

    return report


class Tally:
    """Bytes done out of a total, reported to a progress callback as they add up."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)
