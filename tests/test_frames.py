"""The valid Zstandard frame (SPEC.md §6.4): each numbered rule refuses a frame that breaks it, with
BAD_COMPRESSED_DATA, including frames libzstd decodes without complaint; writers' frames pass; the content
checksum is required from schema version 6 and verified; files migrated or encrypted from older schemas get
checksummed frames."""

from __future__ import annotations

import importlib
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import torch
import xxhash
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tmodel
from tmodel.archive.reader import Reader
from tmodel.codecs import zstd
from tmodel.codecs.frames import CHECKSUMMED_FROM, MAX_BLOCK, check_frame
from tmodel.conformance import make_cases
from tmodel.conformance import zstd_frames as zf
from tmodel.container.framing import HEADER_SIZE, TRAILER_SIZE, align, pack_trailer
from tmodel.errors import TModelError
from tmodel.manifest.encoding import pack_manifest

ROOT = Path(__file__).parent.parent
LIMIT = 256 << 20
TEXT = zf.text(100_000)


def _rule(frame: bytes, expected: int, checksummed: bool = True) -> str:
    """'OK', or the code and the §6.4 rule named by the error of decoding `frame` as a plane."""
    try:
        zstd.decode_segment(frame, expected, LIMIT, checksummed)
    except TModelError as exc:
        rule = exc.message.split("rule ")[1].split(":")[0] if "rule " in exc.message else "-"
        return f"{exc.code} {rule}"
    return "OK"


def _libzstd_accepts(frame: bytes) -> bool:
    try:
        zstandard.ZstdDecompressor().decompress(frame)
    except zstandard.ZstdError:
        return False
    return True


def _frame_header(frame: bytes, fhd: int) -> bytes:
    return frame[:4] + bytes([fhd]) + frame[5:]


# -- each rule, with a frame that breaks it ------------------------------------------------------------------
#: builder name -> (content, the rule that refuses it)
BROKEN: dict[str, tuple[bytes, str]] = {
    "no_checksum": (TEXT, "6"),
    "raw_block_over_window": (os.urandom(2048) + bytes(126 << 10), "7"),
    "rle_block_over_window": (b"\x07" * 100_000, "7"),
    "rle_block_over_128k": (bytes(256 << 10), "7"),
    "huffman_stream_zero_end": (TEXT, "13"),
    "checksum_wrong": (TEXT, "-"),  # the walk passes it; libzstd's checksum verification refuses it
    "reserved_block_type": (TEXT, "8"),
    "blocks_short_of_content_size": (bytes(256 << 10), "9"),
    "compressed_block_over_window": (TEXT, "7"),
    "repeat_mode_first_block": (TEXT, "11"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_broken_frame_is_refused_by_its_rule(name: str) -> None:
    content, rule = BROKEN[name]
    frame = getattr(zf, name)(content)
    assert len(frame) < len(content)  # a frame, not a raw segment
    assert _rule(frame, len(content)) == f"BAD_COMPRESSED_DATA {rule}"
    assert _libzstd_accepts(frame) == (name in zf.LIBZSTD_ACCEPTS)


def test_libzstd_verifies_the_content_checksum() -> None:
    """Rule 6's verification is libzstd's: a wrong checksum fails decompression (so the reference need not
    hash the content again)."""
    frame = zf.checksum_wrong(TEXT)
    with pytest.raises(zstandard.ZstdError, match="checksum"):
        zstandard.ZstdDecompressor().decompress(frame)
    assert "checksum" in _message(lambda: zstd.decode_segment(frame, len(TEXT), LIMIT, False))


def _message(fn: Callable[[], Any]) -> str:
    with pytest.raises(TModelError) as info:
        fn()
    assert info.value.code == "BAD_COMPRESSED_DATA"
    return info.value.message


def test_a_lax_decoder_is_caught_by_the_checksum() -> None:
    """The zero-ended Huffman stream decodes under libzstd to other bytes of the right length; with the
    checksum computed over the original content, libzstd's verification refuses it."""
    frame = zf.huffman_stream_zero_end(TEXT)
    out = zstandard.ZstdDecompressor().decompress(frame)
    assert len(out) == len(TEXT) and out != TEXT
    assert not _libzstd_accepts(frame[:-4] + zf.checksum(TEXT))


def _header_cases() -> dict[str, tuple[bytes, int, str]]:
    good = zf.compress(bytes(4096))
    fhd = good[4]
    assert fhd & 0x20 and fhd & 0x04 and not fhd & 0x03  # single segment, checksum, no dictionary id
    no_size = bytes(zstandard.ZstdCompressor(write_content_size=False, write_checksum=True).compress(TEXT))
    wide = zf.header(4096, 29) + good[zf.blocks(good)[0][0] :]  # a 512 MiB window
    return {
        "bad magic": (b"\x29" + good[1:], 4096, "1"),
        "skippable frame": (b"\x50\x2a\x4d\x18" + struct.pack("<I", 4) + b"abcd", 4096, "1"),
        "cut in the header": (good[:6], 4096, "1"),
        "reserved bit": (_frame_header(good, fhd | 0x08), 4096, "2"),
        "unused bit": (_frame_header(good, fhd | 0x10), 4096, "2"),
        "no content size": (no_size, len(TEXT), "3"),
        "other content size": (good, 4097, "3"),
        "window above the limit": (wide, 4096, "4"),
        "dictionary id": (good[:4] + bytes([fhd | 0x01, 7]) + good[5:], 4096, "5"),
        "bytes after the checksum": (good + b"\x00", 4096, "10"),
        "skippable frame after": (good + b"\x50\x2a\x4d\x18" + struct.pack("<I", 0), 4096, "10"),
        "two frames": (zf.compress(bytes(2048)) * 2, 2048, "10"),
        "checksum cut": (good[:-1], 4096, "10"),
        "cut in a block": (zf.compress(TEXT)[:-10], len(TEXT), "9"),
    }


@pytest.mark.parametrize("case", sorted(_header_cases()))
def test_frame_header_and_end_rules(case: str) -> None:
    frame, expected, rule = _header_cases()[case]
    assert _rule(frame, expected) == f"BAD_COMPRESSED_DATA {rule}"


def test_the_window_limit_is_the_readers() -> None:
    wide = zf.header(len(TEXT), 21) + zf.compress(TEXT)[zf.blocks(zf.compress(TEXT))[0][0] :]
    assert zstd.decode_segment(wide, len(TEXT), 2 << 20, True) == TEXT
    assert "rule 4" in _message(lambda: zstd.decode_segment(wide, len(TEXT), (2 << 20) - 1, True))


def _first_compressed(frame: bytes) -> int:
    return next(at for at, kind, _ in zf.blocks(frame) if kind == zf.COMPRESSED)


def _section_cases() -> dict[str, tuple[bytes, int, str]]:
    frame = zf.compress(TEXT)[:-4]
    at = _first_compressed(frame)
    modes = zf.sequences_modes(frame, at)
    end = at + 3 + zf.blocks(frame)[0][2]

    def changed(i: int, value: int) -> bytes:
        b = bytearray(frame)
        b[i] = value
        return zf.with_checksum(bytes(b), TEXT)

    # RLE literals (2-byte header: 3000 times byte 7), zero sequences, then one byte too many
    rle = bytes([1 | 1 << 2 | (3000 & 15) << 4, 3000 >> 4, 7, 0, 0])
    sums = zf.checksum(b"\x07" * 3000)
    extra = zf.header(3000) + zf.block(zf.COMPRESSED, len(rle), rle, True) + sums
    exact = zf.header(3000) + zf.block(zf.COMPRESSED, 4, rle[:4], True) + sums
    return {
        "treeless literals in the first block": (changed(at + 3, frame[at + 3] | 3), len(TEXT), "11"),
        "reserved bits of the modes": (changed(modes, frame[modes] | 1), len(TEXT), "12"),
        "sequences bitstream ends in zero": (changed(end - 1, 0), len(TEXT), "13"),
        "huffman stream ends in zero": (zf.huffman_stream_zero_end(TEXT), len(TEXT), "13"),
        "bytes after zero sequences": (extra, 3000, "12"),
        "zero sequences, exact": (exact, 3000, "OK"),
    }


@pytest.mark.parametrize("case", sorted(_section_cases()))
def test_compressed_block_section_rules(case: str) -> None:
    frame, expected, rule = _section_cases()[case]
    assert _rule(frame, expected) == ("OK" if rule == "OK" else f"BAD_COMPRESSED_DATA {rule}")


# -- checksums by schema version -----------------------------------------------------------------------------
def test_writers_set_the_content_checksum() -> None:
    for is_plane in (False, True):
        for level in (1, 3, 9):
            frame = zstd.encode_segment(TEXT, level, is_plane)
            assert bytes(frame[:4]) == zf.MAGIC and bytes(frame)[4] & 0x04
            assert bytes(frame)[-4:] == zf.checksum(TEXT)


def test_checksum_required_from_schema_6_only() -> None:
    frame = zf.no_checksum(TEXT)
    assert CHECKSUMMED_FROM == 6
    assert zstd.decode_segment(frame, len(TEXT), LIMIT, False) == TEXT  # a file of schema 5 or older
    assert _rule(frame, len(TEXT), True) == "BAD_COMPRESSED_DATA 6"
    assert _rule(zf.checksum_wrong(TEXT), len(TEXT), False) == "BAD_COMPRESSED_DATA -"  # verified in any


def _split(data: bytes) -> tuple[bytes, bytes, dict[str, Any]]:
    offset, length = struct.unpack_from("<QQ", data, len(data) - TRAILER_SIZE)
    return data[:HEADER_SIZE], data[HEADER_SIZE:offset], msgpack.unpackb(data[offset : offset + length])


def _with_frame(path: Path, out: Path, frame: bytes) -> Path:
    """`path` (one zstd blob of one chunk) with its one frame replaced, digests and lengths made valid."""
    header, _, wire = _split(path.read_bytes())
    blob = wire["blobs"][0]
    blob["length"] = len(frame)
    blob["chunks"] = [{"digest": xxhash.xxh3_64_digest(frame), "segments": [len(frame)]}]
    region = frame + bytes(align(HEADER_SIZE + len(frame)) - HEADER_SIZE - len(frame))
    raw = pack_manifest(wire)
    out.write_bytes(header + region + raw + pack_trailer(HEADER_SIZE + len(region), raw, "xxh3-64", header))
    return out


def _code(fn: Callable[[], Any]) -> str:
    try:
        fn()
    except TModelError as exc:
        return exc.code
    return "OK"


def test_a_schema_6_file_with_an_unchecksummed_frame_is_refused(tmp_path: Path) -> None:
    t = torch.frombuffer(bytearray(TEXT), dtype=torch.uint8)
    tmodel.save({"t": t}, tmp_path / "a.tmodel", codec="zstd")
    assert torch.equal(tmodel.load(tmp_path / "a.tmodel")["t"], t)
    same = _with_frame(tmp_path / "a.tmodel", tmp_path / "b.tmodel", zf.compress(TEXT))
    assert torch.equal(tmodel.load(same)["t"], t)
    bad = _with_frame(tmp_path / "a.tmodel", tmp_path / "c.tmodel", zf.no_checksum(TEXT))
    assert _code(lambda: tmodel.load(bad)) == "BAD_COMPRESSED_DATA"
    with Reader(bad) as r:
        assert _code(r.verify) == "BAD_COMPRESSED_DATA"


def test_released_files_without_checksums_still_load() -> None:
    seen = 0
    released = (ROOT / "conformance" / "golden").glob("v*/*.tmodel")
    for path in sorted(p for p in released if int(p.parent.name[1:]) < CHECKSUMMED_FROM):
        with Reader(path) as r:
            assert r.source_schema_version < CHECKSUMMED_FROM
            r.verify()
            frames = [s for b in range(len(r.manifest.blobs)) for s in _frames(r, b)]
            assert not any(f[4] & 0x04 for f in frames)  # written before rule 6
            seen += len(frames)
    assert seen > 50


def _frames(r: Reader, blob: int) -> list[bytes]:
    b = r.manifest.blobs[blob]
    out = []
    for j, c in enumerate(b.chunks):
        plane = min(b.chunk_size, b.nbytes - j * b.chunk_size) // b.width
        out += [s for s, n in zip(r.chunk_segments(blob, j), c.segments, strict=True) if n < plane]
    return out


def test_migrating_an_old_file_checksums_its_frames(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    importlib.import_module("examples.migrations.attention")  # registers the example layers
    src = ROOT / "examples" / "migrations" / "fixtures" / "example.Scale" / "v1.tmodel"
    out = tmp_path / "s.tmodel"
    assert tmodel.migrate_file(src, out)
    with Reader(src) as old, Reader(out) as new:
        assert old.source_schema_version < CHECKSUMMED_FROM <= new.source_schema_version
        assert any(_frames(old, b) for b in range(len(old.manifest.blobs)))
        assert not any(f[4] & 0x04 for b in range(len(old.manifest.blobs)) for f in _frames(old, b))
        frames = [f for b in range(len(new.manifest.blobs)) for f in _frames(new, b)]
        assert frames and all(f[4] & 0x04 for f in frames)
        new.verify()
    before, after = tmodel.load(src), tmodel.load(out)
    assert torch.equal(before["input"], after["input"]) and torch.equal(before["output"], after["output"])
    down = tmp_path / "d.tmodel"  # from a schema-6 file, untouched blobs are copied byte for byte again
    assert tmodel.migrate_file(out, down, targets={"example.Scale": 1})
    with Reader(out) as a, Reader(down) as b:
        i, k = ([t.name for t in r.manifest.tensors].index("input") for r in (a, b))
        blob_a, blob_b = a.manifest.tensors[i].blob, b.manifest.tensors[k].blob
        assert blob_a is not None and blob_b is not None
        assert a.manifest.blobs[blob_a].chunks == b.manifest.blobs[blob_b].chunks


def test_encrypting_an_old_file_checksums_its_frames(tmp_path: Path) -> None:
    src = ROOT / "conformance" / "golden" / "v5" / "chunk_edges.tmodel"
    key = bytes(range(32))
    out, back = tmp_path / "e.tmodel", tmp_path / "d.tmodel"
    tmodel.encrypt_file(src, out, key)
    tmodel.decrypt_file(out, back, key=key)
    with Reader(back) as r:
        frames = [f for b in range(len(r.manifest.blobs)) for f in _frames(r, b)]
        assert frames and all(f[4] & 0x04 for f in frames)
        r.verify()


# -- writers' frames pass; nothing but TModelError for any frame ---------------------------------------------
@st.composite
def _contents(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(1, 3 * MAX_BLOCK))
    kind = draw(st.sampled_from(["pattern", "text", "random", "zeros"]))
    if kind == "pattern":
        unit = draw(st.binary(min_size=1, max_size=40))
        return (unit * (n // len(unit) + 1))[:n]
    if kind == "text":
        return zf.text(n, draw(st.integers(0, 9)))
    return os.urandom(n) if kind == "random" else bytes(n)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_contents(), st.sampled_from([-7, -1, 1, 3, 6, 19]), st.booleans())
def test_writers_frames_pass_the_walk(content: bytes, level: int, is_plane: bool) -> None:
    seg = zstd.encode_segment(content, level, is_plane)
    if len(seg) < len(content):
        check_frame(seg, len(content), LIMIT, True)
    assert bytes(zstd.decode_segment(seg, len(content), LIMIT, True)) == content


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([TEXT[:5000], TEXT, bytes(300_000), zf.text(200_000, 1)]),
    st.lists(
        st.tuples(st.integers(0, 1 << 30), st.integers(0, 3), st.integers(0, 255)), min_size=1, max_size=4
    ),
)
def test_mutated_frames_raise_only_tmodel_errors(content: bytes, edits: list[tuple[int, int, int]]) -> None:
    frame = bytearray(zf.compress(content))
    for at, op, value in edits:
        i = at % len(frame)
        if op == 0:
            frame[i] ^= 1 << (value & 7)
        elif op == 1:
            frame[i] = value
        elif op == 2:
            del frame[i]
        else:
            frame.insert(i, value)
    try:
        out = zstd.decode_segment(bytes(frame), len(content), LIMIT, True)
    except TModelError as exc:
        assert exc.code == "BAD_COMPRESSED_DATA"
        verdict = exc.code
    else:
        assert len(out) == len(content)
        verdict = "OK"
    if len(frame) <= len(content):  # one decoding for every reader: the independent one agrees
        assert _independent_rule(IR, bytes(frame), len(content)).split()[0] == verdict


def test_the_corpus_cases_libzstd_accepts() -> None:
    """Each decoder-differential case of the corpus (ATTACKS.md line 36): libzstd decodes its frame exactly
    when make_cases says so (LIBZSTD_ACCEPTS), and the reference refuses every one [BAD_COMPRESSED_DATA]."""
    names = [n for n, h in make_cases.HOSTILE.items() if h.line == 36]
    assert set(names) > make_cases.LIBZSTD_ACCEPTS and len(make_cases.LIBZSTD_ACCEPTS) == 5
    for name in names:
        path = ROOT / "conformance" / "cases" / "hostile" / f"{name}.tmodel"
        _, _, wire = _split(path.read_bytes())
        blob = wire["blobs"][0]
        frame = path.read_bytes()[blob["offset"] : blob["offset"] + blob["length"]]
        assert _libzstd_accepts(frame) == (name in make_cases.LIBZSTD_ACCEPTS), name
        assert _code(lambda p=path: tmodel.load(p)) == "BAD_COMPRESSED_DATA", name
        assert _independent_rule(IR, frame, blob["nbytes"], True).startswith("BAD_COMPRESSED_DATA"), name


# -- the independent reader applies the same rules -----------------------------------------------------------
def _independent() -> Any:
    """conformance/independent_reader.py, which does not import tmodel."""
    spec = importlib.util.spec_from_file_location(
        "independent_reader", ROOT / "conformance" / "independent_reader.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _independent_rule(ir: Any, frame: bytes, expected: int, checksummed: bool = True) -> str:
    try:
        ir.zstd_segment(frame, expected, checksummed)
    except ir.ReaderError as exc:
        rule = str(exc).split("rule ")[1].split(":")[0] if "rule " in str(exc) else "-"
        return f"{exc.code} {rule}"
    return "OK"


def test_the_independent_reader_refuses_the_same_frames() -> None:
    ir = IR
    cases = [(getattr(zf, name)(c), len(c), r) for name, (c, r) in BROKEN.items()]
    cases += list(_header_cases().values()) + list(_section_cases().values())
    for frame, expected, rule in cases:
        if len(frame) > expected:
            continue  # not a frame for this plane: a segment length the manifest check refuses
        assert _independent_rule(ir, frame, expected) == _rule(frame, expected), (rule, frame[:16].hex())
    frame = zf.no_checksum(TEXT)
    assert ir.zstd_segment(frame, len(TEXT), False) == TEXT
    for content in (TEXT, bytes(300_000), os.urandom(200_000), zf.text(400_000, 3)):
        seg = zstd.encode_segment(content, 1, True)
        assert bytes(ir.zstd_segment(bytes(seg), len(content), True)) == content


IR = _independent()
