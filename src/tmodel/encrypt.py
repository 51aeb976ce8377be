"""Encrypting and decrypting whole files (`tmodel encrypt`, `tmodel decrypt`, SPEC.md §3.5): every chunk
is carried over as it was compressed, only sealed or opened (nothing is recompressed), and the manifest is
the same apart from where blobs lie; the result is written atomically.

Rules: a file written as schema 5 or older is re-encoded chunk by chunk on the way (its zstd frames may
lack the content checksum schema 6 requires, SPEC.md §6.4); signatures are dropped, since they signed the
old bytes (the caller is told, as `migrate` tells).
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

from .archive.encryption import Sealer, new_key
from .archive.reader import Reader
from .archive.recode import stored_again
from .archive.shards import refuse_index
from .archive.writer import Options, ResealedBlob, Source, write_atomic
from .errors import InvalidArgument
from .limits import DEFAULT_LIMITS, Limits
from .manifest.wire import BlobWire, ManifestWire, manifest_wire

PathLike = str | os.PathLike[str]


def encrypt_file(
    src: PathLike,
    dst: PathLike,
    encrypt_with: Any,
    *,
    key: Any = None,
    encrypt_manifest: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> list[str]:
    """Write `src` encrypted with `encrypt_with` (32 raw bytes or a passphrase) to `dst`; `key` opens
    `src` if it is encrypted already (so this also changes a file's key). Returns notes for the user."""
    return _reseal(src, dst, key, Sealer.new(encrypt_with, encrypt_manifest), limits)


def decrypt_file(src: PathLike, dst: PathLike, *, key: Any, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """Write the encrypted file `src`, opened with `key`, unencrypted to `dst`. Returns notes."""
    return _reseal(src, dst, key, None, limits)


def _reseal(src: PathLike, dst: PathLike, key: Any, seal: Sealer | None, limits: Limits) -> list[str]:
    if os.path.abspath(os.fspath(src)) == os.path.abspath(os.fspath(dst)):
        raise InvalidArgument("write to another path: the source is read while the result is written")
    with Reader(src, limits, key=key) as reader:
        refuse_index(reader, "encrypted or decrypted")
        if seal is None and reader.sealer is None:
            raise InvalidArgument(f"{reader.path} is not encrypted")
        m = reader.manifest
        sources: list[Source] = [
            ResealedBlob(b.codec, b.width, b.nbytes, b.chunk_size, partial(stored_again, reader, i))
            for i, b in enumerate(m.blobs)
        ]
        wire = m.to_wire()

        def finish(blobs: list[BlobWire]) -> ManifestWire:
            return manifest_wire(
                checksum=m.checksum,
                blobs=blobs,
                tensors=wire["tensors"],
                root=wire["root"],
                metadata=wire["metadata"],
                modules=wire["modules"],
                required_features=wire["required_features"],
                extensions=wire["extensions"],
                checkpoint=wire["checkpoint"],
            )

        write_atomic(dst, sources, finish, Options(checksum=m.checksum, seal=seal))
        if reader.signatures:
            return ["note: the written file is unsigned (its bytes changed): tmodel sign it again"]
        return []


def keygen(path: PathLike) -> None:
    """Write a new random 32-byte key to `path` as 64 hex digits and a newline (mode 0600; an existing
    file is never overwritten)."""
    try:
        fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidArgument(f"{os.fspath(path)!r} exists already; a key is never overwritten") from None
    with os.fdopen(fd, "w") as f:
        f.write(new_key().hex() + "\n")
