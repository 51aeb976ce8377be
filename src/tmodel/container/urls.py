"""Which targets are URLs, and the fsspec filesystem behind one (imported only when a URL is given).

A string with a `scheme://` (fsspec's chained `a::b://` too) whose scheme is not `file` is a URL: it is
read and written through fsspec, whatever the protocol (s3, gs, http(s), memory, ...). `file://` URLs and
every other string or path stay local files.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import FileAccessError, InvalidArgument, MissingFile, TModelError

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)(::[A-Za-z][A-Za-z0-9+.\-]*)*://")
INSTALL = "pip install 'tmodel[remote]'"


def is_url(target: object) -> bool:
    """A string naming a remote object (not a local path, not a file:// URL)."""
    if not isinstance(target, str):
        return False
    match = _URL.match(target)
    return match is not None and match.group("scheme").lower() != "file"


def local_path(target: str) -> str:
    """A file:// URL's path; any other string as it is."""
    return target[len("file://") :] if target[:7].lower() == "file://" else target


def filesystem(url: str, options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """(the fsspec filesystem, the path in it) for a URL; a missing fsspec or protocol package is
    INVALID_ARGUMENT naming what to install."""
    try:
        import fsspec.core
    except ImportError:
        raise InvalidArgument(f"reading or writing {url!r} needs fsspec: {INSTALL}") from None
    try:
        fs, path = fsspec.core.url_to_fs(url, **(options or {}))
    except ImportError as exc:
        raise InvalidArgument(f"{url!r}: {exc} ({INSTALL} covers http(s) and memory)") from None
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"bad URL {url!r}: {exc}") from None
    except Exception as exc:
        raise wrapped(exc, url) from None
    return fs, path


def wrapped(exc: BaseException, url: str, doing: str = "accessing") -> TModelError:
    """A filesystem's exception as the IO_ERROR it is: MISSING_FILE's class for a missing object."""
    if isinstance(exc, TModelError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return MissingFile(f"{doing} {url!r} failed: no such object", path=url)
    message = f"{doing} {url!r} failed: {type(exc).__name__}: {exc}".rstrip(": ")
    return FileAccessError(message, path=url)
