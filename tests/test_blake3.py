"""The blake3 checksum (schema 6, SPEC.md §7): the reference vector, one-shot and incremental hashing
agree at every size (threads or not), files written with it round-trip and catch a flipped bit, and a
version-5 manifest cannot name it."""

from __future__ import annotations

import struct
from pathlib import Path

import msgpack
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tmodel
import tmodel.migrations as chain
from tmodel.container import digests
from tmodel.container.digests import BY_ID, CRYPTOGRAPHIC, Hasher, digest_function
from tmodel.container.framing import HEADER_SIZE, TRAILER_SIZE, pack_trailer
from tmodel.errors import TModelError
from tmodel.manifest.encoding import pack_manifest


def test_the_reference_vector_and_the_table() -> None:
    assert digest_function("blake3")(b"abc").hex() == (
        "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    )
    assert digests.ALGORITHMS["blake3"][:2] == (3, 32) and BY_ID[3] == "blake3"
    assert {"sha256", "blake3"} == CRYPTOGRAPHIC


@settings(max_examples=40, deadline=None)
@given(st.integers(0, (3 << 20) + 7), st.lists(st.integers(1, 1 << 20), min_size=1, max_size=4))
def test_one_shot_threaded_and_incremental_digests_agree(size: int, cuts: list[int]) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    h = Hasher("blake3")
    start = 0
    for cut in cuts:
        h.update(data[start : start + cut])
        start += cut
    h.update(data[start:])
    assert h.digest() == digest_function("blake3")(data) == digest_function("blake3")(memoryview(data))


def test_a_blake3_file_round_trips_and_catches_a_flipped_bit(tmp_path: Path) -> None:
    obj = {"w": torch.randn(1000, 300), "i": torch.arange(10)}
    path = tmp_path / "b.tmodel"
    tmodel.save(obj, path, checksum="blake3")
    back = tmodel.load(path)
    assert torch.equal(back["w"], obj["w"]) and torch.equal(back["i"], obj["i"])
    with tmodel.open(path) as f:
        assert f.reader.manifest.checksum == "blake3"
        blob = f.reader.manifest.blobs[0]
    data = bytearray(path.read_bytes())
    data[blob.offset + 5] ^= 0x01  # inside the first chunk's stored bytes
    bad = tmp_path / "bad.tmodel"
    bad.write_bytes(bytes(data))
    with pytest.raises(TModelError) as err:
        tmodel.load(bad)
    assert err.value.code == "CHECKSUM_MISMATCH"


def _manifest_as(data: bytes, edit: object) -> bytes:
    offset, length, digest_id = struct.unpack_from("<QQH", data, len(data) - TRAILER_SIZE)
    wire = msgpack.unpackb(data[offset : offset + length], raw=False)
    edit(wire)  # type: ignore[operator]
    manifest = pack_manifest(wire)
    return data[:offset] + manifest + pack_trailer(offset, manifest, BY_ID[digest_id], data[:HEADER_SIZE])


def test_a_version_5_manifest_cannot_name_blake3(tmp_path: Path) -> None:
    path = tmp_path / "b.tmodel"
    tmodel.save({"w": torch.ones(4)}, path, checksum="blake3")

    def as_v5(w: dict[str, object]) -> None:
        del w["checkpoint"], w["shards"]
        w["schema_version"] = 5

    (tmp_path / "v5.tmodel").write_bytes(_manifest_as(path.read_bytes(), as_v5))
    with pytest.raises(TModelError) as err:
        tmodel.load(tmp_path / "v5.tmodel")
    assert err.value.code == "UNKNOWN_CHECKSUM"
    with tmodel.open(path) as f:
        current = f.reader.manifest.to_wire()
    with pytest.raises(ValueError, match="version 5 has no checksum 'blake3'"):
        chain.downgrade(current, 5)
