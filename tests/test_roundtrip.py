"""save -> load gives back the same object: same Python types, bit-exact tensors with the same dtype,
shape and strides, shared storages still shared; plus metadata, the lazy `tmodel.open` API and
determinism of the written bytes."""

from __future__ import annotations

import collections
import enum
import math
import os
import random
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tmodel
from tmodel.archive.reader import Reader
from tmodel.archive.writer import chunk_size_for
from tmodel.errors import TModelError
from tmodel.manifest.dtypes import DTYPES
from tmodel.tensors.dtypes import TORCH_DTYPES

CODECS = ("auto", "raw", "zstd", "bytegroup-zstd")
INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1


# -- helpers --------------------------------------------------------------------------------------------
def bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's element bytes in logical order (NaN payloads, -0.0 and all)."""
    return t.contiguous().reshape(-1).view(torch.uint8)


def assert_same_tensor(got: torch.Tensor, want: torch.Tensor, where: str = "tensor") -> None:
    assert type(got) is torch.Tensor, where
    assert got.dtype == want.dtype, where
    assert got.shape == want.shape, where
    assert got.stride() == want.stride(), where
    assert got.device.type == "cpu", where
    assert torch.equal(bits(got), bits(want)), where


def assert_same(got: Any, want: Any, where: str = "root") -> None:
    """Deep equality that also demands identical Python types (tuple stays tuple, int keys stay int)."""
    if isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor), where
        assert_same_tensor(got, want.detach(), where)
        return
    assert type(got) is type(want), f"{where}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape, where
        assert got.tobytes() == want.tobytes(), where
        return
    if isinstance(want, dict):
        assert [(type(k), k) for k in got] == [(type(k), k) for k in want], where
        for k in want:
            assert_same(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert struct.pack("<d", got) == struct.pack("<d", want), f"{where}: {got!r} != {want!r}"
    else:
        assert got == want, where


def from_bytes(raw: bytes, dtype: torch.dtype, shape: list[int]) -> torch.Tensor:
    if math.prod(shape) == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape).clone()


def roundtrip(obj: Any, path: Path, **kwargs: Any) -> Any:
    tmodel.save(obj, path, **kwargs)
    return tmodel.load(path)


# -- hypothesis strategies ------------------------------------------------------------------------------
@st.composite
def tensors(draw: st.DrawFn, max_dim: int = 4, max_rank: int = 4) -> torch.Tensor:
    """Any of the 19 dtypes from random bytes (bool: 0/1), rank 0..4 incl. zero-size dims, sometimes a
    dense permutation (non-contiguous strides)."""
    name = draw(st.sampled_from(sorted(TORCH_DTYPES)))
    dtype = TORCH_DTYPES[name]
    rank = draw(st.integers(0, max_rank))
    hi = max_dim if rank <= 2 else min(max_dim, 3)
    shape = draw(st.lists(st.integers(0, hi), min_size=rank, max_size=rank))
    n = math.prod(shape) * DTYPES[name][0]
    raw = draw(st.binary(min_size=n, max_size=n))
    if name == "bool":
        raw = bytes(b & 1 for b in raw)
    t = from_bytes(raw, dtype, shape)
    if rank >= 2 and t.numel() > 0:
        t = t.permute(draw(st.permutations(range(rank))))
    return t


scalars = (
    st.none()
    | st.booleans()
    | st.integers(INT_MIN, INT_MAX)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.binary(max_size=6)
)
keys = st.text(max_size=6) | st.integers(INT_MIN, INT_MAX)
trees = st.recursive(
    scalars | tensors(max_dim=2, max_rank=2),
    lambda children: (
        st.lists(children, max_size=3)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(keys, children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def chunk_sizes(draw: st.DrawFn, nbytes: int) -> int:
    """Small sizes, and sizes that make the tensor exactly one chunk or one byte more than one chunk."""
    return draw(
        st.one_of(
            st.integers(1, 64),
            st.sampled_from([max(1, nbytes), max(1, nbytes - 1), nbytes + 1, 1 << 20]),
        )
    )


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_roundtrip_property(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    t = data.draw(tensors(), label="tensor")
    codec = data.draw(st.sampled_from(CODECS), label="codec")
    nbytes = t.numel() * t.element_size()
    cs = data.draw(chunk_sizes(nbytes), label="chunk_size")
    tree = data.draw(trees, label="tree")
    obj = {"t": t, "tree": tree, 7: (t.numel(), None)}
    path = tmp_path_factory.mktemp("prop") / "x.tmodel"

    out = roundtrip(obj, path, codec=codec, chunk_size=cs, threads=1)
    assert_same(out, obj)

    with tmodel.open(path) as f:
        entry = f.manifest.tensors[f.keys().index("t")]
        if nbytes == 0:
            assert entry.blob is None
            return
        assert entry.blob is not None
        blob = f.manifest.blobs[entry.blob]
        width = DTYPES[entry.dtype][1]
        expected_codec = {
            "raw": "raw",
            "zstd": "zstd",
            "auto": "bytegroup-zstd" if width > 1 else "zstd",
            "bytegroup-zstd": "bytegroup-zstd" if width > 1 else "zstd",
        }[codec]
        assert blob.codec == expected_codec
        assert blob.nbytes == nbytes
        used = chunk_size_for(blob.width, cs)
        assert blob.chunk_size == used
        assert len(blob.chunks) == -(-nbytes // used)
        f.verify()


# -- every bit pattern of the narrow float types, special values of the wide ones --------------------------
def _patterns(name: str) -> torch.Tensor:
    dtype = TORCH_DTYPES[name]
    size = DTYPES[name][0]
    if size == 1:
        return torch.arange(256, dtype=torch.int16).to(torch.uint8).view(dtype)
    if size == 2 or name == "complex32":  # complex32: every binary16 pattern as a real and an imaginary part
        return torch.arange(-(1 << 15), 1 << 15, dtype=torch.int32).to(torch.int16).view(dtype)
    fmt = {"float32": "<f", "float64": "<d", "complex64": "<f", "complex128": "<d"}[name]
    specials = [0.0, -0.0, math.inf, -math.inf, 5e-324, 1e-45, 1e-310, -1e-40, 3.4e38, 1.0]
    raw = b"".join(struct.pack(fmt, v) for v in specials if fmt == "<d" or abs(v) < 3.5e38)
    # NaNs with payloads and both signs
    nan_bits = {"<f": [0x7FC00001, 0xFFC12345, 0x7F800001], "<d": [0x7FF8000000000001, 0xFFF0DEADBEEF0001]}
    raw += b"".join(struct.pack("<I" if fmt == "<f" else "<Q", v) for v in nan_bits[fmt])
    raw = raw * (2 if name.startswith("complex") else 1)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).clone()


FLOAT_NAMES = [n for n in TORCH_DTYPES if n.startswith(("float", "bfloat", "complex"))]


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("name", FLOAT_NAMES)
def test_every_bit_pattern_survives(tmp_path: Path, name: str, codec: str) -> None:
    t = _patterns(name)
    out = roundtrip({"p": t}, tmp_path / "p.tmodel", codec=codec, chunk_size=1000)
    assert_same_tensor(out["p"], t)


def test_bool_and_integer_extremes(tmp_path: Path) -> None:
    obj = {
        "bool": torch.tensor([True, False, True]),
        "u64": torch.tensor([0, 2**64 - 1, 2**63], dtype=torch.uint64),
        "i64": torch.tensor([-(2**63), 2**63 - 1, -1], dtype=torch.int64),
        "u32": torch.tensor([0, 2**32 - 1], dtype=torch.uint32),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
    }
    assert_same(roundtrip(obj, tmp_path / "x.tmodel"), obj)


def test_python_scalars_and_containers(tmp_path: Path) -> None:
    obj = {
        "ints": [INT_MIN, -1, 0, 1, INT_MAX],
        "floats": (0.0, -0.0, math.inf, -math.inf, 5e-324, float("nan")),
        "nested": {1: {"a": (None, b"", b"\x00\xff")}, -5: [[], (), {}]},
        2**64 - 1: "max key",
        "": True,
        b"bytes-key": 1.5,
        None: "none key",
        2.5: "float key",
        False: "bool key",
    }
    assert_same(roundtrip(obj, tmp_path / "x.tmodel"), obj)
    assert_same(roundtrip([1, (2,)], tmp_path / "l.tmodel"), [1, (2,)])
    assert_same(roundtrip((), tmp_path / "t.tmodel"), ())
    assert roundtrip(None, tmp_path / "n.tmodel") is None
    assert_same_tensor(roundtrip(torch.ones(3), tmp_path / "bare.tmodel"), torch.ones(3))


# -- strides ----------------------------------------------------------------------------------------------
def test_transpose_keeps_strides(tmp_path: Path) -> None:
    x = torch.randn(3, 5).t()
    assert x.stride() == (1, 5)
    out = roundtrip({"x": x}, tmp_path / "x.tmodel")
    assert_same_tensor(out["x"], x)
    assert out["x"].stride() == (1, 5)


def test_gapped_view_saved_alone_comes_back_equal(tmp_path: Path) -> None:
    base = torch.randn(6, 7)
    x = base[::2, 1:]
    out = roundtrip({"x": x}, tmp_path / "x.tmodel")
    got = out["x"]
    assert got.dtype == x.dtype and got.shape == x.shape == (3, 6)
    assert torch.equal(bits(got), bits(x))
    assert got.stride() in (x.stride(), (6, 1))
    # only the viewed elements are stored, not the whole base
    with tmodel.open(tmp_path / "x.tmodel") as f:
        assert f.manifest.blobs[0].nbytes == 3 * 6 * 4


def test_channels_last_keeps_strides(tmp_path: Path) -> None:
    x = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    out = roundtrip({"x": x}, tmp_path / "x.tmodel", codec="bytegroup-zstd", chunk_size=32)
    assert_same_tensor(out["x"], x)
    assert out["x"].stride() == (60, 1, 15, 3)
    assert out["x"].is_contiguous(memory_format=torch.channels_last)


def test_expanded_tensor(tmp_path: Path) -> None:
    x = torch.tensor([1.0, 2.0]).expand(3, 2)
    out = roundtrip({"x": x}, tmp_path / "x.tmodel")
    assert out["x"].shape == (3, 2)
    assert torch.equal(out["x"], x)


# -- shared storage ---------------------------------------------------------------------------------------
def test_tied_weights_share_one_storage(tmp_path: Path) -> None:
    w = torch.randn(4, 3)
    out = roundtrip({"a": w, "b": w}, tmp_path / "x.tmodel")
    assert_same_tensor(out["a"], w)
    assert_same_tensor(out["b"], w)
    assert out["a"].untyped_storage().data_ptr() == out["b"].untyped_storage().data_ptr()
    with tmodel.open(tmp_path / "x.tmodel") as f:
        assert len(f.manifest.blobs) == 1
        assert f.manifest.blobs[0].nbytes == 48


def test_base_and_overlapping_views_share_one_storage(tmp_path: Path) -> None:
    base = torch.arange(20, dtype=torch.float32)
    v1 = base[2:10]
    v2 = base[5:15].view(2, 5)
    obj = {"base": base, "v1": v1, "v2": v2, "other": torch.ones(2)}
    out = roundtrip(obj, tmp_path / "x.tmodel")
    for k in ("base", "v1", "v2"):
        assert_same_tensor(out[k], obj[k], k)
    ptrs = {out[k].untyped_storage().data_ptr() for k in ("base", "v1", "v2")}
    assert len(ptrs) == 1
    assert out["other"].untyped_storage().data_ptr() not in ptrs
    assert (out["v1"].storage_offset(), out["v2"].storage_offset()) == (2, 5)
    out["base"][6] = -1.0  # a write through one view shows in the others
    assert out["v1"][4].item() == -1.0 and out["v2"][0, 1].item() == -1.0
    with tmodel.open(tmp_path / "x.tmodel") as f:
        assert len(f.manifest.blobs) == 2
        assert [b.nbytes for b in f.manifest.blobs] == [80, 8]


def test_views_without_base_store_only_their_span(tmp_path: Path) -> None:
    base = torch.arange(20, dtype=torch.float32)
    obj = {"v1": base[2:10], "v2": base[5:15]}
    out = roundtrip(obj, tmp_path / "x.tmodel")
    assert_same_tensor(out["v1"], obj["v1"])
    assert_same_tensor(out["v2"], obj["v2"])
    assert out["v1"].untyped_storage().data_ptr() == out["v2"].untyped_storage().data_ptr()
    assert out["v2"].storage_offset() - out["v1"].storage_offset() == 3
    with tmodel.open(tmp_path / "x.tmodel") as f:
        assert len(f.manifest.blobs) == 1
        assert f.manifest.blobs[0].nbytes == 13 * 4
        assert [t.offset for t in f.manifest.tensors] == [0, 12]


def test_shared_storage_with_different_dtypes(tmp_path: Path) -> None:
    x = torch.arange(8, dtype=torch.int32)
    obj = {"i": x, "f": x.view(torch.float32), "b": x.view(torch.uint8)[4:12]}
    out = roundtrip(obj, tmp_path / "x.tmodel")
    for k in obj:
        assert_same_tensor(out[k], obj[k], k)
    assert len({out[k].untyped_storage().data_ptr() for k in obj}) == 1


def test_conjugate_and_negative_views_are_resolved(tmp_path: Path) -> None:
    x = torch.randn(3, 2, dtype=torch.complex64)
    obj = {"conj": x.conj(), "neg": torch.randn(4)._neg_view(), "x": x}
    out = roundtrip(obj, tmp_path / "x.tmodel")
    for k, want in obj.items():
        got = out[k]
        assert not got.is_conj() and not got.is_neg()
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(bits(got), bits(want.resolve_conj().resolve_neg()))


@pytest.mark.parametrize("shared", [False, True])
def test_bool_view_with_byte_2_is_not_written_unreadable(tmp_path: Path, shared: bool) -> None:
    """SPEC.md §11: a writer MUST produce files that satisfy every rule, and §5.3 allows only bytes 0/1
    in a bool tensor. A bool view of uint8 storage holding 2 must be refused at save time, or written
    as a file that loads; a file that save() accepts and load() rejects is the one wrong outcome."""
    u = torch.tensor([0, 1, 2, 1], dtype=torch.uint8)
    obj = {"u": u, "b": u.view(torch.bool)} if shared else {"b": u.view(torch.bool)}
    path = tmp_path / "x.tmodel"
    try:
        tmodel.save(obj, path)
    except TModelError as exc:
        assert exc.code in ("UNSUPPORTED_TYPE", "BAD_VALUE")
        assert not path.exists()
        return
    out = tmodel.load(path)
    assert out["b"].tolist() == [False, True, True, True]


def test_bool_view_of_part_of_a_storage_loads_and_verifies(tmp_path: Path) -> None:
    """Only the bytes a bool tensor views are bool values (SPEC.md §5.3); other bytes of the shared blob
    belong to a uint8 tensor and may hold anything. load and verify must agree that the file is valid."""
    u = torch.tensor([5, 0, 1], dtype=torch.uint8)
    obj = {"u": u, "b": u[1:].view(torch.bool)}
    path = tmp_path / "x.tmodel"
    out = roundtrip(obj, path)
    assert_same_tensor(out["u"], u)
    assert out["b"].tolist() == [False, True]
    with tmodel.open(path) as f:
        assert len(f.manifest.blobs) == 1
        f.verify()


# -- a full training checkpoint ------------------------------------------------------------------------------
def _training_state() -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    model.register_buffer("steps_seen", torch.zeros((), dtype=torch.int64))
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.StepLR(optim, step_size=1, gamma=0.5)
    for _ in range(2):
        loss = model(torch.randn(5, 4)).pow(2).sum()
        optim.zero_grad()
        loss.backward()
        optim.step()
        sched.step()
    return model, optim, sched


def test_full_training_checkpoint(tmp_path: Path) -> None:
    model, optim, sched = _training_state()
    random.seed(1234)
    ckpt = {
        "model": model.state_dict(),
        "optim": optim.state_dict(),
        "sched": sched.state_dict(),
        "step": 2,
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
    }
    assert sorted(ckpt["optim"]["state"]) == [0, 1, 2, 3]
    out = roundtrip(ckpt, tmp_path / "ckpt.tmodel", chunk_size=64)
    # state_dict() is an OrderedDict whose _metadata torch modules read on load: both come back
    assert type(out["model"]) is collections.OrderedDict
    assert (
        out["model"]._metadata
        == ckpt["model"]._metadata
        == {
            "": {"version": 1},
            "0": {"version": 1},
            "1": {"version": 1},
            "2": {"version": 1},
        }
    )
    assert type(out["model"]._metadata) is collections.OrderedDict
    assert_same(out, ckpt)
    assert isinstance(out["rng"]["python"], tuple) and isinstance(out["rng"]["python"][1], tuple)
    assert isinstance(out["optim"]["param_groups"][0]["betas"], tuple)
    np_state = out["rng"]["numpy"]
    assert type(np_state[1]) is np.ndarray and np_state[1].dtype == np.uint32 and np_state[1].shape == (624,)

    # the loaded state is usable
    random.setstate(out["rng"]["python"])
    torch.set_rng_state(out["rng"]["torch"])
    np.random.set_state(out["rng"]["numpy"])
    assert np.random.get_state()[1].tolist() == ckpt["rng"]["numpy"][1].tolist()
    model2, optim2, sched2 = _training_state()
    model2.load_state_dict(out["model"])
    optim2.load_state_dict(out["optim"])
    sched2.load_state_dict(out["sched"])
    assert_same(optim2.state_dict(), ckpt["optim"])
    assert sched2.state_dict() == ckpt["sched"]
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)


# -- unsupported values --------------------------------------------------------------------------------------
class Foo:
    pass


class Color(enum.IntEnum):
    RED = 1


def test_unsupported_type_message_names_the_path(tmp_path: Path) -> None:
    ckpt = {"optim": {"state": {3: {"foo": Foo()}}}}
    with pytest.raises(tmodel.TModelError) as info:
        tmodel.save(ckpt, tmp_path / "x.tmodel")
    assert info.value.code == "UNSUPPORTED_TYPE"
    assert str(info.value).startswith('checkpoint["optim"]["state"][3]["foo"]: unsupported type Foo')
    assert not (tmp_path / "x.tmodel").exists()


@pytest.mark.parametrize(
    ("obj", "prefix"),
    [
        ([1, (2, Foo())], "checkpoint[1][1]: unsupported type Foo"),
        ({3: {5: frozenset({1, 2})}}, "checkpoint[3][5]: unsupported type frozenset"),
        ([Color.RED], "checkpoint[0]: unsupported type Color"),
        ([0, 2**64], "checkpoint[1]: integer"),
        ([-(2**63) - 1], "checkpoint[0]: integer"),
        ({7: [torch.ones(2).to_sparse()]}, "checkpoint[7][0]: tensors of layout torch.sparse_coo are not"),
        ([torch.ones(2, 2).to_sparse_csr()], "checkpoint[0]: tensors of layout torch.sparse_csr are not"),
        (
            [torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8)],
            "checkpoint[0]: quantized tensors (torch.qint8) are not supported",
        ),
        (
            [torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])],
            "checkpoint[0]: nested tensors are not",
        ),
        ([torch._efficientzerotensor(3)], "checkpoint[0]: a zero tensor (torch._efficientzerotensor) has no"),
        ([torch.ones(2).untyped_storage()], "checkpoint[0]: a storage (UntypedStorage)"),
        ([torch.FloatTensor], "checkpoint[0]: legacy tensor type torch.FloatTensor"),
        ({(1, Foo()): 3}, "checkpoint[(1, <"),
        ({(1, torch.ones(1)): 3}, "checkpoint[(1, tensor([1.]))][1]: a key (or set element) of type Tensor"),
        (lambda: 0, "checkpoint: unsupported type function"),
    ],
)
def test_unsupported_values_raise(tmp_path: Path, obj: Any, prefix: str) -> None:
    with pytest.raises(tmodel.TModelError) as info:
        tmodel.save(obj, tmp_path / "x.tmodel")
    assert info.value.code == "UNSUPPORTED_TYPE"
    assert str(info.value).startswith(prefix), str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("obj", [{"s": "\ud800"}, {"\udfff": 1}, ["ok", ("x\ud83dy",)]])
def test_unencodable_string_raises_tmodel_error(tmp_path: Path, obj: Any) -> None:
    """A str that is not valid Unicode (lone surrogate) cannot be stored as msgpack str."""
    with pytest.raises(tmodel.TModelError) as info:
        tmodel.save(obj, tmp_path / "x.tmodel")
    assert info.value.code == "UNSUPPORTED_TYPE"
    assert list(tmp_path.iterdir()) == []


# -- metadata ------------------------------------------------------------------------------------------------
def test_metadata_roundtrip(tmp_path: Path) -> None:
    meta = {
        "s": "héllo",
        "i": -(2**63),
        "u": 2**64 - 1,
        "f": 0.1,
        "negzero": -0.0,
        "t": True,
        "b": b"\x00\xff",
        "n": None,
        "l": [1, "two", [3.0, None], {"k": False}],
        "m": {"inner": {"deep": [b"x"]}},
        "empty": {},
    }
    tmodel.save({"x": torch.ones(1)}, tmp_path / "x.tmodel", metadata=meta)
    with tmodel.open(tmp_path / "x.tmodel") as f:
        assert_same(f.metadata, meta)


@pytest.mark.parametrize(
    "meta",
    [{"a": {1, 2}}, {(1, 2): "x"}, {1: "x"}, {"a": {2: "x"}}, {"a": (1, 2)}, {"a": object()}, [1]],
)
def test_invalid_metadata_raises(tmp_path: Path, meta: Any) -> None:
    tmodel.save({}, tmp_path / "x.tmodel")
    before = (tmp_path / "x.tmodel").read_bytes()
    with pytest.raises(TModelError):
        tmodel.save({}, tmp_path / "x.tmodel", metadata=meta)
    assert (tmp_path / "x.tmodel").read_bytes() == before


@pytest.mark.parametrize("meta", [{"a": 2**64}, {"a": -(2**63) - 1}, {"a": ["\ud800"]}])
def test_unencodable_metadata_raises_tmodel_error(tmp_path: Path, meta: Any) -> None:
    with pytest.raises(TModelError):
        tmodel.save({}, tmp_path / "x.tmodel", metadata=meta)
    assert list(tmp_path.iterdir()) == []


# -- the lazy API --------------------------------------------------------------------------------------------
def test_open_keys_order_and_names(tmp_path: Path) -> None:
    t = [torch.full((2,), float(i)) for i in range(6)]
    obj = {"b": t[0], "a": {"x": t[1], 3: [t[2], t[3]]}, "a.x": t[4], "bad/name": t[5], "n": 1}
    tmodel.save(obj, tmp_path / "x.tmodel")
    with tmodel.open(tmp_path / "x.tmodel") as f:
        assert f.keys() == ["b", "a.x", "a.3.0", "a.3.1", "tensor.4", "tensor.5"]
        assert list(f) == f.keys() and len(f) == 6 and "a.3.1" in f and "zzz" not in f
        for name, want in zip(f.keys(), t, strict=True):
            assert_same_tensor(f.get_tensor(name), want, name)
        assert_same(f.load(), obj)


SLICE_KEYS = [
    0,
    -1,
    2,
    (1, 2),
    (-2, -3, 1),
    slice(None, None, 2),
    slice(1, None, 3),
    slice(-3, None),
    (slice(None), 1),
    (Ellipsis, 2),
    (Ellipsis, slice(1, 5, 2)),
    (None, 1),
    (1, None, slice(0, 4, 3)),
    (slice(2, 3), Ellipsis, None),
    (Ellipsis,),
    (),
    slice(4, 2),
]


@pytest.mark.parametrize("codec", ["raw", "zstd", "bytegroup-zstd"])
def test_get_slice_matches_indexing(tmp_path: Path, codec: str) -> None:
    x = torch.randn(4, 5, 6)
    base = torch.arange(200, dtype=torch.int16)
    view = base[10:130].view(4, 30)[:, ::2]  # shares storage with base, has an offset
    obj = {"x": x, "base": base, "view": view, "bits": torch.arange(60).reshape(3, 20) % 2 == 0}
    tmodel.save(obj, tmp_path / "x.tmodel", codec=codec, chunk_size=7)
    with tmodel.open(tmp_path / "x.tmodel") as f:
        for name, full in obj.items():
            sl = f.get_slice(name)
            assert sl.get_shape() == list(full.shape) and sl.get_dtype() == full.dtype
            for key in SLICE_KEYS:
                try:
                    want = full[key]
                except IndexError:  # too many indices for this rank: the lazy API refuses it as well
                    with pytest.raises(TModelError) as info:
                        sl[key]
                    assert info.value.code == "INVALID_ARGUMENT"
                    continue
                got = sl[key]
                assert got.dtype == want.dtype and got.shape == want.shape, (name, key)
                assert torch.equal(got, want), (name, key)


def test_get_slice_bad_index(tmp_path: Path) -> None:
    tmodel.save({"x": torch.ones(3, 4)}, tmp_path / "x.tmodel")
    with tmodel.open(tmp_path / "x.tmodel") as f:
        for key in [3, -4, (0, 0, 0), 1.5, (slice(None), 4)]:
            with pytest.raises(TModelError) as info:
                f.get_slice("x")[key]
            assert info.value.code == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    "key",
    [
        torch.tensor([2]),
        [2, 0],
        (slice(None), [3]),
        torch.tensor([False, True, True]),
        (1, torch.tensor([0, 3])),
    ],
    ids=["tensor-index", "list-index", "column-list", "bool-mask", "int-and-tensor"],
)
def test_get_slice_advanced_index_is_refused_or_correct(tmp_path: Path, key: Any) -> None:
    """Only basic indexing is promised; anything else must raise INVALID_ARGUMENT, never return the
    wrong elements."""
    x = torch.arange(12.0).reshape(3, 4)
    tmodel.save({"x": x}, tmp_path / "x.tmodel")
    with tmodel.open(tmp_path / "x.tmodel") as f:
        try:
            got = f.get_slice("x")[key]
        except TModelError as exc:
            assert exc.code == "INVALID_ARGUMENT"
            return
    want = x[key]
    assert got.shape == want.shape
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize(
    ("key", "chunks"),
    [
        (slice(100, 110), [6]),  # bytes 400..440 of 64-byte chunks
        (slice(100, 200), list(range(6, 13))),  # bytes 400..800
        (slice(0, 16), [0]),
        (slice(15, 17), [0, 1]),  # straddles a chunk edge
        (999, [62]),  # the last, short chunk
        (slice(None), list(range(63))),
        (slice(500, 501), [31]),
        (slice(500, 500), []),
    ],
)
def test_get_slice_reads_only_needed_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: Any, chunks: list[int]
) -> None:
    x = torch.randn(1000)
    tmodel.save({"x": x}, tmp_path / "x.tmodel", codec="raw", chunk_size=64)
    seen: list[int] = []
    lock = threading.Lock()
    original = Reader._decode_chunk

    def counting(self: Reader, b: Any, blob: int, j: int, start: int, out: memoryview) -> None:
        with lock:
            seen.append(j)
        original(self, b, blob, j, start, out)

    monkeypatch.setattr(Reader, "_decode_chunk", counting)
    with tmodel.open(tmp_path / "x.tmodel") as f:
        assert len(f.manifest.blobs[0].chunks) == 63
        got = f.get_slice("x")[key]
    assert torch.equal(got, x[key])
    assert sorted(seen) == chunks


def test_get_slice_2d_column_reads_the_span(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(40, 25)
    tmodel.save({"x": x}, tmp_path / "x.tmodel", codec="zstd", chunk_size=64)
    seen: list[int] = []
    lock = threading.Lock()
    original = Reader._decode_chunk

    def counting(self: Reader, *args: Any) -> None:
        with lock:
            seen.append(args[2])
        original(self, *args)

    monkeypatch.setattr(Reader, "_decode_chunk", counting)
    with tmodel.open(tmp_path / "x.tmodel", threads=2) as f:
        assert torch.equal(f.get_slice("x")[3], x[3])
        assert sorted(seen) == [4, 5, 6]  # row 3 is bytes 300..400
        seen.clear()
        assert torch.equal(f.get_slice("x")[:, 0], x[:, 0])
        assert sorted(seen) == list(range(61))  # bytes 0..3904
        seen.clear()
        assert torch.equal(f.get_tensor("x"), x)
        assert sorted(seen) == list(range(63))


def test_unknown_name_and_closed_file(tmp_path: Path) -> None:
    tmodel.save({"x": torch.ones(3)}, tmp_path / "x.tmodel")
    f = tmodel.open(tmp_path / "x.tmodel")
    for call in (lambda: f.get_tensor("nope"), lambda: f.get_slice("nope"), lambda: f.get_tensor(3)):
        with pytest.raises(TModelError) as info:
            call()
        assert info.value.code == "NOT_FOUND"
    f.close()
    f.close()  # idempotent
    for call in (lambda: f.get_tensor("x"), lambda: f.get_slice("x")[0], f.load, f.verify):
        with pytest.raises(TModelError):
            call()
    with tmodel.open(tmp_path / "x.tmodel") as g:
        pass
    with pytest.raises(TModelError):
        g.get_tensor("x")


# -- determinism and options ---------------------------------------------------------------------------------
def test_deterministic_bytes(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(3)
    obj = {
        "a": torch.randn(300, generator=g),
        "b": torch.arange(500, dtype=torch.int64),
        "c": [torch.zeros(40, dtype=torch.bool), {"d": 1.5}],
    }
    kw: dict[str, Any] = {"chunk_size": 256, "metadata": {"k": [1, 2]}}
    tmodel.save(obj, tmp_path / "1.tmodel", threads=1, **kw)
    tmodel.save(obj, tmp_path / "2.tmodel", threads=1, **kw)
    tmodel.save(obj, tmp_path / "3.tmodel", threads=2, **kw)
    tmodel.save(obj, tmp_path / "4.tmodel", threads=0, **kw)
    first = (tmp_path / "1.tmodel").read_bytes()
    for n in (2, 3, 4):
        assert (tmp_path / f"{n}.tmodel").read_bytes() == first, n
    with tmodel.open(tmp_path / "1.tmodel") as f:
        assert sum(len(b.chunks) for b in f.manifest.blobs) > 10


def test_map_location(tmp_path: Path) -> None:
    x = torch.randn(3, 4).t()
    tmodel.save({"x": x}, tmp_path / "x.tmodel")
    for loc in ("cpu", torch.device("cpu"), None):
        out = tmodel.load(tmp_path / "x.tmodel", map_location=loc)
        assert_same_tensor(out["x"], x)
    with pytest.raises(TModelError) as info:
        tmodel.load(tmp_path / "x.tmodel", map_location=3)  # type: ignore[arg-type]
    assert info.value.code == "INVALID_ARGUMENT"


def test_bad_codec_raises_invalid_argument(tmp_path: Path) -> None:
    with pytest.raises(TModelError) as info:
        tmodel.save({"x": torch.ones(3)}, tmp_path / "x.tmodel", codec="nonsense")
    assert info.value.code == "INVALID_ARGUMENT"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("obj", [{"x": 1}, {}, {"x": torch.ones(0)}])
def test_bad_codec_raises_even_without_tensor_data(tmp_path: Path, obj: Any) -> None:
    with pytest.raises(TModelError) as info:
        tmodel.save(obj, tmp_path / "x.tmodel", codec="nonsense")
    assert info.value.code == "INVALID_ARGUMENT"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"chunk_size": 0}, "INVALID_ARGUMENT"),
        ({"level": 23}, "INVALID_ARGUMENT"),
        ({"threads": -1}, "INVALID_ARGUMENT"),
        ({"checksum": "md5"}, "UNKNOWN_CHECKSUM"),
    ],
)
def test_bad_options(tmp_path: Path, kwargs: dict[str, Any], code: str) -> None:
    with pytest.raises(TModelError) as info:
        tmodel.save({"x": torch.ones(3)}, tmp_path / "x.tmodel", **kwargs)
    assert info.value.code == code
    assert list(tmp_path.iterdir()) == []


def test_sha256_checksum_roundtrip(tmp_path: Path) -> None:
    obj = {"x": torch.randn(50), "y": torch.arange(10)}
    out = roundtrip(obj, tmp_path / "x.tmodel", checksum="sha256", chunk_size=40)
    assert_same(out, obj)
    with tmodel.open(tmp_path / "x.tmodel") as f:
        assert f.manifest.checksum == "sha256"
        assert {len(c.digest) for b in f.manifest.blobs for c in b.chunks} == {32}


_SAVE_IN_CHILD = """
import sys, torch, tmodel
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.Sequential(nn.ReLU(), nn.Linear(4, 2)))
obj = {"model": model, "opt": {"lr": 0.1, "betas": (0.9, 0.99)}, "tags": ["x", "y"],
       "w": torch.randn(5000).to(torch.bfloat16), "ids": torch.arange(3000)}
tmodel.save(obj, sys.argv[1], threads=int(sys.argv[2]), chunk_size=1024, metadata={"run": {"z": 1, "a": 2}})
"""


def test_deterministic_across_processes_hash_seeds_and_threads(tmp_path: Path) -> None:
    """The same object saved by separate interpreters (other hash seeds and thread counts): the same file."""
    outs = []
    for seed, threads in (("1", "1"), ("2", "3"), ("12345", "0")):
        path = tmp_path / f"{seed}.tmodel"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", _SAVE_IN_CHILD, str(path), threads], check=True, env=env)
        outs.append(path.read_bytes())
    assert outs[0] == outs[1] == outs[2]
    assert len(outs[0]) > 10_000


@settings(max_examples=200, deadline=None)
@given(width=st.integers(1, 16), elements=st.integers(0, 700), seed=st.integers(0, 2**32 - 1))
def test_torch_merge_equals_the_reference_merge(width: int, elements: int, seed: int) -> None:
    """The fast byte-group merge the loader uses writes exactly the bytes of the spec's plain interleave,
    for every width (shift-or and stack paths alike) and from bytes, bytearray and memoryview planes."""
    from tmodel.codecs.planes import merge_planes
    from tmodel.tensors.planes import torch_merge

    rng = random.Random(seed)
    planes: list[bytes | bytearray | memoryview] = [rng.randbytes(elements) for _ in range(width)]
    planes = [
        p if k % 3 == 0 else bytearray(p) if k % 3 == 1 else memoryview(p) for k, p in enumerate(planes)
    ]
    want = bytearray(width * elements)
    merge_planes(planes, width, memoryview(want))
    got = bytearray(b"\xee" * (width * elements))
    torch_merge(planes, width, memoryview(got))
    assert got == want
    if elements:
        assert want[width * (elements - 1) : width * elements] == bytes(p[elements - 1] for p in planes)


@settings(max_examples=200, deadline=None)
@given(width=st.integers(1, 16), elements=st.integers(1, 700), seed=st.integers(0, 2**32 - 1))
def test_torch_split_equals_the_reference_split(width: int, elements: int, seed: int) -> None:
    """The fast byte-plane split the writer uses gives exactly the spec's planes, which stay valid after
    the input and every other reference to them are gone."""
    import gc

    from tmodel.codecs.planes import split_planes
    from tmodel.tensors.planes import torch_split

    data = random.Random(seed).randbytes(width * elements)
    want = split_planes(data, width)
    got = torch_split(bytearray(data), width)
    gc.collect()
    assert [bytes(p) for p in got] == [bytes(p) for p in want]
    assert all(len(p) == elements for p in got)
    assert bytes(torch_split(memoryview(bytearray(data)), width)[-1]) == data[width - 1 :: width]
