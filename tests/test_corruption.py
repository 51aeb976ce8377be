"""Damaged and hostile files: a reader raises nothing but TModelError, with the code SPEC.md §10 names.

Manifest-level attacks rebuild the file with the manifest digest recomputed (`build` below), so each one
reaches the check it targets instead of stopping at CHECKSUM_MISMATCH.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import torch
import xxhash
import zstandard
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import tmodel
from tmodel.archive.reader import Reader
from tmodel.container.framing import HEADER_SIZE, TRAILER_SIZE, align, pack_trailer
from tmodel.errors import TModelError
from tmodel.limits import Limits
from tmodel.manifest.encoding import pack_manifest

MiB = 1 << 20


# -- helpers ------------------------------------------------------------------------------------------------
def outcome(fn: Callable[[], Any]) -> str:
    """The error code `fn` raises, "OK" when it raises nothing, "!Type: msg" for a non-TModelError."""
    try:
        fn()
    except TModelError as exc:
        return exc.code
    except Exception as exc:  # recorded, so a loop can report every offending input at once
        return f"!{type(exc).__name__}: {exc}"
    return "OK"


def verify(path: Path, limits: Limits | None = None) -> None:
    with Reader(path) if limits is None else Reader(path, limits) as r:
        r.verify()


def codes(path: Path) -> tuple[str, str]:
    """(tmodel.load's code, Reader(path).verify()'s code)."""
    return outcome(lambda: tmodel.load(path)), outcome(lambda: verify(path))


def split(data: bytes) -> tuple[bytes, bytes, dict[str, Any]]:
    """(header, blob region incl. padding, decoded manifest) of a valid file."""
    offset, length = struct.unpack_from("<QQ", data, len(data) - TRAILER_SIZE)
    wire = msgpack.unpackb(data[offset : offset + length], raw=False)
    return data[:HEADER_SIZE], data[HEADER_SIZE:offset], wire


def build(path: Path, manifest: dict[str, Any] | bytes, region: bytes, header: bytes | None = None) -> Path:
    """Write header + blob region (zero-padded to 64) + manifest + a trailer whose digest is correct."""
    header = tmodel_header() if header is None else header
    raw = manifest if isinstance(manifest, bytes) else pack_manifest(manifest)
    region += bytes(align(HEADER_SIZE + len(region)) - HEADER_SIZE - len(region))
    offset = HEADER_SIZE + len(region)
    path.write_bytes(header + region + raw + pack_trailer(offset, raw, "xxh3-64", header))
    return path


def tmodel_header(version: int = 1, flags: int = 0) -> bytes:
    return struct.pack("<8sII48s", b"\x89TMODEL\n", version, flags, bytes(48))


def packed_map(items: list[tuple[str, bytes]]) -> bytes:
    """A msgpack map from already-encoded values (for encodings msgpack.packb refuses to produce)."""
    assert len(items) < 16
    return bytes([0x80 | len(items)]) + b"".join(msgpack.packb(k) + v for k, v in items)


def manifest_with_raw(wire: dict[str, Any], key: str, raw_value: bytes) -> bytes:
    return packed_map([(k, raw_value if k == key else msgpack.packb(v)) for k, v in wire.items()])


def digest(data: bytes) -> bytes:
    return xxhash.xxh3_64_digest(data)


def assert_codes(path: Path, code: str, *, reader_ok: bool = False) -> None:
    load_code, verify_code = codes(path)
    assert load_code == code
    assert verify_code == ("OK" if reader_ok else code)


# -- truncation and bit flips of a small valid file ----------------------------------------------------------
def test_small_file_is_valid(small_file: Path) -> None:
    data = small_file.read_bytes()
    assert 1000 <= len(data) <= 3000
    assert codes(small_file) == ("OK", "OK")
    with tmodel.open(small_file) as f:
        assert len(f.manifest.tensors) >= 3
        assert {b.codec for b in f.manifest.blobs} == {"bytegroup-zstd", "zstd"}
    header, region, wire = split(data)
    assert build(Path(str(small_file) + ".copy"), wire, region, header).read_bytes() == data


def test_truncated_at_every_length(small_file: Path, tmp_path: Path) -> None:
    data = small_file.read_bytes()
    path = tmp_path / "t.tmodel"
    seen: dict[int, tuple[str, str]] = {}
    for n in range(len(data)):
        path.write_bytes(data[:n])
        seen[n] = codes(path)
    bad = {n: c for n, c in seen.items() if c != ("TRUNCATED", "TRUNCATED")}
    assert not bad, f"{len(bad)} lengths, e.g. {list(bad.items())[:5]}"


def _flip_expectation(data: bytes, blobs: list[tuple[int, int]], pos: int, mask: int) -> str:
    """The code a reader following SPEC.md §9 reports for byte `pos` xor `mask`; `blobs` are the
    [start, end) byte ranges of the stored blobs (the rest of the blob region is padding)."""
    size = len(data)
    offset, length = struct.unpack_from("<QQ", data, size - TRAILER_SIZE)
    if pos < 8:
        return "BAD_MAGIC"
    if pos < 12:
        return "UNSUPPORTED_VERSION"
    if pos < 16:  # bit 0 of the flags is SIGNED, known: set without a signature block it is BAD_LAYOUT;
        # bit 1 is ENCRYPTED, known: the manifest is then read as an envelope, which it is not
        return {(12, 1): "BAD_LAYOUT", (12, 2): "MANIFEST_SCHEMA"}.get((pos, mask), "UNKNOWN_FEATURE")
    if pos < HEADER_SIZE:
        return "BAD_LAYOUT"
    if pos < offset:
        if any(lo <= pos < hi for lo, hi in blobs):
            return "CHECKSUM_MISMATCH"
        return "BAD_LAYOUT"  # padding
    if pos < offset + length:
        return "CHECKSUM_MISMATCH"
    t = pos - (size - TRAILER_SIZE)
    if t < 8:
        return "BAD_LAYOUT"
    if t < 16:
        new_length = length ^ (mask << (8 * (t - 8)))
        return "LIMIT_EXCEEDED" if new_length > 256 * MiB else "BAD_LAYOUT"
    if t < 18:
        return "UNKNOWN_CHECKSUM"
    if t < 24:
        return "BAD_LAYOUT"
    if t < 32:
        return "CHECKSUM_MISMATCH"
    if t < 56:
        return "BAD_LAYOUT"
    return "TRUNCATED"


@pytest.mark.parametrize("mask", [0x01, 0x80])
def test_every_single_bit_flip_is_detected(small_file: Path, tmp_path: Path, mask: int) -> None:
    data = small_file.read_bytes()
    blobs = [(b["offset"], b["offset"] + b["length"]) for b in split(data)[2]["blobs"]]
    path = tmp_path / "f.tmodel"
    wrong: dict[int, tuple[str, tuple[str, str]]] = {}
    seen: Counter[str] = Counter()
    for pos in range(len(data)):
        damaged = bytearray(data)
        damaged[pos] ^= mask
        path.write_bytes(damaged)
        got = codes(path)
        seen.update(got)
        want = _flip_expectation(data, blobs, pos, mask)
        if got != (want, want):
            wrong[pos] = (want, got)
    assert not wrong, f"{len(wrong)} positions, e.g. {list(wrong.items())[:8]}"
    assert "OK" not in seen
    expected = {
        "BAD_MAGIC",
        "UNSUPPORTED_VERSION",
        "UNKNOWN_FEATURE",
        "BAD_LAYOUT",
        "CHECKSUM_MISMATCH",
        "UNKNOWN_CHECKSUM",
        "TRUNCATED",
    }
    assert set(seen) == expected | {"LIMIT_EXCEEDED"}, seen  # manifest_length flips above 2^28


# -- hypothesis: random bytes, random splices, random manifest values ----------------------------------------
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(st.one_of(st.binary(max_size=400), st.binary(max_size=300).map(lambda b: b"\x89TMODEL\n" + b)))
def test_random_bytes_raise_only_tmodel_errors(tmp_path_factory: pytest.TempPathFactory, blob: bytes) -> None:
    path = tmp_path_factory.mktemp("rand") / "r.tmodel"
    path.write_bytes(blob)
    load_code, verify_code = codes(path)
    assert not load_code.startswith("!") and not verify_code.startswith("!"), (load_code, verify_code)
    assert load_code != "OK" and verify_code != "OK"


@FUZZ
@given(data=st.data())
def test_random_splices_are_detected(
    small_file: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    original = small_file.read_bytes()
    start = data.draw(st.integers(0, len(original)), label="start")
    end = data.draw(st.integers(start, min(len(original), start + 64)), label="end")
    new = data.draw(st.binary(min_size=2, max_size=64), label="new")
    damaged = original[:start] + new + original[end:]
    path = tmp_path_factory.mktemp("splice") / "s.tmodel"
    path.write_bytes(damaged)
    load_code, verify_code = codes(path)
    assert not load_code.startswith("!") and not verify_code.startswith("!"), (load_code, verify_code)
    if damaged != original:
        assert load_code != "OK" and verify_code != "OK"


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.sampled_from([0, 1, 2, 3, 7, 8, 16, 64, 128, -1, 2**63 - 1, 2**32, 2**62])
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["list", "tuple", "dict", "tensor", "float32", "bool", "zstd", "raw", "xxh3-64"])
    | st.binary(max_size=9),
    lambda ch: st.lists(ch, max_size=3) | st.dictionaries(st.text(max_size=6), ch, max_size=2),
    max_leaves=6,
)


def _like(original: Any) -> st.SearchStrategy[Any]:
    """Values of the same msgpack type as `original`, so that most mutations pass the schema."""
    if isinstance(original, bool):
        return st.booleans()
    if isinstance(original, int):
        small = st.sampled_from([0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 63, 64, 65, 128, 192, 2**31])
        near = st.just(min(original + 1, 2**64 - 1)) | st.just(max(0, original - 1))  # msgpack-encodable
        return small | st.integers(0, 2**64 - 1) | near
    if isinstance(original, str):
        return (
            st.sampled_from(["w", "v", "a.b", "float32", "bool", "uint8", "zstd", "raw", "sha256"])
            | st.text()
        )
    if isinstance(original, bytes):
        return st.binary(min_size=len(original), max_size=len(original)) | st.binary(max_size=40)
    if isinstance(original, list):
        return st.lists(st.integers(0, 70), max_size=4) | st.lists(msgpack_values, max_size=3)
    return msgpack_values


@FUZZ
@given(data=st.data())
def test_random_manifest_values_raise_only_tmodel_errors(
    small_file: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Any value anywhere in the manifest, digest recomputed: load and verify raise only TModelError."""
    header, region, wire = split(small_file.read_bytes())
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        where = data.draw(st.sampled_from(_paths(wire)[1:]), label="where")
        node: Any = wire
        for k in where[:-1]:
            node = node[k]
        node[where[-1]] = data.draw(_like(node[where[-1]]) | msgpack_values, label="value")
    path = build(tmp_path_factory.mktemp("mf") / "m.tmodel", wire, region, header)
    load_code, verify_code = codes(path)
    event(load_code)
    assert not load_code.startswith("!") and not verify_code.startswith("!"), (load_code, verify_code)


# -- specific framing cases ----------------------------------------------------------------------------------
def test_bad_magic(small_file: Path, tmp_path: Path) -> None:
    data = bytearray(small_file.read_bytes())
    data[:8] = b"\x89TMODEX\n"
    (tmp_path / "m.tmodel").write_bytes(data)
    assert_codes(tmp_path / "m.tmodel", "BAD_MAGIC")
    (tmp_path / "short").write_bytes(b"PK\x03")
    assert_codes(tmp_path / "short", "BAD_MAGIC")


@pytest.mark.parametrize(
    ("version", "flags", "code"),
    [
        (0, 0, "UNSUPPORTED_VERSION"),
        (2, 0, "UNSUPPORTED_VERSION"),
        (0xFFFFFFFF, 0, "UNSUPPORTED_VERSION"),
        (1, 1, "BAD_LAYOUT"),  # SIGNED, with no signature block (SPEC.md §3.4)
        (1, 2, "MANIFEST_SCHEMA"),  # ENCRYPTED, with a manifest where the envelope goes (SPEC.md §3.5)
        (1, 4, "UNKNOWN_FEATURE"),
        (1, 0x80000000, "UNKNOWN_FEATURE"),
    ],
)
def test_header_version_and_flags(
    small_file: Path, tmp_path: Path, version: int, flags: int, code: str
) -> None:
    _, region, wire = split(small_file.read_bytes())
    path = build(tmp_path / "v.tmodel", wire, region, tmodel_header(version, flags))  # digest recomputed
    assert_codes(path, code)


def test_reserved_header_bytes(small_file: Path, tmp_path: Path) -> None:
    _, region, wire = split(small_file.read_bytes())
    header = bytearray(tmodel_header())
    header[63] = 1
    assert_codes(build(tmp_path / "r.tmodel", wire, region, bytes(header)), "BAD_LAYOUT")


def test_zip_and_pickle_files_are_bad_magic(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        z.writestr("data.pkl", b"\x80\x04K\x01." * 100)
    assert_codes(tmp_path / "a.zip", "BAD_MAGIC")
    torch.save({"x": torch.ones(3)}, tmp_path / "t.pt")
    assert_codes(tmp_path / "t.pt", "BAD_MAGIC")
    (tmp_path / "p.pkl").write_bytes(b"\x80\x04\x95" + bytes(200))
    assert_codes(tmp_path / "p.pkl", "BAD_MAGIC")


def test_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    results: list[tuple[str, str]] = []
    worker = threading.Thread(target=lambda: results.append(codes(fifo)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # unblock a reader stuck in open() before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO blocked")
    assert results == [("NOT_REGULAR_FILE", "NOT_REGULAR_FILE")]
    with pytest.raises(TModelError) as info:
        tmodel.open(fifo)
    assert info.value.code == "NOT_REGULAR_FILE"


def test_directory_and_missing_path(tmp_path: Path) -> None:
    load_code, verify_code = codes(tmp_path)
    assert load_code == verify_code and load_code in ("NOT_REGULAR_FILE", "IO_ERROR")
    assert codes(tmp_path / "missing.tmodel") == ("IO_ERROR", "IO_ERROR")
    with pytest.raises(TModelError) as info:
        tmodel.open(tmp_path / "missing.tmodel")
    assert info.value.code == "IO_ERROR"


@pytest.mark.parametrize(
    "extra",
    [b"x", bytes(64), b"TMODEND\n", "trailer", "whole file"],
    ids=["byte", "zeros", "end-magic", "trailer-copy", "file-copy"],
)
def test_trailing_garbage(small_file: Path, tmp_path: Path, extra: Any) -> None:
    data = small_file.read_bytes()
    extra = {"trailer": data[-TRAILER_SIZE:], "whole file": data}.get(extra, extra)
    (tmp_path / "g.tmodel").write_bytes(data + extra)
    load_code, verify_code = codes(tmp_path / "g.tmodel")
    assert load_code == verify_code
    assert load_code in ("TRUNCATED", "BAD_LAYOUT")


@pytest.mark.parametrize(
    ("trailer_edit", "code"),
    [
        (lambda t: t[:16] + struct.pack("<H", 2) + t[18:], "CHECKSUM_MISMATCH"),  # sha256 id, xxh3 digest
        (lambda t: t[:16] + struct.pack("<H", 9) + t[18:], "UNKNOWN_CHECKSUM"),
        (lambda t: struct.pack("<Q", 0) + t[8:], "BAD_LAYOUT"),
        (lambda t: t[:8] + struct.pack("<Q", 257 * MiB) + t[16:], "LIMIT_EXCEEDED"),
    ],
    ids=["sha256-id", "unknown-id", "offset-0", "huge-length"],
)
def test_trailer_fields(small_file: Path, tmp_path: Path, trailer_edit: Any, code: str) -> None:
    data = small_file.read_bytes()
    (tmp_path / "t.tmodel").write_bytes(data[:-TRAILER_SIZE] + trailer_edit(data[-TRAILER_SIZE:]))
    assert_codes(tmp_path / "t.tmodel", code)


# -- manifest-level attacks with the digest recomputed -------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes, dict[str, Any]]:
    """blobs: 0 = w (float32, bytegroup-zstd, 2 chunks), 1 = v (float32, same), 2 = m (bool, zstd)."""
    path = tmp_path_factory.mktemp("base") / "base.tmodel"
    obj = {
        "w": torch.arange(16, dtype=torch.float32),
        "v": torch.arange(16, dtype=torch.float32) * 2,
        "m": torch.tensor([True, False] * 8),
        "k": {1: "one", "s": (2.5, None)},
    }
    tmodel.save(obj, path, chunk_size=32)
    header, region, wire = split(path.read_bytes())
    assert [b["codec"] for b in wire["blobs"]] == ["bytegroup-zstd", "bytegroup-zstd", "zstd"]
    assert [len(b["chunks"]) for b in wire["blobs"]] == [2, 2, 1]
    return header, region, wire


def _t0(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda w: w["tensors"][0].__setitem__(key, value)


def _b0(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda w: w["blobs"][0].__setitem__(key, value)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda w: w.__setitem__(key, value)


def _rank65(w: dict[str, Any]) -> None:
    w["tensors"][0]["shape"] = [1] * 65
    w["tensors"][0]["strides"] = [1] * 65


def _unreferenced(w: dict[str, Any]) -> None:
    w["tensors"][1]["blob"] = 0  # v now views w's blob: blob 1 is referenced by nothing


def _duplicate_name(w: dict[str, Any]) -> None:
    w["tensors"][1]["name"] = w["tensors"][0]["name"]


MANIFEST_ATTACKS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown dtype": (_t0("dtype", "float128"), "UNKNOWN_DTYPE"),
    "dtype as bin": (_t0("dtype", b"float32"), "MANIFEST_SCHEMA"),
    "codec pickle": (_b0("codec", "pickle"), "UNKNOWN_CODEC"),
    "checksum md5": (_set("checksum", "md5"), "UNKNOWN_CHECKSUM"),
    "shape beyond blob": (_t0("shape", [17]), "BAD_TENSOR"),
    "strides beyond blob": (_t0("strides", [2]), "BAD_TENSOR"),
    "offset beyond blob": (_t0("offset", 4), "BAD_TENSOR"),
    "offset not item-aligned": (_t0("offset", 2), "BAD_TENSOR"),
    "strides count": (_t0("strides", [1, 1]), "BAD_TENSOR"),
    "blob out of range": (_t0("blob", 3), "BAD_TENSOR"),
    "nil blob with data": (_t0("blob", None), "BAD_TENSOR"),
    "tensor ref out of range": (_set("root", {"tensor": 4}), "BAD_TENSOR"),
    "rank 65": (_rank65, "LIMIT_EXCEEDED"),
    "negative dim": (_t0("shape", [-16]), "MANIFEST_SCHEMA"),
    "float dim": (_t0("shape", [16.0]), "MANIFEST_SCHEMA"),
    "bool dim": (_t0("shape", [True]), "MANIFEST_SCHEMA"),
    "bool offset": (_t0("offset", False), "MANIFEST_SCHEMA"),
    "bool blob index": (_t0("blob", True), "MANIFEST_SCHEMA"),
    "float nbytes": (_b0("nbytes", 64.0), "MANIFEST_SCHEMA"),
    "str chunk_size": (_b0("chunk_size", "32"), "MANIFEST_SCHEMA"),
    "name with slash": (_t0("name", "a/b"), "BAD_NAME"),
    "name with backslash": (_t0("name", "a\\b"), "BAD_NAME"),
    "name with dotdot": (_t0("name", "a..b"), "BAD_NAME"),
    "name with NUL": (_t0("name", "a\x00b"), "BAD_NAME"),
    "name with DEL": (_t0("name", "a\x7f"), "BAD_NAME"),
    "empty name": (_t0("name", ""), "BAD_NAME"),
    "2000-char name": (_t0("name", "a" * 2000), "BAD_NAME"),
    "duplicate names": (_duplicate_name, "BAD_NAME"),
    "schema_version 8": (_set("schema_version", 8), "UNSUPPORTED_VERSION"),
    "schema_version 0": (_set("schema_version", 0), "UNSUPPORTED_VERSION"),
    "schema_version str": (_set("schema_version", "1"), "MANIFEST_SCHEMA"),
    "required feature": (_set("required_features", ["x"]), "UNKNOWN_FEATURE"),
    "unknown field": (_set("zzz", 1), "MANIFEST_SCHEMA"),
    "missing field": (lambda w: w.pop("extensions"), "MANIFEST_SCHEMA"),
    "metadata not a map": (_set("metadata", [1]), "MANIFEST_SCHEMA"),
    "metadata set-like value": (_set("metadata", {"a": {"tensor": 0, "x": 1}}), "OK"),
    "blob offset moved": (_b0("offset", 128), "BAD_LAYOUT"),
    "blob length": (_b0("length", 1), "BAD_LAYOUT"),
    "unreferenced blob": (_unreferenced, "BAD_LAYOUT"),
    "chunk dropped": (lambda w: w["blobs"][0]["chunks"].pop(), "BAD_TENSOR"),
    "short digest": (lambda w: w["blobs"][0]["chunks"][0].__setitem__("digest", b"1234"), "BAD_TENSOR"),
    "width with zstd": (lambda w: w["blobs"][2].__setitem__("width", 2), "BAD_TENSOR"),
    "width 17": (_b0("width", 17), "MANIFEST_SCHEMA"),
    "segment count": (lambda w: w["blobs"][0]["chunks"][0]["segments"].pop(), "BAD_TENSOR"),
    "chunk_size over limit": (_b0("chunk_size", 256 * MiB + 4), "LIMIT_EXCEEDED"),
    "decoded size over limit": (_b0("nbytes", 1 << 40), "LIMIT_EXCEEDED"),
    "root two keys": (_set("root", {"list": [], "tuple": []}), "MANIFEST_SCHEMA"),
    "dict node duplicate key": (_set("root", {"dict": [["a", 1], ["a", 2]]}), "MANIFEST_SCHEMA"),
    "dict node list key": (_set("root", {"dict": [[{"list": []}, 1]]}), "MANIFEST_SCHEMA"),
    "dict entry of 3": (_set("root", {"dict": [["a", 1, 2]]}), "MANIFEST_SCHEMA"),
}


@pytest.mark.parametrize("name", list(MANIFEST_ATTACKS))
def test_manifest_attack(base: tuple[bytes, bytes, dict[str, Any]], tmp_path: Path, name: str) -> None:
    header, region, wire = base
    mutate, code = MANIFEST_ATTACKS[name]
    wire = msgpack.unpackb(pack_manifest(wire), raw=False)  # a private deep copy
    mutate(wire)
    assert_codes(build(tmp_path / "a.tmodel", wire, region, header), code)


def test_unchanged_base_loads(base: tuple[bytes, bytes, dict[str, Any]], tmp_path: Path) -> None:
    header, region, wire = base
    assert codes(build(tmp_path / "a.tmodel", wire, region, header)) == ("OK", "OK")


def test_keys_python_cannot_tell_apart(base: tuple[bytes, bytes, dict[str, Any]], tmp_path: Path) -> None:
    """1 and true are distinct msgpack keys, so the file is valid, but a Python dict cannot hold both."""
    header, region, wire = base
    wire = {**wire, "root": {"dict": [[1, "int"], [True, "bool"], [1.0, "float"]]}}
    assert_codes(build(tmp_path / "a.tmodel", wire, region, header), "MANIFEST_SCHEMA", reader_ok=True)


# -- hand-encoded msgpack ------------------------------------------------------------------------------------
def _dup_top_level(w: dict[str, Any]) -> bytes:
    return packed_map([*((k, msgpack.packb(v)) for k, v in w.items()), ("extensions", b"\x80")])


def _dup_nested(w: dict[str, Any]) -> bytes:
    return manifest_with_raw(w, "metadata", packed_map([("a", b"\x01"), ("a", b"\x02")]))


RAW_ATTACKS: dict[str, tuple[Callable[[dict[str, Any]], bytes], tuple[str, ...]]] = {
    "duplicate top-level key": (_dup_top_level, ("MANIFEST_DECODE",)),
    "duplicate nested key": (_dup_nested, ("MANIFEST_DECODE",)),
    "ext type": (
        lambda w: manifest_with_raw(
            w, "metadata", packed_map([("e", msgpack.packb(msgpack.ExtType(5, b"xy")))])
        ),
        ("MANIFEST_DECODE",),
    ),
    "timestamp ext": (
        lambda w: manifest_with_raw(
            w, "extensions", packed_map([("t", msgpack.packb(msgpack.Timestamp(1, 0)))])
        ),
        ("MANIFEST_DECODE",),
    ),
    "extra bytes": (lambda w: pack_manifest(w) + b"\xc0", ("MANIFEST_DECODE",)),
    "two manifests": (lambda w: pack_manifest(w) * 2, ("MANIFEST_DECODE",)),
    "incomplete": (lambda w: pack_manifest(w)[:-1], ("MANIFEST_DECODE",)),
    "int map key": (
        lambda w: manifest_with_raw(w, "metadata", b"\x81\x01\xc0"),
        ("MANIFEST_DECODE",),
    ),
    "invalid utf-8": (
        lambda w: manifest_with_raw(w, "metadata", b"\x81\xa1a\xa2\xff\xfe"),
        ("MANIFEST_DECODE",),
    ),
    "reserved byte 0xc1": (lambda w: manifest_with_raw(w, "metadata", b"\xc1"), ("MANIFEST_DECODE",)),
    "nested 10,000 deep": (
        lambda w: manifest_with_raw(w, "metadata", b"\x81\xa1x" + b"\x91" * 10_000 + b"\xc0"),
        ("LIMIT_EXCEEDED", "MANIFEST_DECODE"),
    ),
    "nested 126 lists in metadata": (
        lambda w: manifest_with_raw(w, "metadata", b"\x81\xa1x" + b"\x91" * 126 + b"\xc0"),
        ("LIMIT_EXCEEDED",),
    ),
    "array32 of 2^32-1 alone": (lambda w: b"\xdd\xff\xff\xff\xff", ("MANIFEST_DECODE",)),
    "array32 of 2^32-1 in metadata": (
        lambda w: manifest_with_raw(w, "metadata", b"\x81\xa1x\xdd\xff\xff\xff\xff\xc0\xc0"),
        ("MANIFEST_DECODE",),
    ),
    "map32 of 2^32-1": (lambda w: b"\xdf\xff\xff\xff\xff\xa1a\xc0", ("MANIFEST_DECODE",)),
    "bin32 of 2^32-1": (
        lambda w: manifest_with_raw(w, "metadata", b"\x81\xa1x\xc6\xff\xff\xff\xff\x00"),
        ("MANIFEST_DECODE",),
    ),
    "str32 of 2^32-1": (
        lambda w: manifest_with_raw(w, "metadata", b"\x81\xa1x\xdb\xff\xff\xff\xff\x00"),
        ("MANIFEST_DECODE",),
    ),
    "empty manifest": (lambda w: b"", ("MANIFEST_DECODE",)),
    "manifest not a map": (lambda w: pack_manifest([w]), ("MANIFEST_SCHEMA",)),
}


@pytest.mark.parametrize("name", list(RAW_ATTACKS))
def test_raw_manifest_attack(base: tuple[bytes, bytes, dict[str, Any]], tmp_path: Path, name: str) -> None:
    header, region, wire = base
    encode, allowed = RAW_ATTACKS[name]
    path = build(tmp_path / "a.tmodel", encode(wire), region, header)
    t0 = time.perf_counter()
    load_code, verify_code = codes(path)
    assert time.perf_counter() - t0 < 2.0
    assert load_code == verify_code
    assert load_code in allowed


def test_nesting_just_within_the_limit_loads(
    base: tuple[bytes, bytes, dict[str, Any]], tmp_path: Path
) -> None:
    header, region, wire = base
    path = build(
        tmp_path / "a.tmodel",
        manifest_with_raw(wire, "metadata", b"\x81\xa1x" + b"\x91" * 125 + b"\xc0"),
        region,
        header,
    )
    assert codes(path) == ("OK", "OK")
    value: Any = None
    for _ in range(125):
        value = [value]
    with tmodel.open(path) as f:
        assert f.metadata == {"x": value}


# -- blob-level attacks with chunk digests recomputed --------------------------------------------------------
@pytest.fixture(scope="module")
def zeros_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes, dict[str, Any]]:
    """One 4096-byte uint8 blob, codec zstd, one chunk holding one zstd frame."""
    path = tmp_path_factory.mktemp("zeros") / "z.tmodel"
    tmodel.save({"z": torch.zeros(4096, dtype=torch.uint8)}, path, codec="zstd")
    header, region, wire = split(path.read_bytes())
    (chunk,) = wire["blobs"][0]["chunks"]
    assert chunk["segments"][0] < 4096
    return header, region, wire


def _with_segment(wire: dict[str, Any], seg: bytes) -> tuple[dict[str, Any], bytes]:
    wire = msgpack.unpackb(pack_manifest(wire), raw=False)
    blob = wire["blobs"][0]
    blob["length"] = len(seg)
    blob["chunks"][0] = {"digest": digest(seg), "segments": [len(seg)]}
    return wire, seg


def _frame(data: bytes, **kwargs: Any) -> bytes:
    return zstandard.ZstdCompressor(**{"write_checksum": True, **kwargs}).compress(data)


def _with_dict_id(frame: bytes) -> bytes:
    fhd = frame[4]
    assert fhd & 0x20 and not fhd & 0x03  # single segment, no dictionary id yet
    return frame[:4] + bytes([fhd | 0x01, 7]) + frame[5:]


SEGMENTS: dict[str, bytes] = {
    "other content size": _frame(bytes(4097)),
    "smaller content size": _frame(bytes(4095)),
    "no content size": _frame(bytes(4096), write_content_size=False),
    "frame + extra bytes": _frame(bytes(4096)) + b"\x00\x00\x00",
    "two frames": _frame(bytes(2048)) * 2,
    "frame + skippable frame": _frame(bytes(4096)) + b"\x50\x2a\x4d\x18" + struct.pack("<I", 4) + b"abcd",
    "skippable frame": b"\x50\x2a\x4d\x18" + struct.pack("<I", 4) + b"abcd",
    "not a frame": b"hello, world",
    "dictionary id": _with_dict_id(_frame(bytes(4096))),
    "truncated frame": _frame(bytes(4096))[:-1],
    "with checksum, damaged": _frame(bytes(4096), write_checksum=True)[:-1] + b"\x00",
}


@pytest.mark.parametrize("name", list(SEGMENTS))
def test_bad_zstd_segment(zeros_file: tuple[bytes, bytes, dict[str, Any]], tmp_path: Path, name: str) -> None:
    header, _, wire = zeros_file
    wire, region = _with_segment(wire, SEGMENTS[name])
    assert_codes(build(tmp_path / "z.tmodel", wire, region, header), "BAD_COMPRESSED_DATA")


def test_good_replacement_segment_loads(
    zeros_file: tuple[bytes, bytes, dict[str, Any]], tmp_path: Path
) -> None:
    """The harness itself: a different but valid frame (digest recomputed) is accepted."""
    header, _, wire = zeros_file
    wire, region = _with_segment(wire, _frame(bytes(4096), level=19, write_checksum=True))
    path = build(tmp_path / "z.tmodel", wire, region, header)
    assert codes(path) == ("OK", "OK")
    assert torch.equal(tmodel.load(path)["z"], torch.zeros(4096, dtype=torch.uint8))


@pytest.mark.parametrize(("n", "code"), [(0, "BAD_TENSOR"), (4097, "BAD_TENSOR")])
def test_segment_length_out_of_range(
    zeros_file: tuple[bytes, bytes, dict[str, Any]], tmp_path: Path, n: int, code: str
) -> None:
    header, _, wire = zeros_file
    wire, region = _with_segment(wire, bytes(n))
    assert_codes(build(tmp_path / "z.tmodel", wire, region, header), code)


def test_window_above_limit(zeros_file: tuple[bytes, bytes, dict[str, Any]], tmp_path: Path) -> None:
    header, region, wire = zeros_file
    path = build(tmp_path / "z.tmodel", wire, region, header)
    assert outcome(lambda: verify(path, Limits(max_window_size=1024))) == "BAD_COMPRESSED_DATA"
    assert outcome(lambda: tmodel.load(path, limits=Limits(max_window_size=1024))) == "BAD_COMPRESSED_DATA"


def test_bytegroup_plane_replaced(tmp_path: Path) -> None:
    tmodel.save({"w": torch.zeros(256, dtype=torch.float32)}, tmp_path / "w.tmodel")
    header, region, wire = split((tmp_path / "w.tmodel").read_bytes())
    blob = wire["blobs"][0]
    assert blob["codec"] == "bytegroup-zstd" and blob["width"] == 4
    segs = blob["chunks"][0]["segments"]
    planes, pos = [], 0
    for n in segs:
        planes.append(region[pos : pos + n])
        pos += n
    planes[3] = _frame(bytes(255))  # plane 3 must decode to 256 bytes
    seg = b"".join(planes)
    blob["length"] = len(seg)
    blob["chunks"][0] = {"digest": digest(seg), "segments": [len(p) for p in planes]}
    assert_codes(build(tmp_path / "x.tmodel", wire, seg, header), "BAD_COMPRESSED_DATA")


@pytest.mark.parametrize("codec", ["raw", "zstd"])
def test_bool_byte_2_is_bad_value(tmp_path: Path, codec: str) -> None:
    tmodel.save({"m": torch.ones(64, dtype=torch.bool)}, tmp_path / "m.tmodel", codec=codec)
    header, _, wire = split((tmp_path / "m.tmodel").read_bytes())
    values = bytearray([1] * 64)
    values[5] = 2
    seg = bytes(values) if codec == "raw" else _frame(bytes(values))
    assert len(seg) < 64 or codec == "raw"
    wire["blobs"][0]["length"] = len(seg)
    wire["blobs"][0]["chunks"][0] = {"digest": digest(seg), "segments": [len(seg)]}
    path = build(tmp_path / "b.tmodel", wire, seg, header)
    assert_codes(path, "BAD_VALUE")
    with tmodel.open(path) as f:
        assert outcome(lambda: f.get_tensor("m")) == "BAD_VALUE"
        assert outcome(lambda: f.get_slice("m")[4:6]) == "BAD_VALUE"
        assert outcome(lambda: f.get_slice("m")[5]) == "BAD_VALUE"
        assert outcome(lambda: f.get_slice("m")[[1, 5]]) == "BAD_VALUE"  # rows by list: checked alike
        assert outcome(lambda: f.get_slice("m")[[0, 1]]) == "OK"  # only the bytes read are checked


def test_nonzero_padding_with_valid_digests(small_file: Path, tmp_path: Path) -> None:
    header, region, wire = split(small_file.read_bytes())
    b0 = wire["blobs"][0]
    end = b0["offset"] + b0["length"] - HEADER_SIZE
    assert align(end) > end
    damaged = region[:end] + b"\x01" + region[end + 1 :]
    assert_codes(build(tmp_path / "p.tmodel", wire, damaged, header), "BAD_LAYOUT")


def test_huge_expanded_bool_view_is_cheap(tmp_path: Path) -> None:
    """A valid file: one stored byte viewed with stride 0 as a bool tensor of 2^62 elements. Loading it
    must not allocate in proportion to the view (SPEC.md §9): return the view or raise a TModelError."""
    tmodel.save({"m": torch.ones(1, dtype=torch.bool)}, tmp_path / "m.tmodel", codec="raw")
    header, region, wire = split((tmp_path / "m.tmodel").read_bytes())
    wire["tensors"][0]["shape"] = [1 << 62]
    wire["tensors"][0]["strides"] = [0]
    path = build(tmp_path / "big.tmodel", wire, region, header)
    assert outcome(lambda: verify(path)) == "OK"
    load_code = outcome(lambda: tmodel.load(path))
    assert not load_code.startswith("!"), load_code
