"""Conversion: strict safetensors reading/writing, interop with the reference package, HF sharded indexes,
torch.save files, and round trips .tmodel <-> .safetensors <-> .pt for every safetensors dtype."""

from __future__ import annotations

import json
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
import safetensors
import safetensors.torch
import torch

import tmodel
from tmodel.archive.reader import Reader
from tmodel.errors import TModelError
from tmodel.interop.convert import convert, read_torch
from tmodel.interop.safetensors import (
    JSON_KEYS,
    ST_DTYPES,
    read_safetensors,
    read_safetensors_index,
    write_safetensors,
)
from tmodel.tensors.dtypes import TORCH_DTYPES

ST_NAMES = sorted(ST_DTYPES.values())
SHAPES: list[tuple[int, ...]] = [(3, 5), (), (0, 4), (7,)]
#: dtypes torch can neither compute with nor convert to: compared and sampled by their bytes
BYTES_ONLY = ("float8_e8m0fnu", "float4_e2m1fn_x2")


def shapes(dtype: str) -> list[tuple[int, ...]]:
    """SHAPES, less the 0-d shape for float4_e2m1fn_x2: safetensors F4 cannot hold a single pair."""
    return [s for s in SHAPES if s or dtype != "float4_e2m1fn_x2"]


def sample(dtype: str, shape: tuple[int, ...] = (3, 5), seed: int = 0) -> torch.Tensor:
    """Deterministic values of any dtype; integer dtypes get random bit patterns over their full range."""
    dt = TORCH_DTYPES[dtype]
    g = torch.Generator().manual_seed(seed * 1000 + zlib.crc32(dtype.encode()) % 1000)
    if dt == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    if dt.is_complex:
        return torch.randn(shape, generator=g, dtype=dt)
    if dt.is_floating_point and dtype not in BYTES_ONLY:
        return (torch.randn(shape, generator=g) * 4).to(dt)
    n = torch.Size(shape).numel() * dt.itemsize
    return torch.randint(0, 256, (n,), dtype=torch.uint8, generator=g).view(dt).reshape(shape)


def every_dtype() -> dict[str, torch.Tensor]:
    return {f"{d}.{i}": sample(d, s, i) for d in ST_NAMES for i, s in enumerate(shapes(d))}


def assert_same(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    if str(want.dtype).removeprefix("torch.") not in BYTES_ONLY:  # torch.equal has no kernel for those
        assert torch.equal(got, want)
    assert torch.equal(got.reshape(-1).view(torch.uint8), want.reshape(-1).view(torch.uint8))


def assert_same_dict(got: Any, want: dict[str, torch.Tensor]) -> None:
    assert isinstance(got, dict)
    assert list(got) == list(want)
    for k in want:
        assert_same(got[k], want[k])


def code_of(exc: pytest.ExceptionInfo[TModelError]) -> str:
    return exc.value.code


# -- our reader and writer ---------------------------------------------------------------------------------
def test_dtype_table_covers_reference_package() -> None:
    ref = safetensors.torch._TYPES  # the reference's own name -> dtype table, which lacks F8_E8M0 and F4
    assert set(ST_DTYPES) - set(ref) == {"F8_E8M0", "F4"}
    for st_name, ours in ST_DTYPES.items():
        if st_name in ref:
            assert ref[st_name] == TORCH_DTYPES[ours]
    # the reference writes both from torch's dtype names (its Rust side knows them)
    assert (
        safetensors.torch._SIZE[torch.float8_e8m0fnu] == safetensors.torch._SIZE[torch.float4_e2m1fn_x2] == 1
    )


def _header(path: Path) -> dict[str, Any]:
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    return dict(json.loads(path.read_bytes()[8 : 8 + n]))


def test_reference_package_e8m0_and_f4_files_read_as_torch_has_them(tmp_path: Path) -> None:
    """safetensors 0.8 writes float8_e8m0fnu as F8_E8M0 and float4_e2m1fn_x2 as F4 counting 4-bit values (the
    last dimension doubled, the bytes as torch holds them); ours reads both back to torch's shapes and bytes,
    and `tmodel convert` carries them into a .tmodel file."""
    e8 = torch.tensor([0, 1, 127, 128, 254, 255], dtype=torch.uint8).view(torch.float8_e8m0fnu).reshape(2, 3)
    f4 = torch.tensor([0x21, 0x43, 0x65, 0x87, 0xA9, 0xCB], dtype=torch.uint8).view(torch.float4_e2m1fn_x2)
    tensors = {"e8": e8, "f4": f4.reshape(2, 3), "f4_empty": f4[:0]}
    path = tmp_path / "ref.safetensors"
    safetensors.torch.save_file(tensors, str(path))
    header = _header(path)
    assert header["e8"] == {"dtype": "F8_E8M0", "shape": [2, 3], "data_offsets": header["e8"]["data_offsets"]}
    assert header["f4"]["dtype"] == "F4" and header["f4"]["shape"] == [2, 6]
    assert header["f4_empty"]["shape"] == [0]
    got, _ = read_safetensors(path)
    for k, t in tensors.items():
        assert_same(got[k], t)
    assert got["f4"].reshape(-1).view(torch.uint8).tolist() == [0x21, 0x43, 0x65, 0x87, 0xA9, 0xCB]
    convert(path, tmp_path / "x.tmodel")
    assert_same_dict(tmodel.load(tmp_path / "x.tmodel"), tensors)
    with tmodel.open(tmp_path / "x.tmodel") as f:
        assert [t.dtype for t in f.manifest.tensors] == [
            "float8_e8m0fnu",
            "float4_e2m1fn_x2",
            "float4_e2m1fn_x2",
        ]


def test_hand_written_f4_file_per_the_safetensors_format(tmp_path: Path) -> None:
    """F4, as the safetensors format defines it: shape in 4-bit values, data_offsets in bytes."""
    data = bytes([0x10, 0x32, 0x54, 0x76])
    path = raw_file(tmp_path, {"x": {"dtype": "F4", "shape": [2, 4], "data_offsets": [0, 4]}}, data)
    got, _ = read_safetensors(path)
    assert got["x"].dtype == torch.float4_e2m1fn_x2 and got["x"].shape == (2, 2)
    assert got["x"].reshape(-1).view(torch.uint8).tolist() == list(data)
    ref = safetensors.torch.load_file(str(path))["x"]  # the reference package agrees
    assert_same(got["x"], ref)


def test_our_f4_files_have_the_reference_header(tmp_path: Path) -> None:
    t = sample("float4_e2m1fn_x2", (3, 5))
    ours, ref = tmp_path / "ours.safetensors", tmp_path / "ref.safetensors"
    write_safetensors({"x": t}, ours)
    safetensors.torch.save_file({"x": t}, str(ref))
    assert _header(ours) == _header(ref) == {"x": {"dtype": "F4", "shape": [3, 10], "data_offsets": [0, 15]}}
    assert ours.read_bytes()[-15:] == ref.read_bytes()[-15:]
    with pytest.raises(TModelError) as e:
        write_safetensors({"x": t[0, 0]}, tmp_path / "scalar.safetensors")  # a 0-d pair has no F4 shape
    assert code_of(e) == "UNSUPPORTED_TYPE"


@pytest.mark.parametrize("dtype", ST_NAMES)
def test_write_then_read_every_dtype(tmp_path: Path, dtype: str) -> None:
    tensors = {f"t{i}": sample(dtype, s, i) for i, s in enumerate(shapes(dtype))}
    path = tmp_path / "x.safetensors"
    write_safetensors(tensors, path, metadata={"format": "pt"})
    got, meta = read_safetensors(path)
    assert_same_dict(got, tensors)
    assert meta == {"format": "pt"}


@pytest.mark.parametrize("dtype", ST_NAMES)
def test_our_files_load_with_reference_package(tmp_path: Path, dtype: str) -> None:
    tensors = {f"t{i}": sample(dtype, s, i) for i, s in enumerate(shapes(dtype))}
    path = tmp_path / "x.safetensors"
    write_safetensors(tensors, path, metadata={"a": "1", "b": "two"})
    got = safetensors.torch.load_file(str(path))
    assert set(got) == set(tensors)
    for k, t in tensors.items():
        assert_same(got[k], t)
    with safetensors.safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"a": "1", "b": "two"}


def test_reference_files_read_by_ours(tmp_path: Path) -> None:
    tensors = every_dtype()
    path = tmp_path / "ref.safetensors"
    safetensors.torch.save_file(tensors, str(path), metadata={"format": "pt", "x": "y"})
    got, meta = read_safetensors(path)
    assert set(got) == set(tensors)
    for k, t in tensors.items():
        assert_same(got[k], t)
    assert meta == {"format": "pt", "x": "y"}


def test_tied_and_strided_tensors_are_written_as_copies(tmp_path: Path) -> None:
    w = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tensors = {"w": w, "w_tied": w, "wt": w.t(), "row": w[1], "neg": torch.arange(3.0)._neg_view()}
    path = tmp_path / "tied.safetensors"
    write_safetensors(tensors, path)
    ref = safetensors.torch.load_file(str(path))
    ours, _ = read_safetensors(path)
    for got in (ref, ours):
        for k, t in tensors.items():
            assert_same(got[k], t.resolve_neg().contiguous())
    assert ours["w"].data_ptr() != ours["w_tied"].data_ptr()
    assert os.path.getsize(path) == 8 + _header_len(path) + 4 * (12 + 12 + 12 + 4 + 3)


def _header_len(path: Path) -> int:
    return int(struct.unpack("<Q", path.read_bytes()[:8])[0])


def test_writer_refuses_what_safetensors_cannot_hold(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    with pytest.raises(TModelError) as e:
        write_safetensors({"c": torch.zeros(2, dtype=torch.complex128)}, path)
    assert code_of(e) == "UNSUPPORTED_TYPE"
    with pytest.raises(TModelError) as e:
        write_safetensors({"__metadata__": torch.zeros(2)}, path)
    assert code_of(e) == "BAD_NAME"
    with pytest.raises(TModelError) as e:
        write_safetensors({"a": torch.zeros(2)}, path, metadata={"a": 1})  # type: ignore[dict-item]
    assert code_of(e) == "UNSUPPORTED_TYPE"
    assert os.listdir(tmp_path) == []  # nothing, not even a temp file


def test_writer_into_missing_directory_is_io_error(tmp_path: Path) -> None:
    with pytest.raises(TModelError) as e:
        write_safetensors({"a": torch.zeros(2)}, tmp_path / "no" / "x.safetensors")
    assert code_of(e) == "IO_ERROR"


# -- hostile headers ---------------------------------------------------------------------------------------
def raw_file(tmp_path: Path, header: bytes | dict[str, Any], data: bytes = b"", n: int | None = None) -> Path:
    if isinstance(header, dict):
        header = json.dumps(header).encode()
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(struct.pack("<Q", len(header) if n is None else n) + header + data)
    return path


def f32(begin: int, end: int, shape: list[int]) -> dict[str, Any]:
    return {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}


HOSTILE: list[tuple[str, bytes | dict[str, Any], bytes, int | None, str]] = [
    ("header longer than file", {"a": f32(0, 4, [1])}, bytes(4), 10_000, "TRUNCATED"),
    ("header over 100 MB", b"{}", b"", 100_000_001, "LIMIT_EXCEEDED"),
    (
        "duplicate keys",
        b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        b'"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        bytes(4),
        None,
        "BAD_SOURCE",
    ),
    ("overlapping offsets", {"a": f32(0, 8, [2]), "b": f32(4, 12, [2])}, bytes(12), None, "BAD_LAYOUT"),
    ("same offsets twice", {"a": f32(0, 8, [2]), "b": f32(0, 8, [2])}, bytes(8), None, "BAD_LAYOUT"),
    ("hole between tensors", {"a": f32(0, 4, [1]), "b": f32(8, 12, [1])}, bytes(12), None, "BAD_LAYOUT"),
    ("hole at the start", {"a": f32(4, 8, [1])}, bytes(8), None, "BAD_LAYOUT"),
    ("trailing bytes", {"a": f32(0, 4, [1])}, bytes(5), None, "BAD_LAYOUT"),
    ("data cut short", {"a": f32(0, 8, [2])}, bytes(4), None, "TRUNCATED"),
    ("shape/size mismatch", {"a": f32(0, 8, [3])}, bytes(8), None, "BAD_TENSOR"),
    ("shape overflow", {"a": f32(0, 0, [2**40, 2**40])}, b"", None, "BAD_TENSOR"),
    (
        "unknown dtype",  # safetensors has F6_E2M3, torch has no such dtype
        {"a": {"dtype": "F6_E2M3", "shape": [4], "data_offsets": [0, 3]}},
        bytes(3),
        None,
        "UNKNOWN_DTYPE",
    ),
    (
        "F4 values not ending at a byte",
        {"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}},
        bytes(2),
        None,
        "BAD_TENSOR",
    ),
    (
        "F4 size mismatch",
        {"a": {"dtype": "F4", "shape": [4], "data_offsets": [0, 3]}},
        bytes(3),
        None,
        "BAD_TENSOR",
    ),
    (
        "F4 rows of an odd length",  # a valid safetensors file that has no float4_e2m1fn_x2 form
        {"a": {"dtype": "F4", "shape": [2, 3], "data_offsets": [0, 3]}},
        bytes(3),
        None,
        "UNSUPPORTED_TYPE",
    ),
    (
        "F4 shape overflow",
        {"a": {"dtype": "F4", "shape": [2**62, 2**62], "data_offsets": [0, 0]}},
        b"",
        None,
        "BAD_TENSOR",
    ),
    ("not JSON", b"{not json", b"", None, "BAD_SOURCE"),
    ("not UTF-8", b'{"\xff":1}', b"", None, "BAD_SOURCE"),
    ("NaN literal", b'{"__metadata__":{"a":NaN}}', b"", None, "BAD_SOURCE"),
    ("leading space", b' {"a":1}', b"", None, "BAD_SOURCE"),
    ("metadata not str", {"__metadata__": {"a": 1}}, b"", None, "BAD_SOURCE"),
    ("extra tensor key", {"a": {**f32(0, 4, [1]), "x": 1}}, bytes(4), None, "BAD_SOURCE"),
    (
        "float offsets",
        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0.0, 4]}},
        bytes(4),
        None,
        "BAD_SOURCE",
    ),
    ("negative dim", {"a": f32(0, 4, [-1])}, bytes(4), None, "BAD_SOURCE"),
    ("bool as dim", {"a": f32(0, 4, [True])}, bytes(4), None, "BAD_SOURCE"),
    ("backwards offsets", {"a": f32(4, 0, [1])}, bytes(4), None, "BAD_LAYOUT"),
    (
        "bool byte 2",
        {"a": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}},
        b"\x01\x02",
        None,
        "BAD_VALUE",
    ),
]


@pytest.mark.parametrize(
    ("header", "data", "n", "code"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_safetensors(
    tmp_path: Path, header: bytes | dict[str, Any], data: bytes, n: int | None, code: str
) -> None:
    path = raw_file(tmp_path, header, data, n)
    with pytest.raises(TModelError) as e:
        read_safetensors(path)
    assert code_of(e) == code


def test_header_must_be_an_object_and_file_long_enough(tmp_path: Path) -> None:
    with pytest.raises(TModelError) as e:
        read_safetensors(raw_file(tmp_path, b"[]"))
    assert code_of(e) == "BAD_SOURCE"  # does not even start with '{'
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"\x02\0\0")
    with pytest.raises(TModelError) as e:
        read_safetensors(path)
    assert code_of(e) == "TRUNCATED"
    assert read_safetensors(raw_file(tmp_path, b"{}")) == ({}, {})


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TModelError) as e:
        read_safetensors(tmp_path / "missing.safetensors")
    assert code_of(e) == "IO_ERROR"
    with pytest.raises(TModelError) as e:
        read_safetensors(tmp_path)
    assert code_of(e) == "NOT_REGULAR_FILE"


# -- Hugging Face sharded index ----------------------------------------------------------------------------
def make_index(
    tmp_path: Path, weight_map: dict[str, str] | None = None
) -> tuple[Path, dict[str, torch.Tensor]]:
    a = {"model.embed.weight": sample("bfloat16", (4, 3)), "model.layers.0.w": sample("float32", (2, 2))}
    b = {"model.layers.1.w": sample("float16", (5,)), "lm_head.weight": sample("int8", (3,))}
    safetensors.torch.save_file(
        a, str(tmp_path / "model-00001-of-00002.safetensors"), metadata={"format": "pt"}
    )
    safetensors.torch.save_file(
        b, str(tmp_path / "model-00002-of-00002.safetensors"), metadata={"format": "pt"}
    )
    if weight_map is None:
        weight_map = {k: "model-00001-of-00002.safetensors" for k in a}
        weight_map |= {k: "model-00002-of-00002.safetensors" for k in b}
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 54}, "weight_map": weight_map}))
    return index, {**a, **b}


def test_sharded_index_converts_to_tmodel(tmp_path: Path) -> None:
    index, tensors = make_index(tmp_path)
    got, meta = read_safetensors_index(index)
    assert set(got) == set(tensors)
    assert meta == {"total_size": 54, "format": "pt"}
    out = tmp_path / "model.tmodel"
    convert(index, out)
    with tmodel.open(out) as f:
        assert f.metadata == {"total_size": 54, "format": "pt"}
        loaded = f.load()
    assert set(loaded) == set(tensors)
    for k, t in tensors.items():
        assert_same(loaded[k], t)


@pytest.mark.parametrize(
    "shard", ["../x.safetensors", "/tmp/x.safetensors", "sub/x.safetensors", "..", "a\\b.safetensors", ""]
)
def test_index_rejects_path_traversal(tmp_path: Path, shard: str) -> None:
    index, _ = make_index(tmp_path, {"model.embed.weight": shard})
    with pytest.raises(TModelError) as e:
        convert(index, tmp_path / "out.tmodel")
    assert code_of(e) == "BAD_NAME"
    assert not (tmp_path / "out.tmodel").exists()


def test_index_tensor_missing_from_its_shard(tmp_path: Path) -> None:
    index, _ = make_index(tmp_path)
    wm = json.loads(index.read_text())["weight_map"]
    wm["lm_head.weight"] = "model-00001-of-00002.safetensors"  # lives in shard 2
    index.write_text(json.dumps({"weight_map": wm}))
    with pytest.raises(TModelError) as e:
        read_safetensors_index(index)
    assert code_of(e) == "BAD_TENSOR"


def test_index_shard_with_unmapped_tensor(tmp_path: Path) -> None:
    index, _ = make_index(tmp_path)
    wm = json.loads(index.read_text())["weight_map"]
    del wm["lm_head.weight"]
    index.write_text(json.dumps({"weight_map": wm}))
    with pytest.raises(TModelError) as e:
        read_safetensors_index(index)
    assert code_of(e) == "BAD_TENSOR"


def test_index_missing_shard_and_bad_json(tmp_path: Path) -> None:
    index, _ = make_index(tmp_path)
    os.unlink(tmp_path / "model-00002-of-00002.safetensors")
    with pytest.raises(TModelError) as e:
        read_safetensors_index(index)
    assert code_of(e) == "IO_ERROR"
    index.write_text('{"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}}')
    with pytest.raises(TModelError) as e:
        read_safetensors_index(index)
    assert code_of(e) == "BAD_SOURCE"
    index.write_text('{"weight_map": ["x.safetensors"]}')
    with pytest.raises(TModelError) as e:
        read_safetensors_index(index)
    assert code_of(e) == "BAD_SOURCE"


# -- round trips through convert ---------------------------------------------------------------------------
def test_round_trip_every_dtype_through_all_formats(tmp_path: Path) -> None:
    tensors = every_dtype()
    meta = {"format": "pt", "note": "héllo"}
    src = tmp_path / "a.tmodel"
    tmodel.save(tensors, src, metadata=meta)
    chain = [
        "b.safetensors",
        "c.pt",
        "d.tmodel",
        "e.safetensors",
        "f.tmodel",
        "g.pth",
        "h.safetensors",
        "i.bin",
    ]
    prev = src
    for name in chain:
        convert(prev, tmp_path / name)
        prev = tmp_path / name
    assert_same_dict(tmodel.load(tmp_path / "d.tmodel"), tensors)
    assert_same_dict(tmodel.load(tmp_path / "f.tmodel"), tensors)
    assert_same_dict(torch.load(tmp_path / "i.bin", weights_only=True), tensors)
    assert_same_dict(read_safetensors(tmp_path / "h.safetensors")[0], tensors)
    assert read_safetensors(tmp_path / "b.safetensors")[1] == meta
    convert(tmp_path / "b.safetensors", tmp_path / "meta.tmodel")
    with tmodel.open(tmp_path / "meta.tmodel") as f:
        assert f.metadata == meta  # via .safetensors: kept
    with tmodel.open(tmp_path / "d.tmodel") as f:
        assert f.metadata == {}  # via .pt, which has no metadata
    ref = safetensors.torch.load_file(str(tmp_path / "e.safetensors"))
    for k, t in tensors.items():
        assert_same(ref[k], t)


def test_metadata_values_survive_safetensors_exactly(tmp_path: Path) -> None:
    meta: dict[str, Any] = {
        "name": "m",
        "step": 10,
        "lr": 0.5,
        "neg_zero": -0.0,
        "big": 2**63 + 5,
        "flag": True,
        "none": None,
        "tags": ["a", 1, [2.5]],
        "cfg": {"hidden": 64, "act": "gelu"},
        "looks_json": "[1]",
    }
    src = tmp_path / "a.tmodel"
    tmodel.save({"w": torch.ones(2)}, src, metadata=meta)
    convert(src, tmp_path / "b.safetensors")
    with safetensors.safe_open(str(tmp_path / "b.safetensors"), framework="pt") as f:
        raw = f.metadata()
    assert raw["name"] == "m" and raw["step"] == "10" and raw["looks_json"] == "[1]"
    assert json.loads(raw[JSON_KEYS]) == [k for k in meta if not isinstance(meta[k], str)]
    convert(tmp_path / "b.safetensors", tmp_path / "c.tmodel")
    with tmodel.open(tmp_path / "c.tmodel") as f:
        back = f.metadata
    assert back == meta
    assert [type(v) for v in back.values()] == [type(v) for v in meta.values()]
    assert str(back["neg_zero"]) == "-0.0"


@pytest.mark.parametrize(
    ("meta", "code"),
    [
        ({"b": b"\x00"}, "UNSUPPORTED_TYPE"),
        ({"x": float("inf")}, "UNSUPPORTED_TYPE"),
        ({JSON_KEYS: "[]"}, "UNSUPPORTED_TYPE"),
    ],
)
def test_metadata_safetensors_cannot_hold_is_an_error(
    tmp_path: Path, meta: dict[str, Any], code: str
) -> None:
    src = tmp_path / "a.tmodel"
    tmodel.save({"w": torch.ones(2)}, src, metadata=meta)
    with pytest.raises(TModelError) as e:
        convert(src, tmp_path / "b.safetensors")
    assert code_of(e) == code
    assert not (tmp_path / "b.safetensors").exists()


def test_bad_json_marker_in_safetensors_metadata(tmp_path: Path) -> None:
    path = tmp_path / "a.safetensors"
    safetensors.torch.save_file({"w": torch.ones(1)}, str(path), metadata={JSON_KEYS: '["nope"]'})
    with pytest.raises(TModelError) as e:
        convert(path, tmp_path / "b.tmodel")
    assert code_of(e) == "BAD_SOURCE"


def test_nested_checkpoint_to_safetensors_is_refused_but_pt_round_trips(tmp_path: Path) -> None:
    ckpt = {"model": {"w": torch.ones(2)}, "step": 3, "opt": [torch.zeros(1), (1.5, None)]}
    src = tmp_path / "a.tmodel"
    tmodel.save(ckpt, src)
    with pytest.raises(TModelError) as e:
        convert(src, tmp_path / "b.safetensors")
    assert code_of(e) == "UNSUPPORTED_TYPE"
    assert "flat dict" in e.value.message
    convert(src, tmp_path / "b.pt")
    convert(tmp_path / "b.pt", tmp_path / "c.tmodel")
    back = tmodel.load(tmp_path / "c.tmodel")
    assert back["step"] == 3 and back["opt"][1] == (1.5, None)
    assert_same(back["model"]["w"], torch.ones(2))
    tmodel.save([torch.ones(1)], tmp_path / "list.tmodel")
    with pytest.raises(TModelError) as e:
        convert(tmp_path / "list.tmodel", tmp_path / "list.safetensors")
    assert code_of(e) == "UNSUPPORTED_TYPE"


def test_codec_choice_reaches_the_tmodel_file(tmp_path: Path) -> None:
    src = tmp_path / "a.safetensors"
    write_safetensors({"w": torch.zeros(1000), "i": torch.zeros(100, dtype=torch.int8)}, src)
    for codec in ("raw", "zstd", "bytegroup-zstd"):
        out = tmp_path / f"{codec}.tmodel"
        convert(src, out, codec=codec)
        with Reader(out) as r:
            got = {b.codec for b in r.manifest.blobs}
        assert got == (
            {"raw"} if codec == "raw" else {"zstd"} if codec == "zstd" else {"bytegroup-zstd", "zstd"}
        )


@pytest.mark.parametrize(
    ("src", "dst", "codec"),
    [
        ("a.tmodel", "b.txt", "auto"),
        ("a.npz", "b.tmodel", "auto"),
        ("a.tmodel", "b.safetensors", "zstd"),
        ("a.tmodel", "b.tmodel", "lz4"),
    ],
)
def test_convert_usage_errors(tmp_path: Path, src: str, dst: str, codec: str) -> None:
    tmodel.save({"w": torch.ones(1)}, tmp_path / "a.tmodel")
    with pytest.raises(TModelError) as e:
        convert(tmp_path / src, tmp_path / dst, codec=codec)
    assert code_of(e) == "INVALID_ARGUMENT"


def test_progress_is_reported(tmp_path: Path) -> None:
    src = tmp_path / "a.safetensors"
    write_safetensors({"w": torch.zeros(1000)}, src)
    calls: list[tuple[int, int]] = []
    convert(src, tmp_path / "b.tmodel", progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1] == 4000


# -- torch.save files --------------------------------------------------------------------------------------
class NotAllowed:
    pass


def test_torch_files_only_through_weights_only(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"x": NotAllowed()}, evil)
    with pytest.raises(TModelError) as e:
        read_torch(evil)
    assert code_of(e) == "UNSUPPORTED_TYPE"
    assert "evil.pt" in e.value.message
    with pytest.raises(TModelError) as e:
        convert(evil, tmp_path / "out.tmodel")
    assert code_of(e) == "UNSUPPORTED_TYPE"
    junk = tmp_path / "junk.bin"
    for data in (b"", b"garbage", b"PK\x03\x04garbage"):
        junk.write_bytes(data)
        with pytest.raises(TModelError) as e:
            read_torch(junk)
        assert code_of(e) == "BAD_SOURCE"
        assert "junk.bin" in e.value.message
    with pytest.raises(TModelError) as e:
        read_torch(tmp_path / "missing.pt")
    assert code_of(e) == "IO_ERROR"


class PickledThing:
    """A custom class: a global outside torch's weights-only allow-list."""


@pytest.mark.parametrize("reworded", [False, True])
@pytest.mark.parametrize(
    ("obj", "named"),
    [({"a": PickledThing()}, "test_convert.PickledThing"), ({"f": os.system}, "posix.system")],
)
def test_a_pickle_global_is_unsupported_type_whatever_torch_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, obj: Any, named: str, reworded: bool
) -> None:
    src = tmp_path / "x.pt"
    torch.save(obj, src)
    if reworded:  # the code must not depend on the wording of torch's message

        def load(*args: Any, **kwargs: Any) -> Any:
            raise pickle.UnpicklingError("words no version of torch ever used")

        monkeypatch.setattr(torch, "load", load)
    with pytest.raises(TModelError) as e:
        convert(src, tmp_path / "x.tmodel")
    assert code_of(e) == "UNSUPPORTED_TYPE"
    assert str(e.value).endswith(f"holds objects outside the weights-only allow-list: {named}")
    assert sorted(os.listdir(tmp_path)) == ["x.pt"]


def test_a_broken_torch_file_is_bad_source(tmp_path: Path) -> None:
    src = tmp_path / "x.pt"
    src.write_bytes(b"PK\x03\x04 not a zip at all")
    with pytest.raises(TModelError) as e:
        read_torch(src)
    assert code_of(e) == "BAD_SOURCE"
