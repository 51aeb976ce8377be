"""Encrypted files (SPEC.md §3.5): AES-256-GCM over every chunk and over the manifest.

Rules: a file's key comes from a 32-byte master key (given raw, or derived from a passphrase with scrypt,
whose salt and parameters the file holds) and the file's random `file_id` through HKDF-SHA256, which also
yields a key check (so a wrong key is WRONG_KEY, not a tampered file). Chunks are compressed first, then
sealed: the nonce is the blob's random 12-byte `nonce` XOR the chunk index, and the associated data binds
the file id, the blob's nonce, the chunk index, its decoded length, width and codec, so a chunk cannot be
reordered, swapped, dropped or moved between blobs or files without failing (DECRYPTION_FAILED). The
manifest is always authenticated, and encrypted unless the writer chose to leave it readable. Nothing is
decrypted before its tag is checked; `cryptography` is imported only for an encrypted file.
"""

from __future__ import annotations

import os
import secrets
import struct
from dataclasses import dataclass
from typing import Any

from ..container.framing import NONCE_SIZE, TAG_SIZE
from ..errors import (
    DecryptionFailed,
    InvalidArgument,
    KeyRequired,
    LimitExceeded,
    ManifestSchemaError,
    TModelError,
    WrongKey,
)
from ..limits import DEFAULT_LIMITS, Limits
from ..manifest.encoding import pack_manifest, unpack_manifest

CIPHER = "aes-256-gcm"
KEY_SIZE = 32
FILE_ID_SIZE = 16
KEY_CHECK_SIZE = 16
KDF = "scrypt"
#: the writer's scrypt parameters for a passphrase (128 MiB, about 0.4 s on one core)
DEFAULT_LOG_N, DEFAULT_R, DEFAULT_P = 17, 8, 1
_HKDF_INFO = b"tmodel encryption v1"
_MANIFEST_AD = b"tmodel manifest v1\x00"
_CHUNK_AD = b"tmodel chunk v1\x00"
_ENVELOPE_KEYS = ("cipher", "file_id", "kdf", "key_check", "manifest", "manifest_encrypted", "nonce", "tag")
_KDF_KEYS = ("log_n", "name", "p", "r", "salt")


@dataclass(frozen=True)
class Passphrase:
    """A passphrase, stretched with scrypt (N = 2**log_n, r, p) into a file's master key."""

    text: str
    log_n: int = DEFAULT_LOG_N
    r: int = DEFAULT_R
    p: int = DEFAULT_P

    def __repr__(self) -> str:  # never the passphrase itself
        return f"Passphrase(log_n={self.log_n}, r={self.r}, p={self.p})"


Key = bytes | Passphrase
Buffer = bytes | bytearray | memoryview


def key_input(key: Any) -> Key:
    """A key as the API takes it: 32 raw bytes, a passphrase (str or `Passphrase`) [INVALID_ARGUMENT]."""
    if isinstance(key, Passphrase):
        if not isinstance(key.text, str) or not key.text:
            raise InvalidArgument("a passphrase is a non-empty str")
        _check_kdf_params(key.log_n, key.r, key.p, InvalidArgument)
        cost = kdf_bytes(key.log_n, key.r, key.p)
        if cost > DEFAULT_LIMITS.max_kdf_bytes:  # a file readers refuse is never written (SPEC.md §11)
            raise InvalidArgument(
                f"scrypt parameters spending {cost} bytes exceed readers' default max_kdf_bytes "
                f"({DEFAULT_LIMITS.max_kdf_bytes})"
            )
        return key
    if isinstance(key, str):
        return key_input(Passphrase(key))
    if isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
        if len(raw) != KEY_SIZE:
            raise InvalidArgument(
                f"a raw key is {KEY_SIZE} bytes, not {len(raw)} (a str is taken as a passphrase)"
            )
        return raw
    raise InvalidArgument(f"a key is {KEY_SIZE} bytes or a passphrase str, not {type(key).__name__}")


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """A raw key from a file: 32 bytes, or 64 hex digits (with optional surrounding whitespace)."""
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except OSError as exc:
        raise InvalidArgument(f"cannot read key file {os.fspath(path)!r}: {exc.strerror}") from None
    if len(data) == KEY_SIZE:
        return data
    try:
        raw = bytes.fromhex(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raw = b""
    if len(raw) != KEY_SIZE:
        raise InvalidArgument(
            f"key file {os.fspath(path)!r} holds neither {KEY_SIZE} raw bytes nor {2 * KEY_SIZE} hex digits"
        )
    return raw


def new_key() -> bytes:
    """A random 32-byte key."""
    return secrets.token_bytes(KEY_SIZE)


def _check_kdf_params(log_n: Any, r: Any, p: Any, error: type[TModelError]) -> None:
    for name, v in (("log_n", log_n), ("r", r), ("p", p)):
        if type(v) is not int or v < 1:
            raise error(f"scrypt {name} must be an int >= 1, not {v!r}")
    if log_n > 62 or r > 1 << 20 or p > 1 << 20:
        raise error(f"scrypt parameters out of range (log_n {log_n}, r {r}, p {p})")


def kdf_bytes(log_n: int, r: int, p: int) -> int:
    """The memory x passes scrypt would spend: 128 * N * r * p bytes (SPEC.md §8 `max_kdf_bytes`)."""
    return 128 * (1 << log_n) * r * p


def _nonce(base: bytes, index: int) -> bytes:
    return (int.from_bytes(base, "big") ^ index).to_bytes(NONCE_SIZE, "big")


class Sealer:
    """The keys of one encrypted file: seals and opens its manifest and its chunks."""

    def __init__(
        self, master: bytes, file_id: bytes, kdf: dict[str, Any] | None, manifest_encrypted: bool
    ) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        okm = HKDF(hashes.SHA256(), KEY_SIZE + KEY_CHECK_SIZE, salt=file_id, info=_HKDF_INFO).derive(master)
        self._aead = AESGCM(okm[:KEY_SIZE])
        self.key_check = okm[KEY_SIZE:]
        self.file_id = file_id
        self.kdf = kdf
        self.manifest_encrypted = manifest_encrypted

    @classmethod
    def new(cls, key: Any, encrypt_manifest: bool = True) -> Sealer:
        """The keys of a new file: a fresh file id (and salt, for a passphrase)."""
        k = key_input(key)
        file_id = secrets.token_bytes(FILE_ID_SIZE)
        if isinstance(k, bytes):
            return cls(k, file_id, None, bool(encrypt_manifest))
        kdf = {"name": KDF, "salt": secrets.token_bytes(16), "log_n": k.log_n, "r": k.r, "p": k.p}
        return cls(_scrypt(k.text, kdf), file_id, kdf, bool(encrypt_manifest))

    # -- chunks ---------------------------------------------------------------------------------------
    def _chunk_ad(self, base: bytes, index: int, raw_len: int, width: int, codec: str) -> bytes:
        return b"".join(
            (_CHUNK_AD, self.file_id, base, struct.pack("<QQB", index, raw_len, width), codec.encode())
        )

    def seal_chunk(
        self, base: bytes, index: int, raw_len: int, width: int, codec: str, plain: Buffer
    ) -> bytes:
        """A chunk's stored bytes: its encoded segments encrypted, then the 16-byte tag."""
        return self._aead.encrypt(
            _nonce(base, index), plain, self._chunk_ad(base, index, raw_len, width, codec)
        )

    def open_chunk(
        self,
        base: bytes,
        index: int,
        raw_len: int,
        width: int,
        codec: str,
        stored: memoryview,
        out: memoryview,
    ) -> None:
        """Decrypt a chunk's stored bytes into `out` (len(stored) - 16 bytes) once its tag checks."""
        from cryptography.exceptions import InvalidTag

        ad = self._chunk_ad(base, index, raw_len, width, codec)
        try:
            self._aead.decrypt_into(_nonce(base, index), stored, ad, out)
        except InvalidTag:
            raise DecryptionFailed(
                f"chunk {index} fails authentication (changed, reordered or moved from another blob or file)"
            ) from None

    # -- manifest -------------------------------------------------------------------------------------
    def _manifest_ad(self) -> bytes:
        return _MANIFEST_AD + self.file_id + bytes([self.manifest_encrypted])

    def envelope(self, manifest: bytes) -> bytes:
        """What an encrypted file stores where the manifest goes: the manifest sealed, and how to open it."""
        nonce = secrets.token_bytes(NONCE_SIZE)
        if self.manifest_encrypted:
            sealed = self._aead.encrypt(nonce, manifest, self._manifest_ad())
            body, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
        else:
            body, tag = manifest, self._aead.encrypt(nonce, b"", self._manifest_ad() + manifest)
        return pack_manifest(
            {
                "cipher": CIPHER,
                "file_id": self.file_id,
                "kdf": self.kdf,
                "key_check": self.key_check,
                "manifest_encrypted": self.manifest_encrypted,
                "nonce": nonce,
                "manifest": body,
                "tag": tag,
            }
        )

    def open_manifest(self, envelope: dict[str, Any]) -> bytes:
        """The manifest bytes of a parsed envelope, once its tag checks [DECRYPTION_FAILED]."""
        from cryptography.exceptions import InvalidTag

        nonce, body, tag = envelope["nonce"], envelope["manifest"], envelope["tag"]
        try:
            if self.manifest_encrypted:
                return self._aead.decrypt(nonce, body + tag, self._manifest_ad())
            self._aead.decrypt(nonce, tag, self._manifest_ad() + body)
            return bytes(body)
        except InvalidTag:
            raise DecryptionFailed("the manifest fails authentication (it was changed)") from None


def _scrypt(text: str, kdf: dict[str, Any]) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=kdf["salt"], length=KEY_SIZE, n=1 << kdf["log_n"], r=kdf["r"], p=kdf["p"]).derive(
        text.encode("utf-8")
    )


def parse_envelope(raw: bytes, limits: Limits) -> dict[str, Any]:
    """An envelope's fields, each checked (SPEC.md §3.5) [MANIFEST_SCHEMA; LIMIT_EXCEEDED for the KDF]."""
    env = unpack_manifest(raw, limits, None)
    if type(env) is not dict or sorted(env) != sorted(_ENVELOPE_KEYS):
        raise ManifestSchemaError(
            f"the envelope of an encrypted file is a map of exactly {list(_ENVELOPE_KEYS)}"
        )
    if env["cipher"] != CIPHER:
        raise ManifestSchemaError(f"unknown cipher {env['cipher']!r} (this reader knows {CIPHER})")
    sizes = {"file_id": FILE_ID_SIZE, "key_check": KEY_CHECK_SIZE, "nonce": NONCE_SIZE, "tag": TAG_SIZE}
    for name, size in sizes.items():
        if type(env[name]) is not bytes or len(env[name]) != size:
            raise ManifestSchemaError(f"envelope {name} is not {size} bytes")
    if type(env["manifest"]) is not bytes or type(env["manifest_encrypted"]) is not bool:
        raise ManifestSchemaError("envelope manifest is not bin, or manifest_encrypted not a bool")
    kdf = env["kdf"]
    if kdf is not None:
        if type(kdf) is not dict or sorted(kdf) != sorted(_KDF_KEYS) or kdf["name"] != KDF:
            raise ManifestSchemaError(
                f"envelope kdf is nil or a map of exactly {list(_KDF_KEYS)}, name {KDF}"
            )
        if type(kdf["salt"]) is not bytes or not 16 <= len(kdf["salt"]) <= 64:
            raise ManifestSchemaError("scrypt salt is not 16 to 64 bytes")
        _check_kdf_params(kdf["log_n"], kdf["r"], kdf["p"], ManifestSchemaError)
        cost = kdf_bytes(kdf["log_n"], kdf["r"], kdf["p"])
        if cost > limits.max_kdf_bytes:
            raise LimitExceeded(f"scrypt would spend {cost} bytes, above the limit {limits.max_kdf_bytes}")
    return env


def open_envelope(raw: bytes, key: Any, limits: Limits) -> tuple[Sealer, bytes]:
    """The keys of an encrypted file and its manifest bytes [KEY_REQUIRED, WRONG_KEY, DECRYPTION_FAILED]."""
    env = parse_envelope(raw, limits)
    if key is None:
        raise KeyRequired("the file is encrypted: give its key or passphrase")
    k = key_input(key)
    kdf = env["kdf"]
    if isinstance(k, bytes) != (kdf is None):
        raise WrongKey(
            "the file was encrypted with a "
            + ("raw key" if kdf is None else "passphrase")
            + ", not a "
            + ("passphrase" if kdf is None else "raw key")
        )
    master = k if isinstance(k, bytes) else _scrypt(k.text, kdf)
    sealer = Sealer(master, env["file_id"], kdf, env["manifest_encrypted"])
    if not secrets.compare_digest(sealer.key_check, env["key_check"]):
        raise WrongKey("wrong key or passphrase for this file")
    return sealer, sealer.open_manifest(env)
