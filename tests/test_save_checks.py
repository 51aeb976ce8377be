"""Save checks what it wrote with the reader's own code before anything is replaced (SPEC.md §11), and the
error contract of save and load: coded errors, never raw ones."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import tmodel
import tmodel.api
import tmodel.archive.writer
import tmodel.nn.records
from tmodel import checkpoint
from tmodel.errors import TModelError, UnsupportedType
from tmodel.nn import registry


def code_of(fn: Any) -> str:
    with pytest.raises(tmodel.TModelError) as info:
        fn()
    return info.value.code


def nan_keys() -> dict[float, int]:
    return {float("nan"): 1, float("nan"): 2}


def unreadable() -> dict[str, torch.Tensor]:
    """Blobs to write, then a tensor only the reader's check refuses (its dimensions overflow)."""
    return {"w": torch.arange(1000.0), "e": torch.empty((0, 2**31, 2**31))}


def test_failing_save_leaves_the_old_file_untouched(tmp_path: Path) -> None:
    p = tmp_path / "x.tmodel"
    tmodel.save({"w": torch.ones(3)}, p)
    before = p.read_bytes()
    assert code_of(lambda: tmodel.save(unreadable(), p)) == "UNSUPPORTED_TYPE"
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["x.tmodel"]
    assert torch.equal(tmodel.load(p)["w"], torch.ones(3))


def test_failing_save_writes_nothing_into_a_file_object_or_bytes() -> None:
    buf = io.BytesIO(b"old")
    buf.seek(3)
    assert code_of(lambda: tmodel.save(unreadable(), buf)) == "UNSUPPORTED_TYPE"
    assert buf.getvalue() == b"old"
    assert code_of(lambda: tmodel.save_bytes(unreadable())) == "UNSUPPORTED_TYPE"


def test_nan_keys_of_equal_bits_are_refused_naming_where() -> None:
    with pytest.raises(UnsupportedType) as info:
        tmodel.save_bytes({"opt": {3: nan_keys()}})
    assert str(info.value) == (
        'checkpoint["opt"][3]: two NaN keys with the same bits cannot be stored (a file\'s keys are distinct '
        "by their bits, SPEC.md §5.4)"
    )


def test_the_save_check_names_the_readers_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the writer's own planning misses, the reader's validation (the same code) still refuses."""
    monkeypatch.setattr(checkpoint, "wire_identity", lambda k: object())
    with pytest.raises(UnsupportedType) as info:
        tmodel.save_bytes(nan_keys())
    assert str(info.value) == (
        "cannot be saved, the file would not be readable: duplicate dict node key in the object tree "
        "[MANIFEST_SCHEMA]"
    )


def test_nan_keys_with_different_bits_round_trip() -> None:
    neg = -float("nan")
    out = tmodel.load_bytes(tmodel.save_bytes({float("nan"): 1, neg: 2}))
    assert sorted(out.values()) == [1, 2]
    assert sorted(np.signbit(list(out.keys())).tolist()) == [False, True]


def test_empty_tensor_whose_dimensions_overflow_is_refused_at_save(tmp_path: Path) -> None:
    p = tmp_path / "e.tmodel"
    t = torch.empty((0, 2**31, 2**31))
    with pytest.raises(UnsupportedType) as info:
        tmodel.save({"e": t}, p)
    assert str(info.value) == (
        "cannot be saved, the file would not be readable: tensor 'e': shape [0, 2147483648, 2147483648] "
        "overflows [BAD_TENSOR]"
    )
    assert list(tmp_path.iterdir()) == []


def test_numpy_storages_at_one_address_of_different_sizes_share_one_blob() -> None:
    arr = np.arange(10, dtype=np.float32)
    out = tmodel.load_bytes(
        tmodel.save_bytes({"head": torch.from_numpy(arr[:4]), "all": torch.from_numpy(arr)})
    )
    assert out["all"].tolist() == list(range(10))
    assert out["head"].tolist() == [0, 1, 2, 3]
    assert out["head"].untyped_storage().data_ptr() == out["all"].untyped_storage().data_ptr()
    out["all"][2] = 42
    assert out["head"][2].item() == 42


def test_views_of_other_item_sizes_at_unaligned_offsets_round_trip() -> None:
    base = torch.arange(8, dtype=torch.float64)
    saved = {"f32": base.view(torch.float32)[1:3], "f64": base[1:2]}
    out = tmodel.load_bytes(tmodel.save_bytes(saved))
    assert out["f32"].view(torch.int32).tolist() == saved["f32"].view(torch.int32).tolist()
    assert out["f64"].tolist() == [1.0]
    assert out["f32"].untyped_storage().data_ptr() == out["f64"].untyped_storage().data_ptr()
    out["f64"][0] = 0.0
    assert out["f32"].view(torch.int32).tolist()[1] == 0


def test_memory_no_blob_can_align_is_refused() -> None:
    raw = bytearray(64)
    a = torch.from_numpy(np.frombuffer(raw, dtype=np.float32, offset=2, count=4))
    b = torch.from_numpy(np.frombuffer(raw, dtype=np.float64, offset=0, count=4))
    with pytest.raises(UnsupportedType) as info:
        tmodel.save_bytes({"a": a, "b": b})
    assert str(info.value) == (
        "a: shares memory with b at an address 4-byte elements cannot be aligned with (item sizes 4 and 8, "
        "addresses 2 bytes apart)"
    )


@pytest.mark.parametrize("where", ["cuda", "cuda:0", torch.device("cuda"), {"cpu": "cuda:0"}, {"cpu": "mps"}])
def test_an_unavailable_device_is_invalid_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: Any
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    p = tmp_path / "x.tmodel"
    tmodel.save({"w": torch.ones(2)}, p)
    model = torch.nn.Module()
    model.register_buffer("w", torch.zeros(2))
    assert code_of(lambda: tmodel.load(p, map_location=where)) == "INVALID_ARGUMENT"
    assert code_of(lambda: tmodel.load_into(model, p, map_location=where)) == "INVALID_ARGUMENT"
    with tmodel.open(p) as f:
        assert code_of(lambda: f.get_tensor("w", map_location=where)) == "INVALID_ARGUMENT"
    assert model.w.tolist() == [0.0, 0.0]


@tmodel.register("test_save_checks.Holder")
class Holder(torch.nn.Module):
    """A layer whose config is any value (nested data, or another module: a reference, not a child)."""

    def __init__(self, cfg: Any = None) -> None:
        super().__init__()
        self.held = [cfg]


def nested_list(depth: int) -> Any:
    x: Any = 1
    for _ in range(depth):
        x = [x]
    return x


def chain(n: int) -> torch.nn.Module:
    m: Any = None
    for _ in range(n):
        m = Holder(m)
    return m


def children(n: int) -> torch.nn.Module:
    m: torch.nn.Module = torch.nn.Identity()
    for _ in range(n - 1):
        m = torch.nn.Sequential(m)
    return m


@pytest.mark.parametrize("depth", [62, 2000])
def test_a_layer_config_nested_past_max_depth_is_refused_at_save(depth: int) -> None:
    with pytest.raises(UnsupportedType) as info:
        tmodel.save_bytes(Holder(nested_list(depth)))
    assert str(info.value).endswith("nested deeper than a file may hold (128 msgpack levels)")


def test_a_layer_config_at_max_depth_round_trips() -> None:
    out = tmodel.load_bytes(tmodel.save_bytes(Holder(nested_list(61))))
    assert out.held[0] == nested_list(61)


@pytest.mark.parametrize("make", [chain, children])
def test_module_chains_up_to_max_depth_round_trip_and_longer_ones_are_refused(make: Any) -> None:
    out = tmodel.load_bytes(tmodel.save_bytes(make(128)))
    assert type(out) is type(make(2))
    for n in (129, 333, 2000):
        with pytest.raises(UnsupportedType) as info:
            tmodel.save_bytes(make(n))
        assert "modules nested deeper than a file may hold (128 records" in str(info.value)


def test_a_file_with_a_module_chain_past_max_depth_is_limit_exceeded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile file (written with the writer's checks switched off) is refused before any rebuild."""
    monkeypatch.setattr(tmodel.nn.records, "MAX_DEPTH", 10_000)
    monkeypatch.setattr(tmodel.archive.writer, "check_written", lambda raw, offset, encrypted=False: None)
    monkeypatch.setattr(tmodel.api, "check_modules", lambda m: None)
    data = tmodel.save_bytes(chain(200))
    with pytest.raises(tmodel.TModelError) as info:
        tmodel.load_bytes(data)
    assert info.value.code == "LIMIT_EXCEEDED"
    assert str(info.value).endswith("modules nested more than 128 deep")


def test_a_deep_plain_list_is_refused_at_save() -> None:
    with pytest.raises(UnsupportedType) as info:
        tmodel.save_bytes(nested_list(2000))
    assert str(info.value).endswith("nested deeper than a file may hold (128 msgpack levels)")


def test_load_with_dtype_keeps_views_shared_and_stride_zero_views_stride_zero() -> None:
    base = torch.arange(6, dtype=torch.float32)
    saved = {
        "e": torch.ones(1).expand(4),
        "all": base,
        "head": base[:3],
        "t": base.view(2, 3).t(),
        "i": torch.arange(3),
    }
    out = tmodel.load_bytes(tmodel.save_bytes(saved), dtype=torch.float16)
    assert out["e"].dtype == torch.float16 and out["e"].stride() == (0,) and out["e"].tolist() == [1.0] * 4
    assert out["t"].stride() == (1, 3) and out["t"].tolist() == [[0, 3], [1, 4], [2, 5]]
    assert out["i"].dtype == torch.int64 and out["i"].tolist() == [0, 1, 2]
    ptrs = {out[k].untyped_storage().data_ptr() for k in ("all", "head", "t")}
    assert len(ptrs) == 1
    out["all"][1] = 9.0
    assert (out["head"][1].item(), out["t"][1, 0].item()) == (9.0, 9.0)
    meta = tmodel.load_bytes(tmodel.save_bytes(saved), map_location="meta", dtype=torch.float16)
    assert (meta["e"].dtype, meta["e"].shape) == (torch.float16, torch.Size([4]))


@tmodel.register("test_save_checks.Unbuildable")
class Unbuildable(torch.nn.Module):
    """Saves a config its constructor does not take: only rebuilding it shows that."""

    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(dim))

    def get_config(self) -> dict[str, Any]:
        return {"size": 2}


def test_a_module_that_would_not_rebuild_is_refused_before_the_rename(tmp_path: Path) -> None:
    p = tmp_path / "m.tmodel"
    tmodel.save({"w": torch.ones(3)}, p)
    before = p.read_bytes()
    assert code_of(lambda: tmodel.save({"m": Unbuildable()}, p)) == "BAD_CONFIG"
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.tmodel"]


@pytest.mark.parametrize(
    "call",
    [
        lambda data: tmodel.load_bytes(data, dtype="float16"),
        lambda data: tmodel.load_bytes(data, limits="x"),
        lambda data: tmodel.load_bytes(data, threads=-1),
        lambda data: tmodel.load_bytes(data, threads="2"),
        lambda data: tmodel.load_into("model", io.BytesIO(data)),
        lambda data: tmodel.load_into(torch.nn.Linear(1, 1), io.BytesIO(data), dtype="half"),
        lambda data: tmodel.save_bytes({"a": 1}, threads="2"),
        lambda data: tmodel.save_bytes({"a": 1}, level="3"),
        lambda data: tmodel.save_bytes({"a": 1}, chunk_size=2.5),
    ],
)
def test_arguments_of_the_wrong_type_are_invalid_argument(call: Any) -> None:
    data = tmodel.save_bytes({"a": torch.ones(2)})
    assert code_of(lambda: call(data)) == "INVALID_ARGUMENT"


def test_data_compressing_past_the_readers_expansion_limit_is_saved_with_just_enough_stored_raw(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Large tensors of zeros are valid data: the writer keeps the file within a reader's default limits
    by storing raw, in file order, just enough over-compressed chunks (SPEC.md §11)."""
    tight = tmodel.Limits(decoded_slack=0, max_expansion=64)
    monkeypatch.setattr(tmodel.archive.writer, "DEFAULT_LIMITS", tight)
    zeros = {"z": torch.zeros(1 << 18), "w": torch.arange(64.0)}  # 1 MiB of zeros: 16 chunks of 64 KiB
    data = tmodel.save_bytes(zeros, chunk_size=1 << 16)
    assert 1 << 16 < len(data) < (1 << 16) + 4096  # one chunk of the zeros raw, the rest compressed
    assert len(data) * tight.max_expansion >= 4 * ((1 << 18) + 64)
    out = tmodel.load_bytes(data, limits=tight)
    assert torch.equal(out["z"], zeros["z"]) and torch.equal(out["w"], zeros["w"])
    tmodel.save(zeros, tmp_path / "z.tmodel", chunk_size=1 << 16)
    buf = io.BytesIO()
    tmodel.save(zeros, buf, chunk_size=1 << 16)
    assert (tmp_path / "z.tmodel").read_bytes() == buf.getvalue() == data  # the same file every way
    with tmodel.open(tmp_path / "z.tmodel", limits=tight) as f:
        f.verify()
    small = tmodel.save_bytes({"z": torch.zeros(1 << 10)}, chunk_size=1 << 16)
    monkeypatch.undo()
    assert small == tmodel.save_bytes({"z": torch.zeros(1 << 10)}, chunk_size=1 << 16)  # no bound needed


def _deep_tuple(levels: int) -> Any:
    key: Any = 1
    for _ in range(levels):
        key = (key,)
    return key


@pytest.mark.parametrize(
    "where",
    ["dict key", "set element", "tensor attribute name", "layer config key", "layer config dict key"],
)
def test_keys_nested_thousands_deep_are_refused_with_a_code_not_a_recursion_error(where: str) -> None:
    """Paths in messages show such keys bounded (`(...)` below 16 levels); the key itself is refused."""
    key = _deep_tuple(3000)
    t = torch.ones(1)
    t.__dict__[key] = 1

    class Deep(torch.nn.Module):
        def __init__(self, nested: bool) -> None:
            super().__init__()
            self.nested = nested

        def get_config(self) -> dict[Any, Any]:
            return {"a": {key: 1}} if self.nested else {key: 1}

    objects = {
        "dict key": {key: 1},
        "set element": {"s": {key}},
        "tensor attribute name": {"t": t},
        "layer config key": Deep(False),
        "layer config dict key": Deep(True),
    }
    tmodel.register("test.Deep", version=1)(Deep)
    try:
        with pytest.raises(TModelError) as info:
            tmodel.save_bytes(objects[where])
    finally:
        registry.unregister("test.Deep")
    assert info.value.code == ("BAD_CONFIG" if "config" in where else "UNSUPPORTED_TYPE")
    assert "(...)" in str(info.value)
    assert tmodel.load_bytes(tmodel.save_bytes({_deep_tuple(20): 1})) == {_deep_tuple(20): 1}
