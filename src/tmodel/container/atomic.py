"""Atomic writing of files, the way trusted tools do it: the target path only ever holds the old complete
file or the new one (SPEC.md §11).

- Symbolic links are followed, as `torch.save` and `open(path, "w")` do: a link stays a link and the file it
  leads to is replaced, atomically, by a temporary file in that file's directory. A dangling link gets its
  file created; a link (or path) to a directory or any other non-regular file is refused [NOT_REGULAR_FILE].
- The replaced file's mode is kept, and its owner and group as far as the process may set them (as `sed -i`
  does; set-user/group-ID bits are dropped when the owner or group could not be kept). A new file gets the
  mode a plain `open(path, "w")` would give (the umask, or the directory's default ACL). While it is written
  the temporary file is readable by its owner only.
- Temporary files are named `.<stem>.<pid>.<8 hex>.tmp` in the target's directory; the stem is the target's
  name, or, where that would exceed the filesystem's name limit, a truncated prefix of it and a hash of the
  whole name, so a valid target name always has valid temporary names and a sweep can still find them.
- Each writer holds an exclusive `flock` on its temporary file for its whole life. Before writing, temporary
  files of the same target are removed only when their lock can be taken without blocking: provably dead.
  The PID in the name is for people reading a directory listing; it decides nothing (PIDs mean nothing
  across PID namespaces, containers and shared volumes).
- The temporary file is fsynced before the rename, the directory after it. A directory fsync that fails is
  reported as exactly that: the new file is in place, its durability is not guaranteed [IO_ERROR].
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from typing import BinaryIO

from ..errors import FileAccessError, InvalidArgument, NotRegularFile, TModelError, Truncated, file_error

PathLike = str | os.PathLike[str]

_MAX_LINKS = 40  # as Linux's MAXSYMLINKS
_NAME_MAX = 255  # when the filesystem does not say
_ROOM = len("..") + 10 + len(".") + 8 + len(".tmp")  # ".<stem>.<pid: <= 10 digits>.<8 hex>.tmp"
_HASH_HEX = 16
_COPY_PIECE = 8 << 20


def replace_atomically(path: PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write through `write` into a locked temporary file in the target's directory, give it the replaced
    file's mode and owner, fsync it, rename it over the target, fsync the directory. On any failure before
    the rename the temporary file is removed and the target is untouched; dead writers' temporary files
    for the same target are removed first. `path` is followed through symbolic links."""
    target = resolve_target(path)
    directory, base = os.path.split(target)
    old = _existing_regular(os.fspath(path), target)
    remove_stale(directory, base)
    try:
        with _temporary(directory, base) as (tmp, fd, created):
            with open(fd, "wb", closefd=False) as f:
                write(f)
            _settle(fd, created, old)
            os.fsync(fd)
            os.replace(tmp, target)
    except TModelError:  # from `write`; some are OSErrors too (MissingFile), and must not be re-wrapped
        raise
    except OSError as exc:
        raise file_error(exc, f"cannot write {target!r}: {exc.strerror or exc}", target) from None
    _sync_directory(directory, target)


def copy_new(src_fd: int, dst: PathLike) -> None:
    """Copy the open file `src_fd` (all of it) to `dst`, a path that must not exist, atomically: a locked
    temporary file, then the source's mode, owner (where permitted) and timestamps, fsync, and a hard link
    at `dst` that fails if anything (a file, a planted symbolic link) appeared there. Nothing at `dst` is
    ever followed or replaced; an existing `dst` is an error [INVALID_ARGUMENT]."""
    target = _absolute(os.fspath(dst))
    directory, base = os.path.split(target)
    if os.path.lexists(target):
        raise InvalidArgument(f"{target!r} exists already; it is never overwritten")
    remove_stale(directory, base)
    try:
        st = os.fstat(src_fd)
        with _temporary(directory, base) as (tmp, fd, created):
            copy_bytes(src_fd, fd, st.st_size)
            _settle(fd, created, st)
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.fsync(fd)
            _link_new(tmp, target)
    except FileExistsError:
        raise InvalidArgument(f"{target!r} exists already; it is never overwritten") from None
    except OSError as exc:
        raise file_error(exc, f"cannot write {target!r}: {exc.strerror or exc}", target) from None
    _sync_directory(directory, target)


def resolve_target(path: PathLike) -> str:
    """The absolute path a write to `path` lands on: symbolic links at its end followed (dangling ones
    too, as `open(path, "w")` creates their file), directories left to the kernel (no textual `..`)."""
    given = os.fspath(path)
    target = _absolute(given)
    for _ in range(_MAX_LINKS):
        try:
            link = os.readlink(target)
        except OSError:  # not a link, or nothing there yet: this is the file
            return target
        target = os.path.join(os.path.dirname(target), link)
    raise FileAccessError(f"cannot write {given!r}: too many levels of symbolic links")


def temp_stem(directory: str, base: str) -> str:
    """What temporary files of `base` in `directory` are named after: `base` itself when the longest
    temporary name fits the filesystem's name limit, else a prefix of it (cut at a UTF-8 character
    boundary), `~` and 16 hex digits of the SHA-256 of the whole name. Deterministic, so sweeps find them."""
    raw = os.fsencode(base)
    room = _name_max(directory) - _ROOM
    if len(raw) <= room:
        return base
    cut = max(0, room - 1 - _HASH_HEX)
    while cut and (raw[cut] & 0xC0) == 0x80:  # not inside a multi-byte character
        cut -= 1
    return os.fsdecode(raw[:cut]) + "~" + hashlib.sha256(raw).hexdigest()[:_HASH_HEX]


def remove_stale(directory: str, base: str) -> list[str]:
    """Delete the temporary files of `base` that no writer holds any more (their lock can be taken without
    blocking); returns their names. Files that cannot be opened or locked, symbolic links, and anything
    whose lock is held (in any process, PID namespace or machine sharing the lock) are left alone."""
    pattern = re.compile(re.escape(f".{temp_stem(directory, base)}.") + r"\d{1,10}\.[0-9a-f]{8}\.tmp")
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [name for name in names if pattern.fullmatch(name) and _remove_if_dead(directory, name)]


# -- the pieces -------------------------------------------------------------------------------------------
def _absolute(path: str) -> str:
    if not path:
        raise FileAccessError("cannot write '': no such file or directory")
    if os.path.basename(path) in ("", ".", ".."):
        raise NotRegularFile(f"cannot write {path!r}: it names a directory")
    if os.path.isabs(path):
        return path
    try:
        return os.path.join(os.getcwd(), path)
    except OSError as exc:  # the working directory was removed
        raise FileAccessError(f"cannot write {path!r}: {exc.strerror or exc}") from None


def _existing_regular(given: str, target: str) -> os.stat_result | None:
    """The target's status when it exists; a directory, FIFO or device is refused before anything is
    written (a rename would replace it, or fail after all the work)."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FileAccessError(f"cannot write {target!r}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        via = "" if _absolute(given) == target else f" (the link {given!r} leads there)"
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise NotRegularFile(f"cannot write {target!r}{via}: it is {kind}")
    return st


def _name_max(directory: str) -> int:
    try:
        n = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return _NAME_MAX
    return n if n > 0 else _NAME_MAX


@contextlib.contextmanager
def _temporary(directory: str, base: str) -> Iterator[tuple[str, int, int]]:
    """(path, descriptor, mode it was created with) of a new temporary file for `base`, locked and, until
    `_settle`, private to its owner; closed on exit (which releases the lock), and unlinked on failure."""
    stem = temp_stem(directory, base)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = os.path.join(directory, f".{stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the mode open(path, "w") gives, read back below
        except FileExistsError:
            continue
        if _lock(fd, tmp):
            break
        os.close(fd)  # a sweep locked it between creation and our lock, and removes it
    else:
        raise FileAccessError(f"cannot create a temporary file in {directory!r}: no free name")
    try:
        created = stat.S_IMODE(os.fstat(fd).st_mode)  # the umask's (or a default ACL's) doing
        with contextlib.suppress(OSError):
            os.fchmod(fd, created & 0o700)  # nobody else reads the new bytes before they are complete
        yield tmp, fd, created
    except BaseException:
        with contextlib.suppress(OSError):
            if _same_file(fd, tmp):
                os.unlink(tmp)
        raise
    finally:
        os.close(fd)


def _lock(fd: int, path: str) -> bool:
    """Take the writer's lock on a file just created; False when a sweep got there first."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a filesystem without locks: no sweep can prove this file dead either
        pass
    return _same_file(fd, path)


def _same_file(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _remove_if_dead(directory: str, name: str) -> bool:
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: a live writer; unsupported: not provable
        if not _same_file(fd, path):
            return False
        os.unlink(path)  # still locked, so a writer that created it just now sees it gone and retries
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _settle(fd: int, created: int, old: os.stat_result | None) -> None:
    """Give the temporary file its final owner and mode: those of the file it replaces (the owner and group
    as far as permitted, as `sed -i`), or, for a new file, the mode `created` it was created with."""
    if old is None:
        _set_mode(fd, created)
        return
    now = os.fstat(fd)
    if (now.st_uid, now.st_gid) != (old.st_uid, old.st_gid):
        try:
            os.fchown(fd, old.st_uid, old.st_gid)
        except OSError:
            with contextlib.suppress(OSError):
                os.fchown(fd, -1, old.st_gid)  # a group the user belongs to
        now = os.fstat(fd)
    mode = stat.S_IMODE(old.st_mode)
    if now.st_uid != old.st_uid:
        mode &= ~stat.S_ISUID
    if now.st_gid != old.st_gid:
        mode &= ~stat.S_ISGID
    _set_mode(fd, mode)


def _set_mode(fd: int, mode: int) -> None:
    try:
        os.fchmod(fd, mode)
    except OSError:
        if stat.S_IMODE(os.fstat(fd).st_mode) & ~mode:  # the new file would be more open than wanted
            raise


def copy_bytes(src: int, dst: int, length: int, start: int = 0) -> None:
    """Copy bytes `start` .. `length` of the open file `src` to the same offsets of `dst`, kernel to
    kernel where the OS can (TRUNCATED if `src` ends first)."""
    done = start
    while done < length:
        n = min(length - done, _COPY_PIECE)
        try:
            step = os.copy_file_range(src, dst, n, done, done)
        except (AttributeError, OSError):  # not here, or not between these files
            step = os.pwrite(dst, os.pread(src, n, done), done)
        if step <= 0:
            raise Truncated(f"the file ended at {done} of {length} bytes while it was copied")
        done += step


def _link_new(tmp: str, target: str) -> None:
    """Publish `tmp` at `target` only if nothing is there: a hard link (which never follows or replaces
    what is at `target`), then the temporary name goes. Where hard links are not supported, a rename after
    checking again."""
    try:
        os.link(tmp, target)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK):
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), target) from None
        os.rename(tmp, target)
        return
    os.unlink(tmp)


def _sync_directory(directory: str, target: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise FileAccessError(
            f"{target!r} is written and in place, but syncing its directory failed "
            f"({exc.strerror or exc}): the new file may not survive a crash"
        ) from None
