"""Files built byte by byte from SPEC.md alone (struct, msgpack, zstandard, xxhash; no tmodel writer code)
are read by the reference reader with exact values. If these fail, the reader or SPEC.md is wrong."""

from __future__ import annotations

import struct
from pathlib import Path

import msgpack
import pytest
import torch
import xxhash
import zstandard

import tmodel

MAGIC = b"\x89TMODEL\n"


def _align(x: int) -> int:
    return (x + 63) // 64 * 64


def _build(
    blobs: list[tuple[bytes, list[dict[str, object]]]],
    codec_info: list[dict[str, object]],
    tensors: list[dict[str, object]],
    root: object,
    metadata: dict[str, object] | None = None,
) -> bytes:
    """Per blob: (stored bytes, chunks) and its codec, width, nbytes, chunk_size (SPEC §3, §5)."""
    header = MAGIC + struct.pack("<II", 1, 0) + bytes(48)
    out = bytearray(header)
    records = []
    for (stored, chunks), info in zip(blobs, codec_info, strict=True):
        out += bytes(_align(len(out)) - len(out))
        records.append({"offset": len(out), "length": len(stored), **info, "chunks": chunks})
        out += stored
    out += bytes(_align(len(out)) - len(out))
    manifest = msgpack.packb(
        {
            "schema_version": 1,
            "required_features": [],
            "checksum": "xxh3-64",
            "blobs": records,
            "tensors": tensors,
            "root": root,
            "metadata": metadata or {},
            "extensions": {},
        },
        use_bin_type=True,
    )
    prefix = struct.pack("<QQH6s", len(out), len(manifest), 1, bytes(6))
    digest = xxhash.xxh3_64_digest(header + manifest + prefix)
    out += manifest + prefix + digest.ljust(32, b"\0") + b"TMODEND\n"
    return bytes(out)


def _chunk(stored: bytes) -> dict[str, object]:
    return {"digest": xxhash.xxh3_64_digest(stored), "segments": [len(stored)]}


def test_raw_blob_with_two_tensors_sharing_it(tmp_path: Path) -> None:
    data = struct.pack("<6f", 0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    chunks = [_chunk(data[:16]), _chunk(data[16:])]
    tensors = [
        {"name": "w", "dtype": "float32", "shape": [2, 3], "strides": [3, 1], "blob": 0, "offset": 0},
        {"name": "w.T", "dtype": "float32", "shape": [3, 2], "strides": [1, 3], "blob": 0, "offset": 0},
        {"name": "e", "dtype": "int64", "shape": [0, 4], "strides": [4, 1], "blob": None, "offset": 0},
    ]
    root = {
        "dict": [["w", {"tensor": 0}], ["t", {"tensor": 1}], [7, {"tuple": [{"tensor": 2}, None, b"\x01"]}]]
    }
    path = tmp_path / "raw.tmodel"
    path.write_bytes(
        _build(
            [(data, chunks)],
            [{"nbytes": 24, "codec": "raw", "width": 1, "chunk_size": 16}],
            tensors,
            root,
            {"note": "hand-made"},
        )
    )
    out = tmodel.load(path)
    expected = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert list(out) == ["w", "t", 7]
    assert torch.equal(out["w"], expected) and torch.equal(out["t"], expected.t())
    assert out["t"].stride() == (1, 3)
    assert out["w"].untyped_storage().data_ptr() == out["t"].untyped_storage().data_ptr()
    assert out[7][0].shape == (0, 4) and out[7][0].dtype == torch.int64 and out[7][1:] == (None, b"\x01")
    with tmodel.open(path) as f:
        assert f.metadata == {"note": "hand-made"}
        assert torch.equal(f.get_slice("w")[1, 1:], torch.tensor([4.0, 5.0]))


def test_bytegroup_zstd_with_raw_plane_fallback(tmp_path: Path) -> None:
    values = torch.tensor([1.5, -2.25, 3.0, 1e-3] * 64, dtype=torch.bfloat16)
    raw = bytes(values.view(torch.uint8).numpy().tobytes())
    planes = [raw[0::2], raw[1::2]]
    cctx = zstandard.ZstdCompressor(level=3, write_content_size=True, write_checksum=True)
    seg0 = planes[0]  # stored raw: SPEC §6.3, a segment as long as its plane is the plane itself
    seg1 = cctx.compress(planes[1])
    assert len(seg1) < len(planes[1])
    stored = seg0 + seg1
    chunks = [{"digest": xxhash.xxh3_64_digest(stored), "segments": [len(seg0), len(seg1)]}]
    tensors = [{"name": "b", "dtype": "bfloat16", "shape": [256], "strides": [1], "blob": 0, "offset": 0}]
    path = tmp_path / "bg.tmodel"
    info = {"nbytes": len(raw), "codec": "bytegroup-zstd", "width": 2, "chunk_size": len(raw)}
    path.write_bytes(_build([(stored, chunks)], [info], tensors, {"tensor": 0}))
    out = tmodel.load(path)
    assert out.dtype == torch.bfloat16 and torch.equal(out.view(torch.int16), values.view(torch.int16))


def test_zstd_chunks_and_offsets_within_a_blob(tmp_path: Path) -> None:
    raw = bytes(range(200)) * 2
    cctx = zstandard.ZstdCompressor(level=1, write_content_size=True, write_checksum=True)
    frames = [cctx.compress(raw[i : i + 128]) for i in range(0, len(raw), 128)]
    segs = [
        f if len(f) < len(raw[i * 128 : i * 128 + 128]) else raw[i * 128 : i * 128 + 128]
        for i, f in enumerate(frames)
    ]
    chunks = [_chunk(s) for s in segs]
    tensors = [{"name": "tail", "dtype": "uint8", "shape": [10], "strides": [1], "blob": 0, "offset": 390}]
    path = tmp_path / "z.tmodel"
    info = {"nbytes": len(raw), "codec": "zstd", "width": 1, "chunk_size": 128}
    path.write_bytes(_build([(b"".join(segs), chunks)], [info], tensors, {"tensor": 0}))
    assert torch.equal(tmodel.load(path), torch.arange(190, 200, dtype=torch.uint8))


def test_a_hand_made_file_with_a_wrong_chunk_digest_is_rejected(tmp_path: Path) -> None:
    data = bytes(8)
    chunks = [{"digest": bytes(8), "segments": [8]}]
    tensors = [{"name": "x", "dtype": "int64", "shape": [], "strides": [], "blob": 0, "offset": 0}]
    path = tmp_path / "bad.tmodel"
    path.write_bytes(
        _build(
            [(data, chunks)],
            [{"nbytes": 8, "codec": "raw", "width": 1, "chunk_size": 8}],
            tensors,
            {"tensor": 0},
        )
    )
    with pytest.raises(tmodel.TModelError) as err:
        tmodel.load(path)
    assert err.value.code == "CHECKSUM_MISMATCH"
