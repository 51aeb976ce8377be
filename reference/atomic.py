"""Atomic replacement of a file: the target path only ever holds the old complete file or the new one."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from typing import BinaryIO

from .errors import FileAccessError


def replace_atomically(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Write through `write` into a temporary file in the target's directory, fsync it, rename it over the
    target, fsync the directory. On any failure the temporary file is removed and the target is untouched."""
    target = os.path.abspath(os.fspath(path))
    directory, base = os.path.split(target)
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        try:
            with open(tmp, "xb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise FileAccessError(f"cannot write {target!r}: {exc.strerror or exc}") from None
