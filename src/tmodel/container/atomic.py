"""Atomic replacement of a file: the target path only ever holds the old complete file or the new one."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable
from typing import BinaryIO

from ..errors import TModelError, file_error


def replace_atomically(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Write through `write` into a temporary file in the target's directory, fsync it, rename it over the
    target, fsync the directory. On any failure the temporary file is removed and the target is untouched;
    temporary files that killed writers left for the same target are removed first."""
    target = os.path.abspath(os.fspath(path))
    directory, base = os.path.split(target)
    remove_stale(directory, base)
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
    except TModelError:  # from `write`; some are OSErrors too (MissingFile), and must not be re-wrapped
        raise
    except OSError as exc:
        raise file_error(exc, f"cannot write {target!r}: {exc.strerror or exc}", target) from None


def remove_stale(directory: str, base: str) -> list[str]:
    """Delete `.<base>.<pid>.<hex>.tmp` files whose writing process no longer exists; returns them."""
    pattern = re.compile(re.escape(f".{base}.") + r"(\d+)\.[0-9a-f]{8}\.tmp")
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))
            removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
