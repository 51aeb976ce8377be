"""Schema version 4: keys beyond scalars, tensors' Python attributes, layouts, qschemes and meta tensors
round-trip with their types kept (as `torch.load(weights_only=True)` gives them back), and what a file may
not hold is refused with its code."""

from __future__ import annotations

import collections
import io
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import torch
from torch import nn

import tmodel
from tmodel.container.digests import BY_ID
from tmodel.container.framing import HEADER_SIZE, TRAILER_SIZE, pack_trailer
from tmodel.errors import TModelError
from tmodel.manifest.encoding import pack_manifest
from tmodel.manifest.nodes import LAYOUTS, QSCHEMES


def torch_roundtrip(obj: Any) -> Any:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def roundtrip(obj: Any) -> Any:
    return tmodel.load_bytes(tmodel.save_bytes(obj))


def edit_root(data: bytes, edit: Callable[[Any], Any]) -> bytes:
    offset, length, digest_id = struct.unpack_from("<QQH", data, len(data) - TRAILER_SIZE)
    wire = msgpack.unpackb(data[offset : offset + length], raw=False)
    wire["root"] = edit(wire["root"])
    manifest = pack_manifest(wire)
    return data[:offset] + manifest + pack_trailer(offset, manifest, BY_ID[digest_id], data[:HEADER_SIZE])


def load_error(root: Any) -> str:
    """The code loading a file with `root` as its object tree gives (tensor 0 is a float32 [2])."""
    data = edit_root(tmodel.save_bytes({"t": torch.ones(2)}), lambda r: root)
    with pytest.raises(TModelError) as info:
        tmodel.load_bytes(data)
    return info.value.code


def typed(v: Any) -> Any:
    """A value with the type of every part spelled out, so that equal-but-differently-typed values differ."""
    if isinstance(v, dict):
        return (type(v), [(typed(k), typed(x)) for k, x in v.items()])
    if isinstance(v, (list, tuple)):
        return (type(v), [typed(x) for x in v])
    if isinstance(v, (set, frozenset)):
        return (type(v), sorted(map(repr, map(typed, v))))
    if isinstance(v, np.generic):
        return (type(v), v.tobytes())
    return (type(v), v)


KEYS: list[Any] = [
    (1, "a"),
    ((1, 2), (3, ("x", b"y"))),
    (),
    torch.float16,
    torch.device("cuda:1"),
    1 - 2j,
    torch.Size([2, 3]),
    np.float32(1.5),
    torch.sparse_csr,
    torch.per_channel_affine,
    (torch.int8, torch.device("cpu"), 2j),
]


@pytest.mark.parametrize("kind", [dict, collections.OrderedDict, collections.Counter])
def test_keys_beyond_scalars_round_trip_in_every_mapping(kind: Callable[..., Any]) -> None:
    value = kind({k: i for i, k in enumerate(KEYS)})
    torch_keys = kind({k: i for i, k in enumerate(KEYS) if not isinstance(k, np.generic)})
    assert typed(torch_roundtrip(torch_keys)) == typed(torch_keys)  # numpy needs its globals added
    back = roundtrip(value)
    assert typed(back) == typed(value)
    assert [type(k) for k in back] == [type(k) for k in KEYS]


def test_sets_of_hashable_values_round_trip_in_one_order() -> None:
    value = {
        (1, "a"),
        ((1,), 2),
        torch.float32,
        torch.device("cpu"),
        1j,
        torch.strided,
        torch.Size([1, 2]),
        3,
    }
    assert typed(roundtrip(value)) == typed(value)
    assert tmodel.save_bytes(value) == tmodel.save_bytes(set(reversed(list(value))))


def test_tensors_under_tuple_keys_are_named_by_the_key_path() -> None:
    with tmodel.open(
        io.BytesIO(tmodel.save_bytes({(1, "a"): torch.ones(2), torch.float16: torch.zeros(1)}))
    ) as f:
        assert [t.name for t in f.manifest.tensors] == ["(1, 'a')", "torch.float16"]


@pytest.mark.parametrize(
    ("root", "code"),
    [
        ({"dict": [[{"tuple": [1]}, 0], [{"tuple": [1]}, 1]]}, "MANIFEST_SCHEMA"),  # duplicate in the file
        (
            {"dict": [[{"tuple": [0.0]}, 0], [{"tuple": [-0.0]}, 1]]},
            "MANIFEST_SCHEMA",
        ),  # distinct: Python can't
        ({"dict": [[{"tuple": [1]}, 0], [{"tuple": [True]}, 1]]}, "MANIFEST_SCHEMA"),
        ({"counter": [[{"tuple": [{"tensor": 0}]}, 0]]}, "MANIFEST_SCHEMA"),  # a key holding a tensor
        ({"dict": [[{"list": []}, 0]]}, "MANIFEST_SCHEMA"),  # unhashable
        ({"set": [{"bytearray": b""}]}, "MANIFEST_SCHEMA"),
        ({"set": [{"dtype": "float32"}, {"dtype": "float32"}]}, "MANIFEST_SCHEMA"),
        ({"set": [{"complex": [0.0, 1.0]}, {"complex": [0.0, 1.0]}]}, "MANIFEST_SCHEMA"),
    ],
)
def test_keys_the_file_or_python_cannot_tell_apart_or_hash_are_refused(root: Any, code: str) -> None:
    assert load_error(root) == code


def test_keys_distinct_in_the_file_and_in_python_load() -> None:
    data = edit_root(
        tmodel.save_bytes({"t": torch.ones(2)}),
        lambda r: {"dict": [[{"tuple": [1]}, 0], [{"tuple": [1, 2]}, 1], [{"tuple": []}, 2]]},
    )
    assert tmodel.load_bytes(data) == {(1,): 0, (1, 2): 1, (): 2}


# -- tensor attributes ----------------------------------------------------------------------------------
def test_tensor_attributes_round_trip_on_tensors_and_parameters() -> None:
    base = torch.arange(6.0)
    t = base[:3]
    t.foo = {"a": 1, "view": base[3:]}
    p = nn.Parameter(torch.ones(2))
    p.bar = [1, (2, torch.float16)]
    g = torch.ones(2).requires_grad_()
    g.baz = "x"
    value = {"base": base, "t": t, "p": p, "g": g}
    theirs = torch_roundtrip(value)
    assert theirs["t"].foo["a"] == 1 and theirs["p"].bar == [1, (2, torch.float16)]
    back = roundtrip(value)
    assert type(back["t"]) is torch.Tensor and back["t"].__dict__.keys() == {"foo"}
    assert back["t"].foo["a"] == 1 and torch.equal(back["t"].foo["view"], torch.arange(3.0, 6.0))
    # the attribute's tensor still shares the storage of the tensor it is a view of
    assert back["t"].foo["view"].untyped_storage().data_ptr() == back["base"].untyped_storage().data_ptr()
    assert (
        type(back["p"]) is nn.Parameter
        and back["p"].requires_grad
        and back["p"].bar == [1, (2, torch.float16)]
    )
    assert back["g"].requires_grad and back["g"].baz == "x"
    assert "foo" not in back["base"].__dict__


def test_a_buffer_keeps_its_attributes_as_torch_does() -> None:
    b = nn.Buffer(torch.ones(2), persistent=False)
    assert torch_roundtrip(b).__dict__ == b.__dict__ == {"persistent": False, "_is_buffer": True}
    back = roundtrip({"b": b})["b"]
    assert type(back) is torch.Tensor and back.__dict__ == {"persistent": False, "_is_buffer": True}


def test_tensor_attributes_are_written_as_a_tensor_attrs_node() -> None:
    t = torch.ones(2)
    t.foo = 1
    with tmodel.open(io.BytesIO(tmodel.save_bytes([t]))) as f:
        assert f.manifest.to_wire()["root"] == {
            "list": [{"tensor_attrs": {"of": {"tensor": 0}, "attrs": [["foo", 1]]}}]
        }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (object(), 'checkpoint["t"].foo: unsupported type object'),
        (nn.Linear(1, 1), 'checkpoint["t"]: a tensor attribute cannot hold a module'),
        ({"k": lambda: 0}, 'checkpoint["t"].foo["k"]: unsupported type function'),
    ],
)
def test_an_attribute_that_cannot_be_stored_is_refused_not_dropped(value: Any, message: str) -> None:
    t = torch.ones(2)
    t.foo = value
    with pytest.raises(TModelError) as info:
        tmodel.save_bytes({"t": t})
    assert info.value.code == "UNSUPPORTED_TYPE"
    assert str(info.value).startswith(message), str(info.value)


def test_an_attribute_name_that_is_not_a_string_is_refused() -> None:
    t = torch.ones(2)
    t.__dict__[1] = "x"
    with pytest.raises(TModelError) as info:
        tmodel.save_bytes({"t": t})
    assert info.value.code == "UNSUPPORTED_TYPE"
    assert str(info.value) == 'checkpoint["t"]: tensor attribute name 1 is not a string'


class _Sub(torch.Tensor):
    pass


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_tensor_subclasses_are_still_refused(device: str) -> None:
    with pytest.raises(TModelError) as info:
        tmodel.save_bytes({"s": torch.ones(1, device=device).as_subclass(_Sub)})
    assert info.value.code == "UNSUPPORTED_TYPE"
    assert str(info.value) == 'checkpoint["s"]: unsupported tensor type _Sub'


@pytest.mark.parametrize(
    "root",
    [
        {"tensor_attrs": {"of": 1, "attrs": []}},
        {"tensor_attrs": {"of": {"list": [{"tensor": 0}]}, "attrs": []}},
        {"tensor_attrs": {"of": {"tensor": 0}, "attrs": [["a", 1], ["a", 2]]}},
        {"tensor_attrs": {"of": {"tensor": 0}, "attrs": [[1, 1]]}},
        {"tensor_attrs": {"of": {"tensor": 0}, "attrs": [["m", {"list": [{"module": 0}]}]]}},
    ],
    ids=["not-a-tensor", "a-list", "duplicate-name", "int-name", "module-value"],
)
def test_bad_tensor_attrs_nodes_are_manifest_schema(root: Any) -> None:
    assert load_error(root) == "MANIFEST_SCHEMA"


# -- layouts and qschemes --------------------------------------------------------------------------------
def test_the_layout_and_qscheme_tables_are_torchs() -> None:
    assert set(LAYOUTS) == {n for n in dir(torch) if isinstance(getattr(torch, n), torch.layout)}
    assert set(QSCHEMES) == {n for n in dir(torch) if isinstance(getattr(torch, n), torch.qscheme)}


@pytest.mark.parametrize("name", [*LAYOUTS, *QSCHEMES])
def test_layouts_and_qschemes_round_trip_as_the_same_object(name: str) -> None:
    value = getattr(torch, name)
    assert torch_roundtrip(value) is value
    assert roundtrip([value])[0] is value
    tag = "layout" if name in LAYOUTS else "qscheme"
    with tmodel.open(io.BytesIO(tmodel.save_bytes(value))) as f:
        assert f.manifest.to_wire()["root"] == {tag: name}


@pytest.mark.parametrize(
    ("root", "code"),
    [
        ({"layout": "sparse_foo"}, "UNSUPPORTED_TYPE"),
        ({"qscheme": "per_block_affine"}, "UNSUPPORTED_TYPE"),
        ({"layout": "float32"}, "UNSUPPORTED_TYPE"),  # torch.float32 is not a layout
        ({"layout": "Strided"}, "MANIFEST_SCHEMA"),
        ({"qscheme": ""}, "MANIFEST_SCHEMA"),
        ({"layout": 1}, "MANIFEST_SCHEMA"),
    ],
)
def test_unknown_layout_and_qscheme_names(root: Any, code: str) -> None:
    assert load_error(root) == code


# -- meta tensors ------------------------------------------------------------------------------------------
def test_meta_tensors_keep_dtype_shape_strides_and_offset() -> None:
    x = torch.empty(4, 6, dtype=torch.bfloat16, device="meta").t()[1:]
    back = roundtrip({"x": x, "e": torch.empty(0, 3, device="meta"), "s": torch.empty((), device="meta")})
    for k, want in (("x", x), ("e", torch.empty(0, 3)), ("s", torch.empty(()))):
        got = back[k]
        assert type(got) is torch.Tensor and got.is_meta and got.device == torch.device("meta")
        assert (got.dtype, got.shape, got.stride(), got.storage_offset()) == (
            want.dtype,
            want.shape,
            want.stride(),
            want.storage_offset(),
        )
    with tmodel.open(io.BytesIO(tmodel.save_bytes(x))) as f:
        assert f.manifest.tensors == []
        assert f.manifest.to_wire()["root"] == {
            "meta_tensor": {
                "dtype": "bfloat16",
                "shape": [5, 4],
                "strides": [1, 6],
                "offset": 1,
                "parameter": False,
                "requires_grad": False,
            }
        }


def test_a_meta_state_dict_keeps_parameters_and_requires_grad() -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)).to("meta")
    model[0].bias.requires_grad_(False)
    sd = model.state_dict(keep_vars=True)
    sd["grad"] = torch.empty(2, device="meta").requires_grad_()
    back = roundtrip(sd)
    assert list(back) == list(sd)
    for k, v in sd.items():
        got = back[k]
        assert type(got) is type(v) and got.is_meta, k
        assert (got.dtype, got.shape, got.requires_grad) == (v.dtype, v.shape, v.requires_grad), k


def test_a_meta_tensor_may_carry_attributes() -> None:
    t = torch.empty(2, device="meta")
    t.foo = 3
    back = roundtrip(t)
    assert back.is_meta and back.foo == 3


def _meta(**change: Any) -> Any:
    body = {"dtype": "float32", "shape": [2], "strides": [1], "offset": 0, "parameter": False}
    return {"meta_tensor": {**body, "requires_grad": False, **change}}


@pytest.mark.parametrize(
    ("root", "code"),
    [
        (_meta(dtype="float99"), "UNKNOWN_DTYPE"),
        (_meta(dtype="uint4"), "UNKNOWN_DTYPE"),  # a value-only dtype is no tensor's
        (_meta(shape=[2, 2]), "BAD_TENSOR"),  # a stride per dimension
        (_meta(shape=[-1]), "MANIFEST_SCHEMA"),
        (_meta(shape=[2**62, 4], strides=[4, 1]), "BAD_TENSOR"),  # overflows int64 bytes
        (_meta(shape=[1] * 65, strides=[1] * 65), "LIMIT_EXCEEDED"),
        (_meta(offset=2**62), "BAD_TENSOR"),
        (_meta(parameter=1), "MANIFEST_SCHEMA"),
    ],
    ids=[
        "unknown-dtype",
        "value-dtype",
        "rank-strides",
        "negative",
        "overflow",
        "rank-65",
        "offset",
        "int-flag",
    ],
)
def test_bad_meta_tensors_are_refused_with_the_tensor_tables_codes(root: Any, code: str) -> None:
    assert load_error(root) == code


# -- what a writer still refuses ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (torch.ones(2).untyped_storage(), "a storage (UntypedStorage) cannot be saved as a value"),
        (torch.FloatTensor, "legacy tensor type torch.FloatTensor cannot be saved"),
        (torch.ones(2).to_sparse(), "tensors of layout torch.sparse_coo are not supported"),
        (frozenset({1}), "unsupported type frozenset"),
    ],
)
def test_values_torch_accepts_but_the_format_does_not_hold_are_refused_by_name(
    value: Any, message: str
) -> None:
    with pytest.raises(TModelError) as info:
        tmodel.save_bytes({"v": value})
    assert info.value.code == "UNSUPPORTED_TYPE"
    assert message in str(info.value), str(info.value)


def test_a_keep_vars_state_dict_with_buffer_attributes_loads_into_a_model(tmp_path: Path) -> None:
    class WithBuffer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.b = nn.Buffer(torch.arange(2.0))

    source = WithBuffer()
    sd = source.state_dict(keep_vars=True)
    assert sd["b"].__dict__ == {"persistent": True, "_is_buffer": True}
    tmodel.save({(1, "not a state key"): 0, "sd": sd}, tmp_path / "s.tmodel")
    target = WithBuffer()
    target.b.zero_()
    tmodel.load_into(target, tmp_path / "s.tmodel", key="sd")
    assert torch.equal(target.b, torch.arange(2.0)) and torch.equal(target.lin.weight, source.lin.weight)
