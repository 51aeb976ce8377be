"""Encryption at rest (SPEC.md §3.5, issue 16 point 3): AES-256-GCM per chunk after compression, the
manifest always authenticated and encrypted unless asked otherwise, raw keys and scrypt passphrases, a
wrong key or any change a coded error (never garbage), migrate keeping sealed blobs byte for byte, and the
CLI's keygen / encrypt / decrypt."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import tmodel
from tmodel.archive.encryption import Sealer, open_envelope, parse_envelope
from tmodel.cli.main import main
from tmodel.container.digests import digest_function
from tmodel.container.framing import ENCRYPTED, HEADER_SIZE, TAG_SIZE, TRAILER_SIZE, align, pack_trailer
from tmodel.errors import TModelError
from tmodel.limits import DEFAULT_LIMITS
from tmodel.manifest.encoding import pack_manifest

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
FAST = tmodel.Passphrase("correct horse", log_n=10)  # scrypt small enough for tests


def _code(fn: Any) -> str:
    with pytest.raises(TModelError) as err:
        fn()
    return err.value.code


def _obj() -> dict[str, Any]:
    torch.manual_seed(0)
    return {
        "secret_weight_name": (torch.randn(300, 200) * 0.02).to(torch.bfloat16),
        "f32": torch.randn(5000),
        "ints": torch.arange(1000),
        "flags": torch.rand(100) > 0.5,
        "tied": None,
        "note": "confidential metadata string",
    }


def _equal(a: Any, b: Any) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k]


# -- structure of the file ---------------------------------------------------------------------------
def _region(data: bytes) -> tuple[int, int, int]:
    """Manifest offset, length and signature block length from the trailer."""
    off, ln, _, sl = struct.unpack_from("<QQHI", data, len(data) - TRAILER_SIZE)
    return off, ln, sl


def _opened(data: bytes, key: Any = KEY) -> tuple[Sealer, dict[str, Any], dict[str, Any]]:
    """The file's keys, its envelope and its manifest as plain msgpack data."""
    off, ln, _ = _region(data)
    sealer, manifest = open_envelope(data[off : off + ln], key, DEFAULT_LIMITS)
    env = parse_envelope(data[off : off + ln], DEFAULT_LIMITS)
    return sealer, env, msgpack.unpackb(manifest, raw=False)


def _rebuilt(data: bytes, blob_region: bytes, envelope: bytes, digest: str = "xxh3-64") -> bytes:
    """A file of the header, `blob_region` (ending where the envelope starts) and `envelope`, no
    signature block, the trailer digest recomputed (so a check after the trailer's is what fails)."""
    header = data[:HEADER_SIZE]
    assert not header[12] & 1
    return blob_region + envelope + pack_trailer(len(blob_region), envelope, digest, header)


def _resealed(data: bytes, manifest: dict[str, Any], blob_region: bytes | None = None) -> bytes:
    """The file with its manifest replaced, sealed again with the file's own keys (as someone holding
    the key could), so that the checks after the manifest's tag are reached."""
    sealer, _, _ = _opened(data)
    off, _, _ = _region(data)
    region = data[:off] if blob_region is None else blob_region
    return _rebuilt(data, region, sealer.envelope(pack_manifest(manifest)))


def _chunk_spans(m: dict[str, Any], blob: int) -> list[tuple[int, int]]:
    b = m["blobs"][blob]
    pos, out = b["offset"], []
    for c in b["chunks"]:
        n = sum(c["segments"]) + TAG_SIZE
        out.append((pos, pos + n))
        pos += n
    return out


def _redigest(data: bytearray, m: dict[str, Any], blob: int, j: int) -> None:
    lo, hi = _chunk_spans(m, blob)[j]
    m["blobs"][blob]["chunks"][j]["digest"] = digest_function(m["checksum"])(bytes(data[lo:hi]))


# -- round trips -------------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["auto", "raw", "zstd", "bytegroup-zstd"])
@pytest.mark.parametrize("encrypt_manifest", [True, False])
def test_round_trip_every_codec(tmp_path: Path, codec: str, encrypt_manifest: bool) -> None:
    obj = _obj()
    obj["tied"] = obj["f32"][10:20]  # a view: shared storage survives
    path = tmp_path / "e.tmodel"
    tmodel.save(obj, path, encrypt_with=KEY, codec=codec, chunk_size=4096, encrypt_manifest=encrypt_manifest)
    for mmap in (True, False):
        back = tmodel.load(path, key=KEY, mmap=mmap)
        _equal(back, obj)
        assert back["tied"].untyped_storage().data_ptr() == back["f32"].untyped_storage().data_ptr()
    data = path.read_bytes()
    assert struct.unpack_from("<I", data, 12)[0] == ENCRYPTED
    _, env, m = _opened(data)
    assert env["manifest_encrypted"] is encrypt_manifest and env["kdf"] is None
    assert all(len(b["nonce"]) == 12 for b in m["blobs"])
    assert len({b["nonce"] for b in m["blobs"]}) == len(m["blobs"])
    for b in m["blobs"]:  # every chunk stores its segments and a 16-byte tag
        assert b["length"] == sum(sum(c["segments"]) + TAG_SIZE for c in b["chunks"])


def test_names_and_metadata_are_confidential_only_when_the_manifest_is_encrypted(tmp_path: Path) -> None:
    obj = _obj()
    for encrypt_manifest in (True, False):
        path = tmp_path / f"{encrypt_manifest}.tmodel"
        tmodel.save(
            obj, path, encrypt_with=KEY, encrypt_manifest=encrypt_manifest, metadata={"who": "acme-x"}
        )
        data = path.read_bytes()
        for secret in (b"secret_weight_name", b"confidential metadata string", b"acme-x", b"bfloat16"):
            assert (secret in data) is (not encrypt_manifest)
    plain = tmp_path / "plain.tmodel"
    tmodel.save(obj, plain, codec="raw")
    enc = tmp_path / "enc.tmodel"
    tmodel.save(obj, enc, codec="raw", encrypt_with=KEY)
    raw_bytes = obj["f32"].numpy().tobytes()
    assert raw_bytes[:64] in plain.read_bytes() and raw_bytes[:64] not in enc.read_bytes()


def test_passphrases_and_their_scrypt_parameters(tmp_path: Path) -> None:
    path = tmp_path / "p.tmodel"
    tmodel.save(_obj(), path, encrypt_with=FAST)
    _equal(tmodel.load(path, key="correct horse"), _obj())  # a str is the passphrase
    _equal(tmodel.load(path, key=tmodel.Passphrase("correct horse")), _obj())  # the file's parameters rule
    _, env, _ = _opened(path.read_bytes(), "correct horse")
    kdf = env["kdf"]
    assert (kdf["name"], kdf["log_n"], kdf["r"], kdf["p"], len(kdf["salt"])) == ("scrypt", 10, 8, 1, 16)
    assert _code(lambda: tmodel.load(path, key="correct horse!")) == "WRONG_KEY"
    assert _code(lambda: tmodel.load(path, key=KEY)) == "WRONG_KEY"  # a raw key for a passphrase file
    assert "correct horse" not in repr(FAST)


def test_keys_are_required_checked_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "e.tmodel"
    tmodel.save(_obj(), path, encrypt_with=KEY)
    assert _code(lambda: tmodel.load(path)) == "KEY_REQUIRED"
    assert _code(lambda: tmodel.open(path)) == "KEY_REQUIRED"
    assert _code(lambda: tmodel.load(path, key=OTHER)) == "WRONG_KEY"
    assert _code(lambda: tmodel.load(path, key="a passphrase")) == "WRONG_KEY"
    too_costly = tmodel.Passphrase("x", log_n=21)  # 2 GiB: above readers' default max_kdf_bytes
    for bad in (b"short", bytes(33), 32, tmodel.Passphrase(""), tmodel.Passphrase("x", log_n=0), too_costly):
        assert _code(lambda bad=bad: tmodel.load(path, key=bad)) == "INVALID_ARGUMENT"
        assert (
            _code(lambda bad=bad: tmodel.save({}, tmp_path / "x.tmodel", encrypt_with=bad))
            == "INVALID_ARGUMENT"
        )
    plain = tmp_path / "plain.tmodel"
    tmodel.save({"a": torch.ones(2)}, plain)
    assert torch.equal(tmodel.load(plain, key=KEY)["a"], torch.ones(2))  # a file not encrypted ignores it


def test_every_loader_takes_the_key(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    path = tmp_path / "m.tmodel"
    tmodel.save({"model": model, "opt_step": 3}, path, encrypt_with=KEY)
    data = path.read_bytes()
    back = tmodel.load_bytes(data, key=KEY)
    assert torch.equal(back["model"][0].weight, model[0].weight)
    with tmodel.open(path, key=KEY) as f:
        assert torch.equal(f.get_slice("model.0.weight")[1:], model[0].weight[1:])
        f.verify()
    fresh = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    tmodel.load_into(fresh, path, key="model", decryption_key=KEY)
    assert torch.equal(fresh[0].weight, model[0].weight)
    other = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    tmodel.load_checkpoint(path, model=other, key=KEY)
    assert torch.equal(other[0].bias, model[0].bias)
    assert _code(lambda: tmodel.load_bytes(data)) == "KEY_REQUIRED"


def test_save_bytes_and_a_file_object(tmp_path: Path) -> None:
    import io

    data = tmodel.save_bytes(_obj(), encrypt_with=KEY)
    _equal(tmodel.load_bytes(data, key=KEY), _obj())
    buf = io.BytesIO()
    tmodel.save(_obj(), buf, encrypt_with=KEY)
    _equal(tmodel.load(io.BytesIO(buf.getvalue()), key=KEY), _obj())


def test_fresh_ids_and_nonces_for_every_save(tmp_path: Path) -> None:
    a, b = (tmodel.save_bytes({"x": torch.ones(10)}, encrypt_with=KEY) for _ in range(2))
    (_, ea, ma), (_, eb, mb) = _opened(a), _opened(b)
    assert ea["file_id"] != eb["file_id"] and ea["nonce"] != eb["nonce"]
    assert ma["blobs"][0]["nonce"] != mb["blobs"][0]["nonce"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.sampled_from([torch.float32, torch.bfloat16, torch.int8, torch.int64, torch.float16]),
            st.integers(0, 3000),
        ),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from([64, 1000, 4096]),
    st.booleans(),
)
def test_hypothesis_round_trip(spec: list[tuple[torch.dtype, int]], chunk: int, readable: bool) -> None:
    g = torch.Generator().manual_seed(len(spec) * 7 + chunk)
    obj = {
        f"t{i}": (torch.randn(n, generator=g) * 100).to(dt)
        if dt.is_floating_point
        else torch.randint(-100, 100, (n,), generator=g, dtype=dt)
        for i, (dt, n) in enumerate(spec)
    }
    data = tmodel.save_bytes(obj, encrypt_with=KEY, chunk_size=chunk, encrypt_manifest=not readable)
    back = tmodel.load_bytes(data, key=KEY)
    for k in obj:
        assert back[k].dtype == obj[k].dtype and torch.equal(back[k], obj[k])


# -- tampering: every change is a coded error ------------------------------------------------------------
@pytest.fixture
def sealed(tmp_path: Path) -> bytes:
    obj = {"a": torch.arange(4096, dtype=torch.int32), "b": torch.arange(4096, dtype=torch.int32) * 3}
    tmodel.save(obj, tmp_path / "s.tmodel", encrypt_with=KEY, codec="raw", chunk_size=4096)
    return (tmp_path / "s.tmodel").read_bytes()  # two blobs of four equal chunks each


def test_a_changed_chunk_fails_its_digest_and_with_the_digest_fixed_its_tag(sealed: bytes) -> None:
    _, _, m = _opened(sealed)
    lo, _ = _chunk_spans(m, 0)[1]
    data = bytearray(sealed)
    data[lo + 5] ^= 0x01
    assert _code(lambda: tmodel.load_bytes(bytes(data), key=KEY)) == "CHECKSUM_MISMATCH"
    _redigest(data, m, 0, 1)
    forged = _resealed(bytes(data), m, bytes(data[: m_offset(sealed)]))
    assert _code(lambda: tmodel.load_bytes(forged, key=KEY)) == "DECRYPTION_FAILED"
    with tmodel.open(__import__("io").BytesIO(forged), key=KEY) as f:  # only the chunk that changed fails
        assert torch.equal(f.get_slice("a")[:1024], torch.arange(1024, dtype=torch.int32))
        assert _code(lambda: f.get_tensor("a")) == "DECRYPTION_FAILED"


def m_offset(data: bytes) -> int:
    return _region(data)[0]


def test_reordered_chunks_and_chunks_moved_between_blobs_fail(sealed: bytes) -> None:
    _, _, m = _opened(sealed)
    spans = _chunk_spans(m, 0)
    data = bytearray(sealed)
    (a0, a1), (b0, b1) = spans[0], spans[1]
    data[a0:a1], data[b0:b1] = sealed[b0:b1], sealed[a0:a1]
    chunks = m["blobs"][0]["chunks"]
    chunks[0], chunks[1] = chunks[1], chunks[0]  # the digests follow, so only the tag can tell
    forged = _resealed(bytes(data), m, bytes(data[: m_offset(sealed)]))
    assert _code(lambda: tmodel.load_bytes(forged, key=KEY)) == "DECRYPTION_FAILED"
    _, _, m = _opened(sealed)
    data = bytearray(sealed)
    (a0, a1), (c0, c1) = _chunk_spans(m, 0)[2], _chunk_spans(m, 1)[2]
    data[a0:a1] = sealed[c0:c1]  # blob 1's chunk 2 where blob 0's chunk 2 was
    _redigest(data, m, 0, 2)
    forged = _resealed(bytes(data), m, bytes(data[: m_offset(sealed)]))
    assert _code(lambda: tmodel.load_bytes(forged, key=KEY)) == "DECRYPTION_FAILED"


def test_a_chunk_from_another_file_with_the_same_key_fails(sealed: bytes, tmp_path: Path) -> None:
    obj = {"a": torch.arange(4096, dtype=torch.int32), "b": torch.arange(4096, dtype=torch.int32) * 3}
    tmodel.save(obj, tmp_path / "t.tmodel", encrypt_with=KEY, codec="raw", chunk_size=4096)
    twin = (tmp_path / "t.tmodel").read_bytes()
    _, _, m = _opened(sealed)
    _, _, mt = _opened(twin)
    lo, hi = _chunk_spans(m, 0)[0]
    tlo, thi = _chunk_spans(mt, 0)[0]
    data = bytearray(sealed)
    data[lo:hi] = twin[tlo:thi]
    _redigest(data, m, 0, 0)
    forged = _resealed(bytes(data), m, bytes(data[: m_offset(sealed)]))
    assert _code(lambda: tmodel.load_bytes(forged, key=KEY)) == "DECRYPTION_FAILED"
    m["blobs"][0]["nonce"] = mt["blobs"][0]["nonce"]  # even with the other blob's nonce: the file id differs
    forged = _resealed(bytes(data), m, bytes(data[: m_offset(sealed)]))
    assert _code(lambda: tmodel.load_bytes(forged, key=KEY)) == "DECRYPTION_FAILED"


@pytest.mark.parametrize("readable", [False, True])
def test_a_changed_manifest_fails_its_tag(tmp_path: Path, readable: bool) -> None:
    tmodel.save(_obj(), tmp_path / "e.tmodel", encrypt_with=KEY, encrypt_manifest=not readable)
    data = (tmp_path / "e.tmodel").read_bytes()
    off, ln, _ = _region(data)
    env = parse_envelope(data[off : off + ln], DEFAULT_LIMITS)
    for field, pos in (("manifest", 7), ("manifest", len(env["manifest"]) - 1), ("tag", 0), ("nonce", 3)):
        changed = dict(env)
        value = bytearray(changed[field])
        value[pos] ^= 0x40
        changed[field] = bytes(value)
        forged = _rebuilt(data, data[:off], pack_manifest(changed))
        assert _code(lambda forged=forged: tmodel.load_bytes(forged, key=KEY)) == "DECRYPTION_FAILED"
    flipped = dict(env, manifest_encrypted=readable)  # read the other way: the associated data differs
    forged = _rebuilt(data, data[:off], pack_manifest(flipped))
    assert _code(lambda: tmodel.load_bytes(forged, key=KEY)) in {"DECRYPTION_FAILED", "MANIFEST_DECODE"}
    changed = dict(env, key_check=bytes(16))
    assert _code(lambda: tmodel.load_bytes(_rebuilt(data, data[:off], pack_manifest(changed)), key=KEY)) == (
        "WRONG_KEY"
    )


def test_a_blob_cut_short_or_a_chunk_dropped_is_refused(sealed: bytes) -> None:
    _, _, m = _opened(sealed)
    off = m_offset(sealed)
    b = m["blobs"][1]
    region = bytearray(sealed[:off])
    end = b["offset"] + b["length"]
    del region[end - TAG_SIZE : end]  # the last chunk loses its tag; the manifest says so
    b["length"] -= TAG_SIZE
    region += bytes(align(len(region)) - len(region))
    forged = _resealed(sealed, m, bytes(region))
    assert _code(lambda: tmodel.load_bytes(forged, key=KEY)) == "BAD_LAYOUT"
    _, _, m = _opened(sealed)
    b = m["blobs"][1]
    del b["chunks"][-1]  # a chunk dropped, the manifest resealed
    assert _code(lambda: tmodel.load_bytes(_resealed(sealed, m), key=KEY)) in {"BAD_TENSOR", "BAD_LAYOUT"}
    assert _code(lambda: tmodel.load_bytes(sealed[:-100], key=KEY)) == "TRUNCATED"


def test_nonces_belong_to_encrypted_files_only(sealed: bytes, tmp_path: Path) -> None:
    _, _, m = _opened(sealed)
    del m["blobs"][0]["nonce"]
    assert _code(lambda: tmodel.load_bytes(_resealed(sealed, m), key=KEY)) == "MANIFEST_SCHEMA"
    _, _, m = _opened(sealed)
    m["blobs"][0]["nonce"] = bytes(11)
    assert _code(lambda: tmodel.load_bytes(_resealed(sealed, m), key=KEY)) == "MANIFEST_SCHEMA"
    plain = tmodel.save_bytes({"x": torch.ones(3)})
    off, ln, _ = _region(plain)
    pm = msgpack.unpackb(plain[off : off + ln], raw=False)
    pm["blobs"][0]["nonce"] = bytes(12)
    forged = _rebuilt(plain, plain[:off], pack_manifest(pm))
    assert _code(lambda: tmodel.load_bytes(forged)) == "MANIFEST_SCHEMA"


def test_an_encrypted_manifest_of_schema_5_is_refused(sealed: bytes) -> None:
    _, _, m = _opened(sealed)
    m["schema_version"] = 5
    del m["checkpoint"], m["shards"]
    assert _code(lambda: tmodel.load_bytes(_resealed(sealed, m), key=KEY)) == "UNSUPPORTED_VERSION"


def test_envelope_fields_and_kdf_bounds_are_checked_before_any_key_work(sealed: bytes) -> None:
    off, ln, _ = _region(sealed)
    env = parse_envelope(sealed[off : off + ln], DEFAULT_LIMITS)
    bad: list[tuple[dict[str, Any], str]] = [
        ({**env, "extra": 1}, "MANIFEST_SCHEMA"),
        ({k: v for k, v in env.items() if k != "tag"}, "MANIFEST_SCHEMA"),
        ({**env, "cipher": "chacha20"}, "MANIFEST_SCHEMA"),
        ({**env, "nonce": bytes(11)}, "MANIFEST_SCHEMA"),
        ({**env, "manifest": "text"}, "MANIFEST_SCHEMA"),
        (
            {**env, "kdf": {"name": "scrypt", "salt": bytes(16), "log_n": 40, "r": 8, "p": 1}},
            "LIMIT_EXCEEDED",
        ),
        (
            {**env, "kdf": {"name": "scrypt", "salt": bytes(16), "log_n": 14, "r": 8, "p": 70}},
            "LIMIT_EXCEEDED",
        ),
        (
            {**env, "kdf": {"name": "scrypt", "salt": bytes(8), "log_n": 10, "r": 8, "p": 1}},
            "MANIFEST_SCHEMA",
        ),
        (
            {**env, "kdf": {"name": "argon9", "salt": bytes(16), "log_n": 10, "r": 8, "p": 1}},
            "MANIFEST_SCHEMA",
        ),
        (
            {**env, "kdf": {"name": "scrypt", "salt": bytes(16), "log_n": True, "r": 8, "p": 1}},
            "MANIFEST_SCHEMA",
        ),
    ]
    for changed, code in bad:
        forged = _rebuilt(sealed, sealed[:off], pack_manifest(changed))
        assert _code(lambda forged=forged: tmodel.load_bytes(forged, key="pw")) == code, changed.keys()
    no_key = _rebuilt(sealed, sealed[:off], pack_manifest(bad[-5][0]))
    assert _code(lambda: tmodel.load_bytes(no_key)) == "LIMIT_EXCEEDED"  # bounds before asking for a key


def test_a_reader_without_encryption_refuses_by_the_flag(sealed: bytes) -> None:
    """What an older reader sees: a required flag it does not know (SPEC.md §3.1)."""
    import tmodel.container.framing as framing

    old = framing.KNOWN_FLAGS
    framing.KNOWN_FLAGS = framing.SIGNED
    try:
        assert _code(lambda: tmodel.load_bytes(sealed, key=KEY)) == "UNKNOWN_FEATURE"
    finally:
        framing.KNOWN_FLAGS = old


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_hypothesis_any_changed_byte_is_a_coded_error_or_changes_nothing(data: st.DataObject) -> None:
    base = _MUTATED_BASE
    pos = data.draw(st.integers(0, len(base) - 1))
    bit = data.draw(st.integers(0, 7))
    fix_trailer = data.draw(st.booleans())
    mutated = bytearray(base)
    mutated[pos] ^= 1 << bit
    if fix_trailer and pos < len(base) - TRAILER_SIZE:
        off, ln, _ = _region(base)
        mutated = bytearray(_rebuilt(base, bytes(mutated[:off]), bytes(mutated[off : off + ln])))
    try:
        back = tmodel.load_bytes(bytes(mutated), key=KEY)
    except TModelError:
        return
    _equal(back, _MUTATED_OBJ)  # only a change that alters nothing (none exists here) could load


_MUTATED_OBJ = {"w": torch.randn(64, 8).to(torch.bfloat16), "i": torch.arange(100)}
_MUTATED_BASE = tmodel.save_bytes(_MUTATED_OBJ, encrypt_with=KEY, chunk_size=256)


# -- rewriting: migrate, encrypt, decrypt, sign --------------------------------------------------------------
@tmodel.register("tests.enc.Gate", version=2)
class Gate(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n))
        self.keep = nn.Parameter(torch.randn(n))


@tmodel.migration("tests.enc.Gate", from_version=1)
def _gate_v2(rec: Any) -> None:
    rec["weight"] = rec["weight"] * 2


def _stored(data: bytes, m: dict[str, Any]) -> dict[bytes, bytes]:
    """Each blob's stored bytes, by its nonce."""
    return {b["nonce"]: data[b["offset"] : b["offset"] + b["length"]] for b in m["blobs"]}


def test_migrate_keeps_the_keys_and_copies_sealed_blobs_byte_for_byte(tmp_path: Path) -> None:
    src, dst = tmp_path / "v1.tmodel", tmp_path / "v2.tmodel"
    gate = Gate(64)
    tmodel.save({"gate": gate, "big": torch.randn(20000)}, src, encrypt_with=KEY, chunk_size=8192)
    _, _, m = _opened(src.read_bytes())
    (rec,) = [r for r in m["modules"] if r["type"] == "tests.enc.Gate"]
    rec["version"] = 1  # as the program of version 1 wrote it
    src.write_bytes(_resealed(src.read_bytes(), m))
    assert _code(lambda: tmodel.migrate_file(src, dst)) == "KEY_REQUIRED"
    assert tmodel.migrate_file(src, dst, key=KEY)
    back = tmodel.load(dst, key=KEY)
    assert torch.equal(back["gate"].weight, gate.weight * 2) and torch.equal(back["gate"].keep, gate.keep)
    old, new = src.read_bytes(), dst.read_bytes()
    (_, eo, mo), (_, en, mn) = _opened(old), _opened(new)
    assert (en["file_id"], en["kdf"], en["key_check"], en["manifest_encrypted"]) == (
        eo["file_id"],
        eo["kdf"],
        eo["key_check"],
        eo["manifest_encrypted"],
    )
    assert en["nonce"] != eo["nonce"]
    before, after = _stored(old, mo), _stored(new, mn)
    kept = before.keys() & after.keys()
    assert len(kept) == len(mo["blobs"]) - 1  # all but the weight the step changed
    assert all(before[n] == after[n] for n in kept)
    assert _code(lambda: tmodel.load(dst, key=OTHER)) == "WRONG_KEY"


def _bytes_of(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).contiguous().view(torch.uint8)


def _flat(value: Any, path: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a loaded object by its path."""
    if isinstance(value, torch.Tensor):
        return {path: value}
    items: Any = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, (list, tuple))
        else ()
    )
    out: dict[str, torch.Tensor] = {}
    for k, v in items:
        out.update(_flat(v, f"{path}/{k}"))
    return out


def test_encrypt_and_decrypt_files_carry_chunks_over_as_compressed(tmp_path: Path) -> None:
    plain, enc, back = tmp_path / "p.tmodel", tmp_path / "e.tmodel", tmp_path / "d.tmodel"
    tmodel.save(_obj(), plain, chunk_size=2048)
    assert tmodel.encrypt_file(plain, enc, KEY) == []
    _equal(tmodel.load(enc, key=KEY), _obj())
    _, _, m = _opened(enc.read_bytes())
    with tmodel.open(plain) as f:  # the segments are the plain file's, each now sealed
        assert [[c.segments for c in b.chunks] for b in f.manifest.blobs] == [
            [tuple(c["segments"]) for c in b["chunks"]] for b in m["blobs"]
        ]
    assert tmodel.decrypt_file(enc, back, key=KEY) == []
    assert back.read_bytes() == plain.read_bytes()
    rekeyed = tmp_path / "r.tmodel"
    tmodel.encrypt_file(enc, rekeyed, FAST, key=KEY, encrypt_manifest=False)
    _equal(tmodel.load(rekeyed, key="correct horse"), _obj())
    assert _code(lambda: tmodel.decrypt_file(plain, tmp_path / "x.tmodel", key=KEY)) == "INVALID_ARGUMENT"
    assert _code(lambda: tmodel.encrypt_file(plain, plain, KEY)) == "INVALID_ARGUMENT"


def test_encrypting_a_released_file_loads_the_same(tmp_path: Path) -> None:
    golden = Path(__file__).parent.parent / "conformance" / "golden" / "v5"
    for name in ("state_dict_auto", "all_dtypes_bytegroup", "chunk_edges"):
        src = golden / f"{name}.tmodel"
        out = tmp_path / f"{name}.tmodel"
        tmodel.encrypt_file(src, out, KEY)
        flat_a, flat_b = _flat(tmodel.load(src)), _flat(tmodel.load(out, key=KEY))
        assert flat_a.keys() == flat_b.keys() and flat_a
        for k in flat_a:
            x, y = flat_a[k], flat_b[k]
            assert x.dtype == y.dtype and x.shape == y.shape, (name, k)
            assert torch.equal(_bytes_of(x), _bytes_of(y)), (name, k)  # bit patterns, NaNs and all


def test_signed_and_encrypted(tmp_path: Path) -> None:
    tmodel.keygen(tmp_path / "alice")
    path = tmp_path / "s.tmodel"
    tmodel.save(_obj(), path, sign_with=tmp_path / "alice", encrypt_with=KEY)
    trusted = [tmp_path / "alice.pub"]
    _equal(tmodel.load(path, key=KEY, trusted_keys=trusted, require_signature=True), _obj())
    assert len(tmodel.signatures(path, key=KEY)) == 1
    tmodel.keygen(tmp_path / "bob", "ecdsa-p256")
    tmodel.sign_file(path, tmp_path / "bob", decryption_key=KEY)
    data = path.read_bytes()
    assert struct.unpack_from("<I", data, 12)[0] == ENCRYPTED | 1
    assert len(tmodel.signatures(path, key=KEY)) == 2
    notes = tmodel.decrypt_file(path, tmp_path / "d.tmodel", key=KEY)
    assert notes and "unsigned" in notes[0]
    off, ln, sl = _region(data)
    forged = bytearray(data)
    forged[off + ln - 3] ^= 1  # inside the envelope: the signature covers it
    header = bytes(forged[:HEADER_SIZE])
    block = bytes(forged[off + ln : off + ln + sl])
    forged = forged[: off + ln + sl] + pack_trailer(
        off, bytes(forged[off : off + ln]), "blake3", header, block
    )
    assert _code(lambda: tmodel.load_bytes(bytes(forged), key=KEY)) == "BAD_SIGNATURE"


# -- command line ----------------------------------------------------------------------------------------
def test_cli_keygen_encrypt_verify_inspect_decrypt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain, enc, back, key = (tmp_path / n for n in ("p.tmodel", "e.tmodel", "d.tmodel", "k.hex"))
    tmodel.save(_obj(), plain)
    assert main(["keygen", "--algorithm", "aes-256-gcm", str(key)]) == 0
    assert len(bytes.fromhex(key.read_text())) == 32 and (key.stat().st_mode & 0o777) == 0o600
    assert main(["keygen", "--algorithm", "aes-256-gcm", str(key)]) == 1  # never overwritten
    assert main(["encrypt", str(plain), str(enc), "--key-file", str(key)]) == 0
    assert main(["verify", str(enc), "--key-file", str(key)]) == 0
    assert capsys.readouterr().out.strip().endswith("unsigned, encrypted)")
    assert main(["verify", str(enc)]) == 1
    assert capsys.readouterr().err.startswith("error[KEY_REQUIRED]: ")
    assert main(["inspect", str(enc), "--key-file", str(key)]) == 0
    assert "secret_weight_name" in capsys.readouterr().out
    assert main(["decrypt", str(enc), str(back), "--key-file", str(key)]) == 0
    assert back.read_bytes() == plain.read_bytes()
    monkeypatch.setenv("TM_PW", "correct horse")
    pw = tmp_path / "pw.txt"
    pw.write_text("correct horse\n")
    tmodel.save(_obj(), tmp_path / "p2.tmodel", encrypt_with=FAST)
    assert main(["verify", str(tmp_path / "p2.tmodel"), "--passphrase-env", "TM_PW"]) == 0
    assert main(["verify", str(tmp_path / "p2.tmodel"), "--passphrase-file", str(pw)]) == 0
    monkeypatch.setenv("TM_PW", "wrong")
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "p2.tmodel"), "--passphrase-env", "TM_PW"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error[WRONG_KEY]: ") and err.count("\n") == 1
    assert main(["encrypt", str(plain), str(tmp_path / "x.tmodel")]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
    wrong_size = tmp_path / "short.key"
    wrong_size.write_bytes(os.urandom(31))
    assert main(["verify", str(enc), "--key-file", str(wrong_size)]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
