"""Embedded signatures (SPEC.md §3.4): Ed25519 (the default) or ECDSA P-256 over a domain-separated
statement of a file's exact stored manifest bytes and the size of what they describe; several per file.

Rules: a signature entry carries its public key (SubjectPublicKeyInfo DER) and key id (the SHA-256 of that
DER), so every reader verifies every signature, and an invalid one is always fatal (BAD_SIGNATURE); trust is
a separate question, answered by key ids the caller gives. A signed file's chunk and manifest digests are
cryptographic (sha256, blake3), so the manifest, which holds every chunk digest, covers the whole file.
Keys load from PEM (PKCS #8, SubjectPublicKeyInfo) and OpenSSH files.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ..container.digests import CRYPTOGRAPHIC
from ..errors import BadSignature, InvalidArgument, UnsupportedType
from ..limits import DEFAULT_LIMITS
from ..manifest.encoding import pack_manifest, unpack_manifest

#: what a signature signs: this prefix, the u64 size of the file up to the manifest's end, the manifest's
#: SHA-256 (so no signature over a tmodel file can be taken for a signature over anything else)
DOMAIN = b"tmodel signature v1\x00"
ALGORITHMS = ("ed25519", "ecdsa-p256")
MAX_SIGNATURES = 64
_ENTRY_KEYS = ("algorithm", "key_id", "public_key", "signature")

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class Signature:
    """One verified signature: its algorithm and the key id (hex) of the key that made it."""

    algorithm: str
    key_id: str


def statement(manifest: bytes, content_size: int) -> bytes:
    """The bytes a signature signs (SPEC.md §3.4)."""
    return DOMAIN + struct.pack("<Q", content_size) + hashlib.sha256(manifest).digest()


def key_id(key: PublicKey) -> str:
    """The SHA-256 of the key's SubjectPublicKeyInfo DER, hex."""
    return hashlib.sha256(_spki(key)).hexdigest()


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _algorithm(key: PublicKey) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ecdsa-p256"
    raise InvalidArgument(f"a signing key is Ed25519 or ECDSA P-256, not {type(key).__name__}")


def private_key(key: Any, password: bytes | None = None) -> PrivateKey:
    """A private key from a key object, PEM or OpenSSH bytes, or a path to such a file."""
    if isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
        _algorithm(key.public_key())
        return key
    data = _bytes(key)
    try:
        loaded: Any = (
            serialization.load_ssh_private_key(data, password)
            if b"OPENSSH PRIVATE KEY" in data
            else serialization.load_pem_private_key(data, password)
        )
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"not a private key this format signs with: {exc}") from None
    _algorithm(loaded.public_key())
    return loaded  # type: ignore[no-any-return]


def public_key(key: Any) -> PublicKey:
    """A public key from a key object (a private key gives its public one), PEM, OpenSSH, or a path."""
    if isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
        return key.public_key()
    if isinstance(key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)):
        _algorithm(key)
        return key
    data = _bytes(key)
    try:
        if data.startswith((b"ssh-ed25519 ", b"ecdsa-sha2-nistp256 ")):
            loaded: Any = serialization.load_ssh_public_key(data)
        elif b"PRIVATE KEY" in data:
            return private_key(data).public_key()
        else:
            loaded = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedType) as exc:
        raise InvalidArgument(f"not a public key: {exc}") from None
    _algorithm(loaded)
    return loaded  # type: ignore[no-any-return]


def _bytes(key: Any) -> bytes:
    if isinstance(key, (bytes, bytearray)):
        return bytes(key)
    if isinstance(key, (str, os.PathLike)):
        try:
            with open(key, "rb") as f:
                return f.read(1 << 20)
        except OSError as exc:
            raise InvalidArgument(f"cannot read key file {os.fspath(key)!r}: {exc.strerror}") from None
    raise InvalidArgument(f"a key is a key object, PEM/OpenSSH bytes or a path, not {type(key).__name__}")


def sign(key: PrivateKey, manifest: bytes, content_size: int) -> dict[str, Any]:
    """One signature entry over a file's manifest."""
    pub = key.public_key()
    message = statement(manifest, content_size)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        sig = key.sign(message)
    else:
        sig = key.sign(message, ec.ECDSA(hashes.SHA256()))
    spki = _spki(pub)
    return {
        "algorithm": _algorithm(pub),
        "key_id": hashlib.sha256(spki).digest(),
        "public_key": spki,
        "signature": sig,
    }


def pack_block(entries: list[dict[str, Any]]) -> bytes:
    """The signature block: a msgpack array of entries."""
    return pack_manifest(entries)


def parse_block(block: bytes) -> list[dict[str, Any]]:
    """The entries of a signature block, each well formed [BAD_SIGNATURE]."""
    try:
        entries = unpack_manifest(block, DEFAULT_LIMITS, None)
    except Exception as exc:  # the strict decoder's own coded errors, for bytes no signature block holds
        raise BadSignature(f"the signature block is not valid msgpack: {exc}") from None
    if type(entries) is not list or not 1 <= len(entries) <= MAX_SIGNATURES:
        raise BadSignature(f"the signature block is an array of 1..{MAX_SIGNATURES} signatures")
    seen: set[bytes] = set()
    for e in entries:
        if type(e) is not dict or sorted(e) != sorted(_ENTRY_KEYS):
            raise BadSignature(f"a signature is a map of exactly {list(_ENTRY_KEYS)}")
        if e["algorithm"] not in ALGORITHMS:
            raise BadSignature(f"unknown signature algorithm {e['algorithm']!r}")
        if not all(type(e[k]) is bytes for k in ("key_id", "public_key", "signature")):
            raise BadSignature("a signature's key_id, public_key and signature are bin")
        if hashlib.sha256(e["public_key"]).digest() != e["key_id"]:
            raise BadSignature("a signature's key_id is not the SHA-256 of its public key")
        if e["key_id"] in seen:
            raise BadSignature("two signatures by one key")
        seen.add(e["key_id"])
    return entries


def check_signed_digests(checksum: str) -> None:
    """BAD_SIGNATURE unless a signed file's digests are cryptographic (else a signature binds nothing)."""
    if checksum not in CRYPTOGRAPHIC:
        raise BadSignature(
            f"a signed file's digests must be cryptographic ({sorted(CRYPTOGRAPHIC)}), not {checksum!r}"
        )


def verify_block(block: bytes, manifest: bytes, content_size: int) -> list[Signature]:
    """Every signature of a block verified against its own public key, over the stored manifest region
    (the manifest, or an encrypted file's envelope); any failure is BAD_SIGNATURE."""
    entries = parse_block(block)
    message = statement(manifest, content_size)
    out = []
    for e in entries:
        try:
            key = serialization.load_der_public_key(e["public_key"])
            if _algorithm(key) != e["algorithm"]:  # type: ignore[arg-type]
                raise BadSignature(f"a {e['algorithm']} signature with a key of another algorithm")
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(e["signature"], message)
            else:
                assert isinstance(key, ec.EllipticCurvePublicKey)
                key.verify(e["signature"], message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError, InvalidArgument) as exc:
            raise BadSignature(
                f"the {e['algorithm']} signature by key {e['key_id'].hex()} does not verify"
                + (f": {exc}" if str(exc) else "")
            ) from None
        out.append(Signature(e["algorithm"], e["key_id"].hex()))
    return out


def check_signable(checksum: str) -> None:
    """INVALID_ARGUMENT unless a file of these digests can be signed (they must be cryptographic)."""
    if checksum not in CRYPTOGRAPHIC:
        raise InvalidArgument(
            f"signing needs cryptographic digests: save with checksum='blake3' or 'sha256' (not {checksum!r})"
        )


def signature_of(key: PrivateKey) -> Signature:
    """The algorithm and key id a signature by `key` carries."""
    pub = key.public_key()
    return Signature(_algorithm(pub), key_id(pub))


def signed_block(
    existing: bytes, key: PrivateKey, manifest: bytes, content_size: int, checksum: str
) -> bytes:
    """A signature block with one more signature (refused: a file whose digests are not cryptographic,
    and a key that signed it already)."""
    check_signable(checksum)
    entries = parse_block(existing) if existing else []
    entry = sign(key, manifest, content_size)
    if any(e["key_id"] == entry["key_id"] for e in entries):
        raise InvalidArgument(f"the file is signed by key {entry['key_id'].hex()} already")
    if len(entries) >= MAX_SIGNATURES:
        raise InvalidArgument(f"a file holds at most {MAX_SIGNATURES} signatures")
    return pack_block([*entries, entry])
