"""Saving to a URL: the file is written whole to a local temporary file, then uploaded so that no partial
object ever bears the target's name.

Object stores (ATOMIC_PUT: S3, Google Cloud Storage, Azure) get one upload of the finished file to the
target's name: an object appears only when its upload completed, and a failed (multipart) upload leaves
none. Every other filesystem (memory, sftp, ...) gets the upload under a temporary name beside the target,
then a move onto it; on failure the temporary object is removed. http(s) has no move: saving there is
refused before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from typing import Any

from ..errors import InvalidArgument
from .urls import filesystem, wrapped

#: protocols whose single upload is atomic (the object appears whole or not at all)
ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl"})
READ_ONLY = frozenset({"http", "https"})


def _protocols(fs: Any) -> set[str]:
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


def _writable(url: str) -> tuple[Any, str, bool]:
    """(filesystem, path in it, whether one upload is atomic) of a URL that can be saved to; resolved
    before anything is written, so a missing package or a read-only protocol fails first."""
    fs, path = filesystem(url)
    protocols = _protocols(fs)
    if protocols & READ_ONLY:
        raise InvalidArgument(f"cannot save to {url!r}: http(s) URLs are read-only here")
    return fs, path, bool(protocols & ATOMIC_PUT)


@contextlib.contextmanager
def staged(url: str) -> Iterator[str]:
    """A local path to write the whole file to, uploaded to `url` when the block ends without error."""
    fs, path, atomic_put = _writable(url)
    with tempfile.TemporaryDirectory(prefix="tmodel-upload-") as tmp:
        local = os.path.join(tmp, "upload.tmodel")
        yield local
        upload(fs, local, path, url, atomic_put)


@contextlib.contextmanager
def staged_set(url: str) -> Iterator[str]:
    """`staged` for a sharded set (SPEC.md §5.10): a local path in an empty folder to write the set to;
    every other file the block wrote there (the shards) is uploaded beside `url` first, each as `staged`
    uploads one, and the file at the path (the index) last."""
    fs, path, atomic_put = _writable(url)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    parent = path[: len(path) - len(name)]
    with tempfile.TemporaryDirectory(prefix="tmodel-upload-") as tmp:
        local = os.path.join(tmp, name)
        yield local
        for shard in sorted(n for n in os.listdir(tmp) if n != name):
            upload(fs, os.path.join(tmp, shard), parent + shard, url, atomic_put)
        upload(fs, local, path, url, atomic_put)


def upload(fs: Any, local: str, path: str, url: str, atomic_put: bool) -> None:
    """`local` to `path` of `fs` (see the module's docstring); any failure is IO_ERROR."""
    if atomic_put:
        try:
            fs.put_file(local, path)
        except Exception as exc:
            raise wrapped(exc, url, "uploading to") from None
        return
    temporary = f"{path}.{secrets.token_hex(4)}.tmp"
    try:
        try:
            fs.put_file(local, temporary)
            fs.mv(temporary, path)
        except BaseException:
            with contextlib.suppress(Exception):
                if fs.exists(temporary):
                    fs.rm(temporary)
            raise
    except Exception as exc:
        raise wrapped(exc, url, "uploading to") from None
