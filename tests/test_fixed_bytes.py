"""Refactors change no byte: a fixed object saves to the bytes recorded before the code was last moved.

Two records. `RECORDED_V2` holds the hashes taken at commit 9c2c4a0 (before the package moved under src/),
when files were written as schema version 2. Schema version 3 changed no byte of this object's content, only
the `schema_version` the manifest states, so the record is still checked, exactly: the file written today,
its manifest taken down to version 2 by the schema chain's own downgrade (tmodel.migrations) and framed
again (same header and blobs, trailer digest recomputed), must hash to the recorded bytes. `RECORDED_V3` holds
the hashes taken when schema version 3 was introduced; schema version 4 changed no byte of this content
either, so the file taken down to version 3 is checked against them the same way. `RECORDED_V4` holds the
hashes taken when schema version 4 was introduced, checked on the file taken down to version 4 (schema
version 5 changed no byte of this content either). `RECORDED_V5` holds the hashes taken when schema version 5
was introduced; schema version 6 added the manifest key `checkpoint` (nil here), which taking the file down
to version 5 removes, so from then on the older forms are one key shorter than the file. `RECORDED_V6` holds
the hashes taken when schema version 6 was introduced; schema version 7 added the manifest key `shards`
(empty here), which taking the file down to version 6 removes. `RECORDED_V7` holds the hashes of the file as
written now, taken when schema version 7 was introduced: the record that catches a changed byte directly.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import msgpack
import pytest
import torch
from torch import nn

import tmodel
import tmodel.migrations as chain
from tmodel.container.digests import BY_ID
from tmodel.container.framing import HEADER_SIZE, TRAILER_SIZE, pack_trailer
from tmodel.manifest.encoding import pack_manifest

RECORDED_V2 = {
    "auto": "7966df545e826db78794e0bbd940f7f0d9092beb7fb60578a7b9ec0617f86f62",
    "raw": "6928eadc6d8f4fbed3a443fdefde6a7a0db22776e0f5237dc195e6640e2dabd0",
}
RECORDED_V3 = {
    "auto": "24f53d80dc15b511ebeb4c9a94c98ef432d6e70d89d3632bd7562910a28ff6f6",
    "raw": "e44e3f745e6b09262cdbc198aad3ac37300995f29a44626a365c685eb784cddd",
}
RECORDED_V4 = {
    "auto": "da9676d8c2f4c3897bec60c267eacc32b9a3917aadf7c74deb0b72977c7e894f",
    "raw": "66845b5379ba8a9a0a401979ed0912a63b2cdbac31039aa1551a6bf6e2c08395",
}
RECORDED_V5 = {
    "auto": "03d8e4da0fc6c54ded3058f9a0b978ff518c989f83445bb01beee81aa5f93b81",
    "raw": "dcf0303e83de4d2eb506642446add8f6bfacecfbdb983f90c9bbc14c20fb0267",
}
RECORDED_V6 = {
    "auto": "b35edc2e8a9ea7501961833cb14a92eb1245f068af4d1329841e14bf4450b091",
    "raw": "08ab3439c25033f0b1eeccb21bff2f40a9d23cf711846963b5c8152c009e8636",
}
RECORDED_V7 = {
    "auto": "dab2cbda66df154c3e6887ba3dd8fbb9880eaf30eede18a8203605f998d11130",
    "raw": "bc263dcc3a1ff7f215b44ca3245408121858eda6807dfaab7012915c48c850e8",
}
#: what taking a version-6 file down to version 5 removes from its manifest: the key `checkpoint`, nil
V6_KEY_BYTES = len(b"\xaacheckpoint\xc0")
#: what taking a version-7 file down to version 6 removes: the key `shards`, empty
V7_KEY_BYTES = len(b"\xa6shards\x90")
DTYPES = ("float64", "float16", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool", "complex64")


def fixed_object() -> dict[str, object]:
    """Modules, views of one storage, a transpose, every codec path, a typed tree, empty and 0-d tensors."""
    g = torch.Generator().manual_seed(1234)
    torch.manual_seed(1234)
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.ReLU(), nn.Embedding(5, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    base = torch.arange(24, dtype=torch.float32)
    return {
        "model": model,
        "state": {"w": base.view(4, 6), "w_t": base.view(4, 6).t(), "half": base[:12]},
        "dtypes": {n: torch.arange(6).to(getattr(torch, n)) for n in DTYPES},
        "tree": {3: (1.5, None, b"\x00\x01"), "name": "fixed", "flags": [True, False], "dt": torch.float16},
        "empty": torch.empty(0, 3),
        "scalar": torch.tensor(2.5),
    }


def _save(tmp_path: Path, codec: str) -> bytes:
    path = tmp_path / "fixed.tmodel"
    tmodel.save(fixed_object(), path, codec=codec, chunk_size=64, metadata={"k": [1, 2.0, "x", None, b"b"]})
    return path.read_bytes()


def as_schema_version(data: bytes, version: int) -> bytes:
    """The same file with its manifest rewritten as an older schema version by the chain's downgrade."""
    offset, length, digest_id = struct.unpack_from("<QQH", data, len(data) - TRAILER_SIZE)
    wire = msgpack.unpackb(data[offset : offset + length], raw=False)
    manifest = pack_manifest(chain.downgrade(wire, version))
    return data[:offset] + manifest + pack_trailer(offset, manifest, BY_ID[digest_id], data[:HEADER_SIZE])


@pytest.mark.parametrize("codec", sorted(RECORDED_V7))
def test_fixed_object_saves_to_the_recorded_bytes(tmp_path: Path, codec: str) -> None:
    data = _save(tmp_path, codec)
    assert hashlib.sha256(data).hexdigest() == RECORDED_V7[codec]


@pytest.mark.parametrize("codec", sorted(RECORDED_V6))
def test_taken_down_to_schema_6_it_is_the_file_schema_6_wrote(tmp_path: Path, codec: str) -> None:
    data = _save(tmp_path, codec)
    v6 = as_schema_version(data, 6)
    assert len(v6) == len(data) - V7_KEY_BYTES  # the version number, and the key version 7 added
    assert hashlib.sha256(v6).hexdigest() == RECORDED_V6[codec]
    (tmp_path / "v6.tmodel").write_bytes(v6)
    with tmodel.open(tmp_path / "v6.tmodel") as f:  # and it is a valid version-6 file
        assert f.reader.source_schema_version == 6
        f.verify()


@pytest.mark.parametrize("codec", sorted(RECORDED_V5))
def test_taken_down_to_schema_5_it_is_the_file_schema_5_wrote(tmp_path: Path, codec: str) -> None:
    data = _save(tmp_path, codec)
    v5 = as_schema_version(data, 5)
    assert len(v5) == len(data) - V7_KEY_BYTES - V6_KEY_BYTES  # the version, and the keys 6 and 7 added
    assert hashlib.sha256(v5).hexdigest() == RECORDED_V5[codec]
    (tmp_path / "v5.tmodel").write_bytes(v5)
    with tmodel.open(tmp_path / "v5.tmodel") as f:  # and it is a valid version-5 file
        assert f.reader.source_schema_version == 5
        f.verify()


@pytest.mark.parametrize("codec", sorted(RECORDED_V4))
def test_taken_down_to_schema_4_it_is_the_file_schema_4_wrote(tmp_path: Path, codec: str) -> None:
    data = _save(tmp_path, codec)
    v4 = as_schema_version(data, 4)
    assert v4 != data and len(v4) == len(data) - V7_KEY_BYTES - V6_KEY_BYTES
    assert hashlib.sha256(v4).hexdigest() == RECORDED_V4[codec]
    (tmp_path / "v4.tmodel").write_bytes(v4)
    with tmodel.open(tmp_path / "v4.tmodel") as f:  # and it is a valid version-4 file
        assert f.reader.source_schema_version == 4
        f.verify()


@pytest.mark.parametrize("codec", sorted(RECORDED_V3))
def test_taken_down_to_schema_3_it_is_the_file_schema_3_wrote(tmp_path: Path, codec: str) -> None:
    data = _save(tmp_path, codec)
    v3 = as_schema_version(data, 3)
    assert v3 != data and len(v3) == len(data) - V7_KEY_BYTES - V6_KEY_BYTES
    assert hashlib.sha256(v3).hexdigest() == RECORDED_V3[codec]
    (tmp_path / "v3.tmodel").write_bytes(v3)
    with tmodel.open(tmp_path / "v3.tmodel") as f:  # and it is a valid version-3 file
        assert f.reader.source_schema_version == 3
        f.verify()


@pytest.mark.parametrize("codec", sorted(RECORDED_V2))
def test_taken_down_to_schema_2_it_is_the_file_schema_2_wrote(tmp_path: Path, codec: str) -> None:
    data = _save(tmp_path, codec)
    v2 = as_schema_version(data, 2)
    assert v2 != data and len(v2) == len(data) - V7_KEY_BYTES - V6_KEY_BYTES
    assert hashlib.sha256(v2).hexdigest() == RECORDED_V2[codec]
    (tmp_path / "v2.tmodel").write_bytes(v2)
    with tmodel.open(tmp_path / "v2.tmodel") as f:  # and it is a valid version-2 file
        assert f.reader.source_schema_version == 2
        f.verify()
