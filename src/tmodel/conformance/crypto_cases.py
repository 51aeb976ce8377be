"""The cases of signed and encrypted files (SPEC.md §3.4, §3.5): encrypted files sealed here from SPEC.md
with fixed file ids and nonces, signed ones with the suite's published keys."""

from __future__ import annotations

import copy
import functools
import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import torch

import tmodel
from tmodel.container.digests import ALGORITHMS, BY_ID
from tmodel.container.framing import ENCRYPTED, HEADER_SIZE, TRAILER_SIZE, align, pack_trailer
from tmodel.manifest.encoding import pack_manifest

from .describe import reader_options
from .hostile_cases import H, Hostile
from .surgery import (
    Edit,
    as_older,
    blob_set,
    build,
    header,
    manifest,
    signing_key,
    split,
    tensor_set,
    with_header,
)
from .valid_cases import VALID, Valid

# -- encryption and signatures (SPEC.md §3.4, §3.5) ----------------------------------------------------------
# The suite's published test keys (conformance/README.md). Encrypted cases are sealed here, from SPEC.md
# §3.5, with file ids and nonces derived from fixed labels (the reference writer draws them at random), so
# the corpus stays deterministic; the reference reader opening them (tests/test_cases.py) checks this
# construction against the reference implementation.
TEST_KEY = bytes(range(32))
OTHER_KEY = bytes(range(32, 64))
TEST_PASSPHRASE = "tmodel conformance passphrase"
OTHER_PASSPHRASE = "tmodel conformance other passphrase"
#: scrypt parameters of the suite's passphrase files: 1 MiB, a few milliseconds
TEST_KDF: dict[str, Any] = {"name": "scrypt", "salt": bytes(range(64, 80)), "log_n": 10, "r": 8, "p": 1}
#: Ed25519 signing keys: `signing_key(seed)` for these seeds; 1 and 2 sign `signed`, 3 is nobody's trusted key
SIGNING_SEEDS = (1, 2, 3)
RAW_KEY_READ: dict[str, Any] = {"key": {"hex": TEST_KEY.hex()}}
PASSPHRASE_READ: dict[str, Any] = {"key": {"passphrase": TEST_PASSPHRASE}}
_TAG = 16


def signer_id(seed: int) -> str:
    """The key id (SPEC.md §3.4: SHA-256 of the SubjectPublicKeyInfo DER, hex) of `signing_key(seed)`."""
    from tmodel.archive.signing import key_id

    return key_id(signing_key(seed).public_key())


def load_options(read_with: dict[str, Any]) -> dict[str, Any]:
    """tmodel.load's keyword arguments for a case's read request: trust by the suite's public keys, which
    the API takes where the protocol names key ids."""
    options = reader_options(read_with)
    if "trusted_keys" in options:
        keys = {signer_id(s): signing_key(s).public_key() for s in SIGNING_SEEDS}
        options["trusted_keys"] = [keys[k] for k in options["trusted_keys"]]
    return options


def trusting(*seeds: int) -> dict[str, Any]:
    """A read request's trust: a signature by one of these suite keys required."""
    return {"trusted_keys": [signer_id(s) for s in seeds], "require_signature": True}


def _fixed(label: str, n: int) -> bytes:
    """n bytes named by `label`: where writers draw random ones (file ids, nonces), the suite's are fixed."""
    return hashlib.sha256(b"tmodel conformance " + label.encode()).digest()[:n]


@functools.cache
def passphrase_master(text: str) -> bytes:
    """The master key scrypt derives from `text` with TEST_KDF (SPEC.md §3.5, RFC 7914)."""
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    k = TEST_KDF
    return Scrypt(salt=k["salt"], length=32, n=1 << k["log_n"], r=k["r"], p=k["p"]).derive(text.encode())


def _file_keys(master: bytes, file_id: bytes) -> tuple[bytes, bytes]:
    """(file key, key check) = HKDF-SHA256(master, salt = file_id, info = "tmodel encryption v1", 48)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    okm = HKDF(hashes.SHA256(), 48, salt=file_id, info=b"tmodel encryption v1").derive(master)
    return okm[:32], okm[32:]


def _aead(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


@dataclass
class Sealed:
    """An encrypted file taken apart: its plain manifest, every chunk's stored (sealed) bytes and the
    envelope's fixed fields. `pack` puts it together again as SPEC.md §3.5 says, recomputing blob offsets
    and lengths from the stored bytes, every chunk digest, the manifest's seal and the trailer: an edit
    changes one thing and everything that covers it stays consistent, so the check it targets is reached."""

    wire: dict[str, Any]
    chunks: list[list[bytes]]
    master: bytes
    kdf: dict[str, Any] | None
    file_id: bytes
    manifest_encrypted: bool
    digest_name: str

    @property
    def file_key(self) -> bytes:
        return _file_keys(self.master, self.file_id)[0]

    def _chunk_ad(self, blob: int, j: int) -> tuple[bytes, bytes]:
        b = self.wire["blobs"][blob]
        raw_len = min(b["chunk_size"], b["nbytes"] - j * b["chunk_size"])
        nonce = (int.from_bytes(b["nonce"], "big") ^ j).to_bytes(12, "big")
        ad = b"tmodel chunk v1\x00" + self.file_id + b["nonce"]
        return nonce, ad + struct.pack("<QQB", j, raw_len, b["width"]) + b["codec"].encode()

    def seal_chunk(self, blob: int, j: int, plain: bytes) -> bytes:
        nonce, ad = self._chunk_ad(blob, j)
        return bytes(_aead(self.file_key).encrypt(nonce, plain, ad))

    def open_chunk(self, blob: int, j: int) -> bytes:
        nonce, ad = self._chunk_ad(blob, j)
        return bytes(_aead(self.file_key).decrypt(nonce, self.chunks[blob][j], ad))

    @classmethod
    def seal(
        cls,
        plain: bytes,
        master: bytes,
        kdf: dict[str, Any] | None,
        label: str,
        manifest_encrypted: bool = True,
    ) -> Sealed:
        """A plain file's chunks sealed as they are stored (compressed first), file id and blob nonces
        named by `label`."""
        _, region, wire, algo = split(plain)
        s = cls(wire, [], master, kdf, _fixed(label + " file_id", 16), manifest_encrypted, algo)
        for i, b in enumerate(wire["blobs"]):
            b["nonce"] = _fixed(f"{label} blob {i} nonce", 12)
            pos = b["offset"] - HEADER_SIZE
            stored = []
            for j, c in enumerate(b["chunks"]):
                n = sum(c["segments"])
                stored.append(s.seal_chunk(i, j, region[pos : pos + n]))
                pos += n
            s.chunks.append(stored)
        return s

    @classmethod
    def open(cls, data: bytes, master: bytes) -> Sealed:
        """An encrypted file of the suite taken apart with its master key."""
        off, ln, algo, sl = struct.unpack_from("<QQHI", data, len(data) - TRAILER_SIZE)
        assert sl == 0, "signed encrypted files are not taken apart"
        env = msgpack.unpackb(data[off : off + ln], raw=False)
        key = _file_keys(master, env["file_id"])[0]
        ad = b"tmodel manifest v1\x00" + env["file_id"] + bytes([env["manifest_encrypted"]])
        if env["manifest_encrypted"]:
            raw_manifest = _aead(key).decrypt(env["nonce"], env["manifest"] + env["tag"], ad)
        else:
            _aead(key).decrypt(env["nonce"], env["tag"], ad + env["manifest"])
            raw_manifest = env["manifest"]
        wire = msgpack.unpackb(raw_manifest, raw=False, strict_map_key=False)
        chunks = []
        for b in wire["blobs"]:
            pos, stored = b["offset"], []
            for c in b["chunks"]:
                n = sum(c["segments"]) + _TAG
                stored.append(data[pos : pos + n])
                pos += n
            chunks.append(stored)
        return cls(wire, chunks, master, env["kdf"], env["file_id"], env["manifest_encrypted"], BY_ID[algo])

    def rekeyed(self, master: bytes | None = None, file_id: bytes | None = None) -> Sealed:
        """The same file under another master key or file id: every chunk opened and sealed again."""
        plain = [[self.open_chunk(i, j) for j in range(len(c))] for i, c in enumerate(self.chunks)]
        s = copy.deepcopy(self)
        s.master = self.master if master is None else master
        s.file_id = self.file_id if file_id is None else file_id
        s.chunks = [[s.seal_chunk(i, j, p) for j, p in enumerate(c)] for i, c in enumerate(plain)]
        return s

    def envelope(self, manifest: bytes) -> dict[str, Any]:
        """The envelope of a manifest, its keys in the order of SPEC.md §3.5's table; the manifest's nonce
        named by the manifest (a manifest sealed again gets another)."""
        nonce = hashlib.sha256(b"tmodel conformance manifest nonce" + self.file_id + manifest).digest()[:12]
        ad = b"tmodel manifest v1\x00" + self.file_id + bytes([self.manifest_encrypted])
        if self.manifest_encrypted:
            sealed = _aead(self.file_key).encrypt(nonce, manifest, ad)
            body, tag = sealed[:-_TAG], sealed[-_TAG:]
        else:
            body, tag = manifest, _aead(self.file_key).encrypt(nonce, b"", ad + manifest)
        return {
            "cipher": "aes-256-gcm",
            "file_id": self.file_id,
            "kdf": self.kdf,
            "key_check": _file_keys(self.master, self.file_id)[1],
            "manifest": body,
            "manifest_encrypted": self.manifest_encrypted,
            "nonce": nonce,
            "tag": tag,
        }

    def pack(self, edit: Callable[[dict[str, Any]], None] | None = None) -> bytes:
        """The file: blobs packed, digests, the sealed manifest (then `edit` applied to the envelope) and
        the trailer recomputed."""
        digest = ALGORITHMS[self.wire["checksum"]][2]
        region = b""
        for b, stored in zip(self.wire["blobs"], self.chunks, strict=True):
            b["offset"] = HEADER_SIZE + len(region)
            b["length"] = sum(map(len, stored))
            for c, chunk in zip(b["chunks"], stored, strict=True):
                c["digest"] = digest(chunk)
            region += b"".join(stored)
            region += bytes(align(HEADER_SIZE + len(region)) - HEADER_SIZE - len(region))
        env = self.envelope(pack_manifest(self.wire))
        if edit is not None:
            edit(env)
        return build(header(flags=ENCRYPTED), region, env, self.digest_name)


def _combine(a: bytes, b: bytes) -> bytes:
    """Two flat state-dict files of one checksum as one: b's blobs after a's, its tensors after a's, the
    root a dict of both (the reference writer takes one codec per file)."""
    ha, ra, wa, algo = split(a)
    _, rb, wb, algo_b = split(b)
    assert algo == algo_b and wa["checksum"] == wb["checksum"]
    nb, nt = len(wa["blobs"]), len(wa["tensors"])
    for blob in wb["blobs"]:
        blob["offset"] += len(ra)
    for t in wb["tensors"]:
        t["blob"] += nb
    wa["blobs"] += wb["blobs"]
    wa["tensors"] += wb["tensors"]
    wa["root"]["dict"] += [[k, {"tensor": v["tensor"] + nt}] for k, v in wb["root"]["dict"]]
    return build(ha, ra + rb, wa, algo)


def mixed(checksum: str = "xxh3-64") -> bytes:
    """The plain file the encrypted cases seal. Blobs (chunk size 256): 0 `w` float32, bytegroup-zstd,
    4 chunks; 1 `v` float32, bytegroup-zstd, 2 chunks; 2 `ids` int64, bytegroup-zstd, 2 chunks of
    different lengths; 3 `mask` bool, zstd; 4 `pixels` uint8, raw, 2 chunks; 5 `half` float16, raw, 2
    chunks; metadata."""
    g = torch.Generator().manual_seed(16)
    first = {
        "w": torch.arange(256, dtype=torch.float32) / 7,
        "v": torch.randn(128, generator=g),
        "ids": torch.arange(40, dtype=torch.int64) * 1000,
        "mask": torch.arange(100) % 3 == 0,
    }
    second = {
        "pixels": (torch.arange(300) * 7 % 256).to(torch.uint8),
        "half": torch.randn(200, generator=g).to(torch.float16),
    }
    options: dict[str, Any] = {"chunk_size": 256, "checksum": checksum}
    meta = {"purpose": "conformance", "step": 3}
    a = tmodel.save_bytes(first, metadata=meta, **options)
    return _combine(a, tmodel.save_bytes(second, codec="raw", **options))


@dataclass(frozen=True)
class Built:
    """A valid case whose file make_cases writes itself (`build(path)`), read with `read_with`."""

    build: Callable[[Path], None]
    spec: str
    description: str
    read_with: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    tier: str = "MUST"


def _write_sealed(
    master: bytes, kdf: dict[str, Any] | None, label: str, **options: Any
) -> Callable[[Path], None]:
    def run(path: Path) -> None:
        path.write_bytes(Sealed.seal(mixed(), master, kdf, label, **options).pack())

    return run


def _signed_encrypted(path: Path) -> None:
    path.write_bytes(Sealed.seal(mixed("blake3"), TEST_KEY, None, "signed_encrypted").pack())
    tmodel.sign_file(path, signing_key(1), decryption_key=TEST_KEY)


def _signed_twice(path: Path) -> None:
    v = VALID["signed"]
    assert isinstance(v, Valid)
    tmodel.save(v.make(), path, checksum="blake3", sign_with=signing_key(1))
    tmodel.sign_file(path, signing_key(2))


CRYPTO_VALID: dict[str, Built] = {
    "encrypted": Built(
        _write_sealed(TEST_KEY, None, "encrypted"),
        "§3.5, §5.1",
        "(schema 6) encrypted with the raw test key, manifest encrypted: float32 and int64 blobs "
        "(bytegroup-zstd), a bool blob (zstd), uint8 and float16 blobs (raw), most of several chunks",
        RAW_KEY_READ,
    ),
    "encrypted_passphrase": Built(
        _write_sealed(passphrase_master(TEST_PASSPHRASE), TEST_KDF, "encrypted_passphrase"),
        "§3.5",
        "(schema 6) the file of `encrypted`, encrypted with the test passphrase (scrypt log_n 10, r 8, p 1)",
        PASSPHRASE_READ,
    ),
    "encrypted_readable_manifest": Built(
        _write_sealed(TEST_KEY, None, "encrypted_readable_manifest", manifest_encrypted=False),
        "§3.5",
        "(schema 6) the file of `encrypted`, its manifest left readable (authenticated by its tag)",
        RAW_KEY_READ,
    ),
    "signed_encrypted": Built(
        _signed_encrypted,
        "§3.4, §3.5",
        "(schema 6) the file of `encrypted` with blake3 digests, encrypted with the raw test key, then "
        "signed (Ed25519, suite key 1) over its envelope as stored",
        RAW_KEY_READ,
    ),
    "signed_trusted": Built(
        _signed_twice,
        "§3.4",
        "(schema 6) the file of `signed`, read requiring a signature by suite key 1 (which signed it)",
        trusting(1),
        ("signatures",),
        "SHOULD",
    ),
}


def sealed(
    master: bytes,
    change: Callable[[Sealed], Sealed | None],
    envelope: Callable[[dict[str, Any]], None] | None = None,
) -> Edit:
    """Take an encrypted file apart with its master key, change it (`change` may return a new Sealed),
    put it together again with `envelope` applied to the new envelope."""

    def edit(data: bytes) -> bytes:
        s = Sealed.open(data, master)
        out = change(s)
        return (s if out is None else out).pack(envelope)

    return edit


def _same(s: Sealed) -> None:
    return None


def _flip_chunk(blob: int, j: int) -> Callable[[Sealed], None]:
    def change(s: Sealed) -> None:
        c = bytearray(s.chunks[blob][j])
        c[0] ^= 0x01
        s.chunks[blob][j] = bytes(c)

    return change


def _swap_chunks(s: Sealed) -> None:
    s.chunks[0][0], s.chunks[0][1] = s.chunks[0][1], s.chunks[0][0]
    entries = s.wire["blobs"][0]["chunks"]
    entries[0], entries[1] = entries[1], entries[0]


def _chunk_from_blob_1(s: Sealed) -> None:
    s.chunks[0][0] = s.chunks[1][0]
    s.wire["blobs"][0]["chunks"][0]["segments"] = list(s.wire["blobs"][1]["chunks"][0]["segments"])


def _chunk_from_other_file(s: Sealed) -> None:
    other = s.rekeyed(file_id=_fixed("encrypted, another file file_id", 16))
    s.chunks[0][0] = other.chunks[0][0]


def _cut_tag(s: Sealed) -> None:
    s.chunks[4][-1] = s.chunks[4][-1][:-_TAG]


def _flip_sealed_manifest(env: dict[str, Any]) -> None:
    body = bytearray(env["manifest"])
    body[0] ^= 0x01
    env["manifest"] = bytes(body)


def _rename_in_readable_manifest(env: dict[str, Any]) -> None:
    wire = msgpack.unpackb(env["manifest"], raw=False, strict_map_key=False)
    assert wire["tensors"][0]["name"] == "w"
    wire["tensors"][0]["name"] = "x"
    env["manifest"] = pack_manifest(wire)


def _drop_nonce(s: Sealed) -> None:
    del s.wire["blobs"][0]["nonce"]


def _schema_5(s: Sealed) -> None:
    as_older(s.wire, 5)


def _kdf_cost(env: dict[str, Any]) -> None:
    env["kdf"] = {**env["kdf"], "p": 1 << 20}


def _signed_parts(data: bytes) -> tuple[bytes, bytes, dict[str, Any], str, bytes]:
    """(header, blob region, decoded manifest, digest name, signature block) of a signed file."""
    off, ln, algo, sl = struct.unpack_from("<QQHI", data, len(data) - TRAILER_SIZE)
    wire = msgpack.unpackb(data[off : off + ln], raw=False, strict_map_key=False)
    return data[:HEADER_SIZE], data[HEADER_SIZE:off], wire, BY_ID[algo], data[off + ln : off + ln + sl]


def _with_block(h: bytes, region: bytes, raw: bytes, algo: str, block: bytes) -> bytes:
    """A signed file from its parts, the trailer digest recomputed (over the block too)."""
    off = HEADER_SIZE + len(region)
    return h + region + raw + block + pack_trailer(off, raw, algo, h, block)


def _block_over(raw: bytes, content_size: int, *seeds: int) -> bytes:
    from tmodel.archive.signing import pack_block, sign

    return pack_block([sign(signing_key(s), raw, content_size) for s in seeds])


def signed_manifest(mutate: Callable[[dict[str, Any]], None]) -> Edit:
    """Change a signed file's decoded manifest, re-encode it, keep its signature block, recompute the
    trailer digest."""

    def edit(data: bytes) -> bytes:
        h, region, wire, algo, block = _signed_parts(data)
        mutate(wire)
        return _with_block(h, region, pack_manifest(wire), algo, block)

    return edit


def _signed_b_changed(data: bytes) -> bytes:
    """signed's blob 1 (tensor b, int64 [0..4], bytegroup-zstd, one chunk) stored anew as the raw byte
    planes of [0, 1, 2, 3, 5], its chunk digest, the manifest and the trailer digest recomputed."""
    h, region, wire, algo, block = _signed_parts(data)
    b = wire["blobs"][1]
    assert b["codec"] == "bytegroup-zstd" and b["width"] == 8 and b["nbytes"] == 40 and len(b["chunks"]) == 1
    values = np.array([0, 1, 2, 3, 5], dtype="<i8").view(np.uint8).reshape(5, 8)
    stored = values.T.tobytes()  # 8 planes of 5 bytes, each stored raw (a segment as long as its plane)
    b["length"] = len(stored)
    b["chunks"][0] = {"digest": ALGORITHMS[wire["checksum"]][2](stored), "segments": [5] * 8}
    region = region[: b["offset"] - HEADER_SIZE] + stored
    region += bytes(align(HEADER_SIZE + len(region)) - HEADER_SIZE - len(region))
    return _with_block(h, region, pack_manifest(wire), algo, block)


def _signature_of_other_file(data: bytes) -> bytes:
    h, region, wire, algo, _ = _signed_parts(data)
    raw = pack_manifest(wire)
    other = dict(wire, metadata={"other": "file"})
    other_raw = pack_manifest(other)
    block = _block_over(other_raw, HEADER_SIZE + len(region) + len(other_raw), 1, 2)
    return _with_block(h, region, raw, algo, block)


def _resigned_by_3(data: bytes) -> bytes:
    h, region, wire, algo, _ = _signed_parts(data)
    raw = pack_manifest(wire)
    return _with_block(h, region, raw, algo, _block_over(raw, HEADER_SIZE + len(region) + len(raw), 3))


def _unsigned(data: bytes) -> bytes:
    _, region, wire, algo, _ = _signed_parts(data)
    return build(header(), region, wire, algo)


_PASS = passphrase_master(TEST_PASSPHRASE)

CRYPTO_HOSTILE: dict[str, Hostile] = {
    # 32 -- key confusion
    "encrypted_wrong_key": H(
        "encrypted",
        32,
        sealed(TEST_KEY, lambda s: s.rekeyed(master=OTHER_KEY)),
        "encrypted under the other raw test key (file id and nonces kept); read with the test key",
        ("WRONG_KEY",),
        "§3.5",
        "(schema 6) a raw key that does not open the file",
    ),
    "encrypted_wrong_passphrase": H(
        "encrypted_passphrase",
        32,
        sealed(_PASS, lambda s: s.rekeyed(master=passphrase_master(OTHER_PASSPHRASE))),
        "encrypted under the other test passphrase (salt, scrypt parameters, file id and nonces kept); "
        "read with the test passphrase",
        ("WRONG_KEY",),
        "§3.5",
        "(schema 6) a passphrase that does not open the file",
    ),
    "encrypted_raw_key_for_passphrase": H(
        "encrypted_passphrase",
        32,
        lambda d: d,
        "the read request gives the raw test key instead of the passphrase (the file is the sibling's)",
        ("WRONG_KEY",),
        "§3.5",
        "(schema 6) a raw key for a file whose key derives from a passphrase",
        read_with=RAW_KEY_READ,
    ),
    "encrypted_passphrase_for_raw_key": H(
        "encrypted",
        32,
        lambda d: d,
        "the read request gives the test passphrase instead of the raw key (the file is the sibling's)",
        ("WRONG_KEY",),
        "§3.5",
        "(schema 6) a passphrase for a file encrypted with a raw key",
        read_with=PASSPHRASE_READ,
    ),
    "encrypted_no_key": H(
        "encrypted",
        32,
        lambda d: d,
        "the read request gives no key (the file is the sibling's)",
        ("KEY_REQUIRED",),
        "§3.5, §10",
        "(schema 6) an encrypted file read without its key: refused before anything of it is read",
        read_with={},
    ),
    # 33 -- ciphertext tampering
    "encrypted_chunk_flipped": H(
        "encrypted",
        33,
        sealed(TEST_KEY, _flip_chunk(0, 1)),
        "blob 0 chunk 1: bit 0 of its first stored byte flipped, its chunk digest recomputed in the "
        "manifest, sealed again",
        ("DECRYPTION_FAILED",),
        "§3.5",
        "(schema 6) a changed sealed chunk whose digest matches: only its tag tells",
    ),
    "encrypted_manifest_flipped": H(
        "encrypted",
        33,
        sealed(TEST_KEY, _same, _flip_sealed_manifest),
        "envelope manifest: bit 0 of its first byte flipped (trailer digest recomputed)",
        ("DECRYPTION_FAILED",),
        "§3.5",
        "(schema 6) a changed encrypted manifest",
    ),
    "readable_manifest_changed": H(
        "encrypted_readable_manifest",
        33,
        sealed(TEST_KEY, _same, _rename_in_readable_manifest),
        "envelope manifest (readable): tensor 0's name 'w' -> 'x', the tag kept (trailer digest recomputed)",
        ("DECRYPTION_FAILED",),
        "§3.5",
        "(schema 6) a readable manifest changed into another valid one: its tag still refuses it",
    ),
    "encrypted_chunks_swapped": H(
        "encrypted",
        33,
        sealed(TEST_KEY, _swap_chunks),
        "blob 0: chunks 0 and 1 (256 decoded bytes each) swapped with their manifest entries, sealed again",
        ("DECRYPTION_FAILED",),
        "§3.5",
        "(schema 6) chunks reordered within their blob, digests consistent",
    ),
    "encrypted_chunk_from_other_blob": H(
        "encrypted",
        33,
        sealed(TEST_KEY, _chunk_from_blob_1),
        "blob 0 chunk 0 -> blob 1 chunk 0 (same codec, width and decoded length; its segments and "
        "digest copied), sealed again",
        ("DECRYPTION_FAILED",),
        "§3.5",
        "(schema 6) a chunk moved from another blob of the file",
    ),
    "encrypted_chunk_from_other_file": H(
        "encrypted",
        33,
        sealed(TEST_KEY, _chunk_from_other_file),
        "blob 0 chunk 0 -> that chunk of the same file encrypted with the same key and nonces under "
        "another file id, sealed again",
        ("DECRYPTION_FAILED",),
        "§3.5",
        "(schema 6) a chunk moved from another file of the same key",
    ),
    "encrypted_blob_truncated": H(
        "encrypted",
        33,
        sealed(TEST_KEY, _cut_tag),
        "blob 4 (raw): its last chunk's 16-byte tag cut off, the blob's length and chunk digest "
        "recomputed, sealed again",
        ("BAD_LAYOUT",),
        "§3.5, §5.1",
        "(schema 6) a blob cut short, consistently described: its length misses a tag",
    ),
    # 34 -- key derivation DoS
    "encrypted_kdf_cost_over_limit": H(
        "encrypted_passphrase",
        34,
        sealed(_PASS, _same, _kdf_cost),
        "envelope kdf p 1 -> 2^20 (128 * 2^10 * 8 * 2^20 bytes = 1 TiB of scrypt work, above "
        "max_kdf_bytes; trailer digest recomputed)",
        ("LIMIT_EXCEEDED",),
        "§3.5, §8",
        "(schema 6) scrypt parameters beyond max_kdf_bytes: refused before scrypt runs (it would run "
        "for hours in 1 MiB)",
    ),
    # 35 -- encryption downgrade
    "envelope_unknown_key": H(
        "encrypted",
        35,
        sealed(TEST_KEY, _same, lambda env: env.update(compression="none")),
        "envelope: a key 'compression' added (trailer digest recomputed)",
        ("MANIFEST_SCHEMA",),
        "§3.5",
        "(schema 6) an envelope with a key SPEC.md does not define",
    ),
    "envelope_nonce_short": H(
        "encrypted",
        35,
        sealed(TEST_KEY, _same, lambda env: env.update(nonce=env["nonce"][:11])),
        "envelope nonce: its last byte dropped (11 bytes; trailer digest recomputed)",
        ("MANIFEST_SCHEMA",),
        "§3.5",
        "(schema 6) an envelope nonce of the wrong size",
    ),
    "envelope_manifest_encrypted_false": H(
        "encrypted",
        35,
        sealed(TEST_KEY, _same, lambda env: env.update(manifest_encrypted=False)),
        "envelope manifest_encrypted true -> false, the sealed manifest kept (trailer digest recomputed)",
        ("DECRYPTION_FAILED",),
        "§3.5",
        "(schema 6) an encrypted manifest declared readable: the tag binds the flag",
    ),
    "encrypted_blob_without_nonce": H(
        "encrypted",
        35,
        sealed(TEST_KEY, _drop_nonce),
        "blob 0: its nonce removed from the manifest, sealed again",
        ("MANIFEST_SCHEMA",),
        "§3.5, §5.1",
        "(schema 6) a blob of an encrypted file without a nonce (as if stored in the clear)",
    ),
    "plain_blob_with_nonce": H(
        "base",
        35,
        manifest(blob_set(0, "nonce", bytes(12))),
        "blob 0: a nonce of 12 zero bytes added",
        ("MANIFEST_SCHEMA",),
        "§5.1",
        "(schema 6) a blob nonce in a file that is not encrypted",
    ),
    "encrypted_flag_cleared": H(
        "encrypted",
        35,
        with_header(header(flags=0)),
        "header required_flags ENCRYPTED -> 0 (trailer digest recomputed): the envelope read as a manifest",
        ("MANIFEST_SCHEMA",),
        "§3.1, §3.5, §5",
        "(schema 6) an encrypted file without its flag: its envelope is no manifest",
    ),
    "encrypted_schema_5": H(
        "encrypted",
        35,
        sealed(TEST_KEY, _schema_5),
        "sealed manifest: schema_version 6 -> 5 (the key 'checkpoint' dropped), sealed again",
        ("UNSUPPORTED_VERSION",),
        "§3.5, §12",
        "(schema 6) an encrypted file whose manifest is of a schema version before encryption",
    ),
    # 20 -- integrity: signatures that do not verify or are not by a trusted key
    "signed_chunk_changed": H(
        "signed",
        20,
        _signed_b_changed,
        "tensor b's last element 4 -> 5: blob 1 stored anew (raw planes), its chunk digest, the manifest "
        "and the trailer digest recomputed, the signature block kept",
        ("BAD_SIGNATURE",),
        "§3.4, §7",
        "(schema 6) changed blob bytes whose every digest matches: only the signatures tell",
        tier="SHOULD",
        requires=("signatures",),
    ),
    "signed_manifest_changed": H(
        "signed",
        20,
        signed_manifest(tensor_set(1, "shape", [4])),
        "tensor b's shape [5] -> [4] (the manifest and the trailer digest recomputed, the signature block "
        "kept)",
        ("BAD_SIGNATURE",),
        "§3.4",
        "(schema 6) a changed manifest whose digest matches: only the signatures tell",
        tier="SHOULD",
        requires=("signatures",),
    ),
    "signature_from_other_file": H(
        "signed",
        20,
        _signature_of_other_file,
        "signature block -> the one suite keys 1 and 2 give a manifest whose metadata differs (trailer "
        "digest recomputed)",
        ("BAD_SIGNATURE",),
        "§3.4",
        "(schema 6) well-formed signatures by the right keys over another file",
        tier="SHOULD",
        requires=("signatures",),
    ),
    "signature_untrusted": H(
        "signed_trusted",
        20,
        lambda d: d,
        "the read request trusts suite key 3 instead of key 1 (the file is the sibling's)",
        ("SIGNATURE_REQUIRED",),
        "§3.4, §10",
        "(schema 6) valid signatures, none by a key the caller trusts",
        tier="SHOULD",
        read_with=trusting(3),
        requires=("signatures",),
    ),
    "signature_stripped": H(
        "signed_trusted",
        20,
        _unsigned,
        "signature block removed, header flag SIGNED cleared (trailer digest recomputed)",
        ("SIGNATURE_REQUIRED",),
        "§3.4, §10",
        "(schema 6) a signed file with its signatures stripped, read requiring one",
        tier="SHOULD",
        requires=("signatures",),
    ),
    "signature_replaced": H(
        "signed_trusted",
        20,
        _resigned_by_3,
        "signature block -> one valid signature by suite key 3 (trailer digest recomputed)",
        ("SIGNATURE_REQUIRED",),
        "§3.4, §10",
        "(schema 6) a file re-signed by someone else, read requiring a trusted signature",
        tier="SHOULD",
        requires=("signatures",),
    ),
}
