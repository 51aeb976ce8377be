"""Signing files and checking who signed them (SPEC.md §3.4): `sign_file` adds a signature to a file in
place, atomically, copying its blobs and manifest byte for byte (nothing is decoded or re-encoded);
`keygen` makes a key pair; `signatures` lists a file's verified signatures.

Rules: every signature of a file is verified whenever it is opened (an invalid one is BAD_SIGNATURE);
trust is the caller's: `trusted_keys` and `require_signature` on `load` and `open`.
"""

from __future__ import annotations

import os
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .archive.reader import Reader
from .archive.signing import Signature, key_id, private_key, signature_of, signed_block
from .container.atomic import copy_bytes, replace_atomically
from .container.framing import ENCRYPTED, HEADER_SIZE, SIGNED, pack_header, pack_trailer
from .errors import InvalidArgument

PathLike = str | os.PathLike[str]


def sign_file(
    path: PathLike, key: Any, *, password: bytes | None = None, decryption_key: Any = None
) -> Signature:
    """Add a signature by `key` (a key object, PEM/OpenSSH bytes or a key file) to the file at `path`;
    returns it. The file must use cryptographic digests (`checksum="blake3"` or `"sha256"`); an encrypted
    one is opened with `decryption_key` (the signature covers its stored, encrypted bytes)."""
    signer = private_key(key, password)
    with Reader(path, key=decryption_key) as reader:
        start, end, checksum = reader.manifest_offset, reader.content_size, reader.manifest.checksum
        manifest = reader.source.read(end - start, start)
        block = signed_block(reader.signature_block, signer, manifest, end, checksum)
        header = pack_header(SIGNED | (reader.flags & ENCRYPTED))

        def write(f: Any) -> None:
            f.write(header)
            f.flush()
            copy_bytes(reader.fd, f.fileno(), end, HEADER_SIZE)  # the blobs and the manifest, as they are
            f.seek(end)
            f.write(block)
            f.write(pack_trailer(start, manifest, checksum, header, block))

        replace_atomically(path, write)
    return signature_of(signer)


def signatures(path: PathLike, *, key: Any = None) -> list[Signature]:
    """A file's signatures, each verified (an invalid one is BAD_SIGNATURE); empty when unsigned. `key`
    opens an encrypted file."""
    with Reader(path, key=key) as reader:
        return list(reader.signatures)


def keygen(path: PathLike, algorithm: str = "ed25519") -> str:
    """Write a new private key to `path` (PKCS #8 PEM, mode 0600) and its public key to `path.pub`
    (SubjectPublicKeyInfo PEM); returns the key id."""
    if algorithm == "ed25519":
        key: Any = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "ecdsa-p256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise InvalidArgument(f"algorithm is ed25519 or ecdsa-p256, not {algorithm!r}")
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for target, data, mode in ((os.fspath(path), private, 0o600), (os.fspath(path) + ".pub", public, 0o644)):
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            raise InvalidArgument(f"{target!r} exists already; a key is never overwritten") from None
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return key_id(key.public_key())
