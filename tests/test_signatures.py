"""Embedded signatures (SPEC.md §3.4, issue 16 point 2): Ed25519 and ECDSA P-256, several per file, added
without touching blobs or manifest, every one verified on open (an invalid one is BAD_SIGNATURE), trust by
key id (SIGNATURE_REQUIRED), PEM and OpenSSH keys, and the CLI's keygen / sign / verify."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import msgpack
import pytest
import torch
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import tmodel
from tmodel.cli.main import main
from tmodel.container.digests import digest_function
from tmodel.container.framing import HEADER_SIZE, TRAILER_SIZE, pack_trailer
from tmodel.errors import TModelError
from tmodel.manifest.encoding import pack_manifest


def _code(fn: object) -> str:
    with pytest.raises(TModelError) as err:
        fn()  # type: ignore[operator]
    return err.value.code


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    tmodel.keygen(tmp_path / "alice")
    tmodel.keygen(tmp_path / "bob", "ecdsa-p256")
    return {"alice": tmp_path / "alice", "bob": tmp_path / "bob"}


def _parts(data: bytes) -> tuple[int, int, int, int]:
    return struct.unpack_from("<QQHI", data, len(data) - TRAILER_SIZE)


def _reframe(data: bytes, manifest: bytes | None = None, block: bytes | None = None) -> bytes:
    """The file with its manifest and/or signature block replaced, the trailer digest recomputed."""
    off, ln, _, sl = _parts(data)
    manifest = data[off : off + ln] if manifest is None else manifest
    block = data[off + ln : off + ln + sl] if block is None else block
    header = data[:HEADER_SIZE]
    return data[:off] + manifest + block + pack_trailer(off, manifest, "blake3", header, block)


def test_save_signed_load_trusted_and_required(tmp_path: Path, keys: dict[str, Path]) -> None:
    path = tmp_path / "m.tmodel"
    obj = {"w": torch.randn(64, 64), "step": 3}
    tmodel.save(obj, path, sign_with=keys["alice"])
    (sig,) = tmodel.signatures(path)
    pub = serialization.load_pem_public_key((tmp_path / "alice.pub").read_bytes())
    spki = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert sig.algorithm == "ed25519" and sig.key_id == hashlib.sha256(spki).hexdigest()
    back = tmodel.load(path, trusted_keys=[tmp_path / "alice.pub"], require_signature=True)
    assert torch.equal(back["w"], obj["w"])
    with tmodel.open(path) as f:
        assert f.reader.manifest.checksum == "blake3" and f.signatures == [sig]
    assert _code(lambda: tmodel.load(path, trusted_keys=[tmp_path / "bob.pub"], require_signature=True)) == (
        "SIGNATURE_REQUIRED"
    )
    assert _code(lambda: tmodel.load(path, require_signature=True)) == "INVALID_ARGUMENT"
    plain = tmp_path / "plain.tmodel"
    tmodel.save(obj, plain)
    assert tmodel.signatures(plain) == []
    assert _code(lambda: tmodel.open(plain, trusted_keys=[keys["alice"]], require_signature=True)) == (
        "SIGNATURE_REQUIRED"
    )


def test_adding_a_signature_keeps_blobs_and_manifest_byte_for_byte(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    path = tmp_path / "m.tmodel"
    tmodel.save({"w": torch.randn(1000)}, path, sign_with=keys["alice"])
    before = path.read_bytes()
    sig = tmodel.sign_file(path, keys["bob"])
    after = path.read_bytes()
    off, ln, _, _ = _parts(before)
    assert after[HEADER_SIZE : off + ln] == before[HEADER_SIZE : off + ln]  # blobs and manifest as they were
    assert sig.algorithm == "ecdsa-p256"
    assert [s.algorithm for s in tmodel.signatures(path)] == ["ed25519", "ecdsa-p256"]
    assert tmodel.load(path, trusted_keys=[keys["bob"]], require_signature=True)["w"].shape == (1000,)
    assert _code(lambda: tmodel.sign_file(path, keys["bob"])) == "INVALID_ARGUMENT"  # signed by it already
    unsigned = tmp_path / "u.tmodel"
    tmodel.save({"w": torch.ones(2)}, unsigned, checksum="sha256")
    tmodel.sign_file(unsigned, keys["alice"])
    assert tmodel.load(unsigned, trusted_keys=[keys["alice"]], require_signature=True)["w"].tolist() == [1, 1]


def test_signing_needs_cryptographic_digests(tmp_path: Path, keys: dict[str, Path]) -> None:
    path = tmp_path / "x.tmodel"
    tmodel.save({"w": torch.ones(2)}, path)  # xxh3-64
    assert _code(lambda: tmodel.sign_file(path, keys["alice"])) == "INVALID_ARGUMENT"
    assert _code(
        lambda: tmodel.save({"w": torch.ones(2)}, path, sign_with=keys["alice"], checksum="xxh3-64")
    ) == ("INVALID_ARGUMENT")


def test_any_change_to_a_signed_file_is_caught(tmp_path: Path, keys: dict[str, Path]) -> None:
    path = tmp_path / "m.tmodel"
    tmodel.save({"w": torch.arange(4096, dtype=torch.float32)}, path, sign_with=keys["alice"], codec="raw")
    data = path.read_bytes()
    off, ln, _, sl = _parts(data)
    wire = msgpack.unpackb(data[off : off + ln], raw=False)
    # 1. new metadata, every digest recomputed: the manifest is not what was signed
    edited = dict(wire, metadata={"evil": 1})
    (tmp_path / "a.tmodel").write_bytes(_reframe(data, pack_manifest(edited)))
    # 2. a changed tensor value with its chunk digest recomputed: the manifest changes with the digest
    blob = wire["blobs"][0]
    body = bytearray(data)
    body[blob["offset"]] ^= 0x40
    seg = bytes(body[blob["offset"] : blob["offset"] + blob["chunks"][0]["segments"][0]])
    blob["chunks"][0]["digest"] = digest_function("blake3")(seg)
    (tmp_path / "b.tmodel").write_bytes(_reframe(bytes(body), pack_manifest(wire)))
    # 3. a flipped signature byte
    block = bytearray(data[off + ln : off + ln + sl])
    block[-1] ^= 0x01
    (tmp_path / "c.tmodel").write_bytes(_reframe(data, block=bytes(block)))
    for name in ("a", "b", "c"):
        assert _code(lambda name=name: tmodel.load(tmp_path / f"{name}.tmodel")) == "BAD_SIGNATURE", name
    # 4. the block dropped, the flag kept: the layout says a block is missing
    header = bytearray(data[:HEADER_SIZE])
    assert header[12] == 1
    stripped = data[: off + ln] + pack_trailer(off, data[off : off + ln], "blake3", bytes(header))
    (tmp_path / "d.tmodel").write_bytes(stripped)
    assert _code(lambda: tmodel.load(tmp_path / "d.tmodel")) == "BAD_LAYOUT"


def test_malformed_blocks_are_bad_signatures(tmp_path: Path, keys: dict[str, Path]) -> None:
    path = tmp_path / "m.tmodel"
    tmodel.save({"w": torch.ones(3)}, path, sign_with=keys["alice"])
    data = path.read_bytes()
    off, ln, _, sl = _parts(data)
    (entry,) = msgpack.unpackb(data[off + ln : off + ln + sl], raw=False)
    cases = {
        "empty": [],
        "key id": [dict(entry, key_id=bytes(32))],
        "twice": [entry, entry],
        "algorithm": [dict(entry, algorithm="rsa")],
        "extra key": [dict(entry, note="x")],
    }
    for name, entries in cases.items():
        bad = tmp_path / f"{name}.tmodel"
        bad.write_bytes(_reframe(data, block=pack_manifest(entries)))
        assert _code(lambda bad=bad: tmodel.open(bad)) == "BAD_SIGNATURE", name


def test_openssh_keys_sign_and_are_trusted(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    (tmp_path / "id").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    (tmp_path / "id.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    path = tmp_path / "m.tmodel"
    tmodel.save({"w": torch.ones(2)}, path, sign_with=tmp_path / "id")
    assert tmodel.load(path, trusted_keys=[tmp_path / "id.pub"], require_signature=True)["w"].shape == (2,)
    again = tmp_path / "n.tmodel"
    tmodel.save({"w": torch.ones(2)}, again, sign_with=key)
    assert again.read_bytes() == path.read_bytes()  # Ed25519 is deterministic: the same file


def test_cli_keygen_sign_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", str(tmp_path / "k")]) == 0
    kid = capsys.readouterr().out.split("key id ")[1].strip()
    path = tmp_path / "m.tmodel"
    tmodel.save({"w": torch.ones(2)}, path, checksum="blake3")
    assert main(["sign", str(path), "--key", str(tmp_path / "k")]) == 0
    assert capsys.readouterr().out == f"signed: {path} (ed25519, key {kid})\n"
    assert main(["verify", str(path), "--trusted-key", str(tmp_path / "k.pub")]) == 0
    assert capsys.readouterr().out == (
        f"signature: valid, ed25519, key {kid} (trusted)\n"
        f"ok: {path} (1 tensors, 8 bytes checked, 1 valid signature)\n"
    )
    assert main(["keygen", str(tmp_path / "other")]) == 0
    capsys.readouterr()
    assert main(["verify", str(path), "--trusted-key", str(tmp_path / "other.pub")]) == 1
    assert capsys.readouterr().err.startswith("error[SIGNATURE_REQUIRED]: ")
    assert main(["keygen", str(tmp_path / "k")]) == 1  # never overwrites a key
    assert capsys.readouterr().err.startswith("error[INVALID_ARGUMENT]: ")


def test_migrating_a_signed_file_says_the_result_is_unsigned(tmp_path: Path, keys: dict[str, Path]) -> None:
    from torch import nn

    from tmodel.nn import registry, steps

    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

    registry.register("signed.Scale", version=1)(Scale)
    try:
        path = tmp_path / "s.tmodel"
        tmodel.save(Scale(), path, sign_with=keys["alice"])
        registry.unregister("signed.Scale")
        registry.register("signed.Scale", version=2)(Scale)
        steps.migration("signed.Scale", from_version=1)(lambda rec: None)
        lines = tmodel.migrate_file(path, tmp_path / "out.tmodel")
        assert lines[-1] == "note: the migrated file is unsigned (its manifest changed): tmodel sign it again"
        assert tmodel.signatures(tmp_path / "out.tmodel") == []
    finally:
        registry.unregister("signed.Scale")
        steps.unregister_steps("signed.Scale")


def test_every_loader_checks_trust(tmp_path: Path, keys: dict[str, Path]) -> None:
    from torch import nn

    model = nn.Linear(2, 2)
    path = tmp_path / "m.tmodel"
    tmodel.save({"model": model}, path, sign_with=keys["alice"])
    data = path.read_bytes()
    good, bad = {"trusted_keys": [keys["alice"]]}, {"trusted_keys": [keys["bob"]]}
    loaders = {
        "load": lambda kw: tmodel.load(path, require_signature=True, **kw),
        "load_bytes": lambda kw: tmodel.load_bytes(data, require_signature=True, **kw),
        "load_into": lambda kw: tmodel.load_into(
            nn.Linear(2, 2), path, key="model", require_signature=True, **kw
        ),
        "load_checkpoint": lambda kw: tmodel.load_checkpoint(path, require_signature=True, **kw),
        "open": lambda kw: tmodel.open(path, require_signature=True, **kw).close(),
    }
    for name, run in loaders.items():
        run(good)
        assert _code(lambda run=run: run(bad)) == "SIGNATURE_REQUIRED", name


def test_only_signed_files_and_signing_import_cryptography(tmp_path: Path) -> None:
    """Saving, loading and opening unsigned files imports no cryptography (a first call pays for what it
    uses); a signed file's signatures, or a required signature, import it."""
    import subprocess
    import sys

    plain, signed = tmp_path / "plain.tmodel", tmp_path / "signed.tmodel"
    tmodel.save({"w": torch.arange(4.0)}, signed, sign_with=ed25519.Ed25519PrivateKey.generate())
    code = (
        "import sys, torch, tmodel\n"
        f"tmodel.save({{'w': torch.arange(4.0)}}, {str(plain)!r}, checksum='blake3')\n"
        f"tmodel.load({str(plain)!r})\n"
        f"with tmodel.open({str(plain)!r}) as f: f.get_tensor('w')\n"
        "print('cryptography' in sys.modules)\n"
        f"tmodel.load({str(signed)!r})\n"
        "print('cryptography' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
