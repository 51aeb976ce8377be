"""The layer registry: registration rules, the unregistered-type and layer-version errors, configs captured
from __init__ or given by get_config/from_config, pydantic validation on save and load, what a config may
hold, crafted files (cycles, foreign type names) and the guarantee that nothing is imported by a name read
from a file."""

from __future__ import annotations

import builtins as py_builtins
import importlib
import os
import struct
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import msgpack
import pytest
import torch
from pydantic import BaseModel, Field
from torch import nn

import tmodel
from tmodel.container.framing import HEADER_SIZE, TRAILER_SIZE, pack_trailer
from tmodel.errors import TModelError, UnregisteredType
from tmodel.manifest.encoding import pack_manifest
from tmodel.nn import registry

Register = Callable[..., Callable[[type[nn.Module]], type[nn.Module]]]


# -- helpers --------------------------------------------------------------------------------------------
def unique(stem: str) -> str:
    """A layer name no other test uses: `tests.nn_registry.<stem>_<hex>`."""
    return f"tests.nn_registry.{stem}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def reg() -> Iterator[Register]:
    """tmodel.register, with every name it registers removed again after the test."""
    names: list[str] = []

    def register(name: str, version: int = 1, **kw: Any) -> Callable[[type[nn.Module]], type[nn.Module]]:
        def decorate(cls: type[nn.Module]) -> type[nn.Module]:
            out = tmodel.register(name, version, **kw)(cls)
            names.append(name)
            return out

        return decorate

    yield register
    for name in names:
        if name in registry.registered_names():
            registry.unregister(name)


def read_wire(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    offset, length = struct.unpack_from("<QQ", data, len(data) - TRAILER_SIZE)
    return msgpack.unpackb(data[offset : offset + length], raw=False)


def rewrite_manifest(path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Edit a valid file's manifest in place and write it back with a correct manifest digest."""
    data = path.read_bytes()
    offset, length = struct.unpack_from("<QQ", data, len(data) - TRAILER_SIZE)
    wire = msgpack.unpackb(data[offset : offset + length], raw=False)
    edit(wire)
    raw = pack_manifest(wire)
    path.write_bytes(data[:offset] + raw + pack_trailer(offset, raw, wire["checksum"], data[:HEADER_SIZE]))
    return path


def error_of(fn: Callable[[], Any]) -> TModelError:
    with pytest.raises(TModelError) as info:
        fn()
    return info.value


# -- registration rules -----------------------------------------------------------------------------------
def test_registering_a_name_twice_is_an_error(reg: Register) -> None:
    name = unique("Twice")

    @reg(name)
    class First(nn.Module):
        def __init__(self, dim: int = 2):
            super().__init__()

    class Second(nn.Module):
        def __init__(self, dim: int = 2):
            super().__init__()

    err = error_of(lambda: tmodel.register(name)(Second))
    assert err.code == "INVALID_ARGUMENT"
    assert name in str(err)
    assert registry.spec_for_name(name, "test").cls is First
    assert not registry.is_registered(Second)


def test_failed_registration_leaves_the_class_alone(reg: Register, monkeypatch: pytest.MonkeyPatch) -> None:
    """A register() call that fails must not patch the class's __init__ (it could be torch's own class)."""
    name = unique("Taken")

    @reg(name)
    class Owner(nn.Module):
        def __init__(self) -> None:
            super().__init__()

    class Other(nn.Module):
        def __init__(self, dim: int = 2):
            super().__init__()

    original, linear_init = Other.__init__, nn.Linear.__init__
    monkeypatch.setattr(nn.Linear, "__init__", linear_init)  # undo any patching at teardown
    with pytest.raises(TModelError):
        tmodel.register(name)(Other)  # the name is taken
    with pytest.raises(TModelError):
        tmodel.register(unique("Linear"))(nn.Linear)  # the class is registered as torch.nn.Linear
    pairs = ((Other, original), (nn.Linear, linear_init))
    patched = [cls.__qualname__ for cls, init in pairs if cls.__init__ is not init]
    assert not patched, f"failed registrations wrapped the __init__ of {patched}"


def test_registering_a_class_twice_is_an_error(reg: Register, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = unique("Once"), unique("Again")

    @reg(first)
    class Once(nn.Module):
        def __init__(self, dim: int = 2):
            super().__init__()

    err = error_of(lambda: tmodel.register(second)(Once))
    assert err.code == "INVALID_ARGUMENT"
    assert first in str(err)
    assert second not in registry.registered_names()
    assert registry.spec_for_module(Once(), "test").name == first
    monkeypatch.setattr(nn.Linear, "__init__", nn.Linear.__init__)  # undo any patching at teardown
    err = error_of(lambda: tmodel.register(unique("Lin"))(nn.Linear))
    assert err.code == "INVALID_ARGUMENT" and "torch.nn.Linear" in str(err)


@pytest.mark.parametrize("name", ["has space", "1abc", "a..b", ".a", "a.", "", "a-b", "x" * 257, "é.a"])
def test_register_rejects_invalid_names(name: str) -> None:
    class Bad(nn.Module):
        pass

    err = error_of(lambda: tmodel.register(name)(Bad))
    assert err.code == "INVALID_ARGUMENT"
    assert not registry.is_registered(Bad)


def test_register_rejects_bad_versions_classes_and_star_args() -> None:
    class Layer(nn.Module):
        pass

    for version in (0, -1):
        assert error_of(lambda v=version: tmodel.register(unique("V"), v)(Layer)).code == "INVALID_ARGUMENT"
    assert error_of(lambda: tmodel.register(unique("NotModule"))(int)).code == "INVALID_ARGUMENT"  # type: ignore[arg-type]

    class StarArgs(nn.Module):
        def __init__(self, *layers: nn.Module):
            super().__init__()

    err = error_of(lambda: tmodel.register(unique("Star"))(StarArgs))
    assert err.code == "INVALID_ARGUMENT" and "get_config" in str(err)


def test_layer_without_its_own_init_registers(reg: Register, tmp_path: Path) -> None:
    """A stateless layer that does not define __init__ (it inherits nn.Module's `*args, **kwargs`) has an
    empty config; registering it must not demand get_config/from_config."""

    @reg(unique("Swish"))
    class Swish(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(x)

    tmodel.save(nn.Sequential(nn.Linear(2, 2), Swish()), tmp_path / "s.tmodel")
    back = tmodel.load(tmp_path / "s.tmodel")
    assert type(back[1]) is Swish


def test_builtins_are_registered_before_user_layers() -> None:
    names = registry.registered_names()
    assert "torch.nn.Linear" in names and "torch.nn.TransformerEncoderLayer" in names
    assert registry.spec_for_name("torch.nn.Conv2d", "test").version == 1


# -- unregistered types -----------------------------------------------------------------------------------
class NotRegistered(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)


def test_unregistered_class_on_save(tmp_path: Path) -> None:
    path = tmp_path / "m.tmodel"
    for obj in (NotRegistered(), {"model": nn.Sequential(nn.ReLU(), NotRegistered())}):
        err = error_of(lambda o=obj: tmodel.save(o, path))
        assert err.code == "UNREGISTERED_TYPE"
        assert f"{NotRegistered.__module__}.{NotRegistered.__qualname__}" in str(err)
        assert "tmodel.register" in str(err)
        assert not path.exists()


def test_subclass_of_a_registered_class_is_not_registered(reg: Register, tmp_path: Path) -> None:
    @reg(unique("Base"))
    class Base(nn.Module):
        def __init__(self, dim: int = 3):
            super().__init__()
            self.lin = nn.Linear(dim, dim)

    class Child(Base):
        pass

    err = error_of(lambda: tmodel.save(Child(), tmp_path / "c.tmodel"))
    assert err.code == "UNREGISTERED_TYPE"
    assert Child.__qualname__ in str(err)


def test_unregistered_type_on_load_names_type_and_nearest(reg: Register, tmp_path: Path) -> None:
    ns = f"acme{uuid.uuid4().hex[:8]}"
    gate_name, near_name = f"{ns}.Gate", f"{ns}.Gat"

    @reg(gate_name)
    class Gate(nn.Module):
        def __init__(self, dim: int = 4):
            super().__init__()
            self.proj = nn.Linear(dim, dim)

    @reg(near_name)
    class Gat(nn.Module):
        def __init__(self) -> None:
            super().__init__()

    tmodel.save({"model": Gate(), "step": 1}, tmp_path / "g.tmodel")
    registry.unregister(gate_name)
    err = error_of(lambda: tmodel.load(tmp_path / "g.tmodel"))
    assert err.code == "UNREGISTERED_TYPE"
    msg = str(err)
    assert repr(gate_name) in msg or gate_name in msg
    assert "nearest registered" in msg and near_name in msg
    assert f'@tmodel.register("{gate_name}"' in msg
    # the weights stay readable without the class
    with tmodel.open(tmp_path / "g.tmodel") as f:
        assert sorted(f.keys()) == ["model.proj.bias", "model.proj.weight"]


def test_unknown_type_with_nothing_near(tmp_path: Path) -> None:
    tmodel.save(nn.Sequential(nn.ReLU()), tmp_path / "s.tmodel")
    rewrite_manifest(tmp_path / "s.tmodel", lambda w: w["modules"][1].__setitem__("type", "zz.Qqqqqqqqqqq"))
    err = error_of(lambda: tmodel.load(tmp_path / "s.tmodel"))
    assert err.code == "UNREGISTERED_TYPE"
    assert "zz.Qqqqqqqqqqq" in str(err)
    assert "nearest" not in str(err)


# -- layer versions ---------------------------------------------------------------------------------------
def _versioned(dim: int = 3) -> type[nn.Module]:
    class Layer(nn.Module):
        def __init__(self, dim: int = dim):
            super().__init__()
            self.lin = nn.Linear(dim, dim)

    return Layer


def test_layer_version_newer_in_file(reg: Register, tmp_path: Path) -> None:
    name = unique("Versioned")
    v2 = reg(name, version=2)(_versioned())
    tmodel.save(v2(), tmp_path / "v.tmodel")
    with tmodel.open(tmp_path / "v.tmodel") as f:
        assert f.manifest.modules[0].version == 2
    registry.unregister(name)
    reg(name, version=1)(_versioned())
    err = error_of(lambda: tmodel.load(tmp_path / "v.tmodel"))
    assert err.code == "LAYER_VERSION"
    assert "version 2" in str(err) and "version 1" in str(err)
    assert "upgrade" in str(err)


def test_layer_version_older_in_file(reg: Register, tmp_path: Path) -> None:
    name = unique("Versioned")
    v1 = reg(name, version=1)(_versioned())
    tmodel.save(v1(), tmp_path / "v.tmodel")
    registry.unregister(name)
    reg(name, version=3)(_versioned())
    err = error_of(lambda: tmodel.load(tmp_path / "v.tmodel"))
    assert err.code == "MIGRATION"  # no step registered from version 1: a gap in the chain (SPEC.md §5.8)
    assert "version 1" in str(err) and "migration" in str(err) and name in str(err)


def test_layer_changed_without_new_version_is_state_mismatch(reg: Register, tmp_path: Path) -> None:
    name = unique("Changed")

    @reg(name)
    class Old(nn.Module):
        def __init__(self, dim: int = 3):
            super().__init__()
            self.a = nn.Linear(dim, dim)

    tmodel.save(Old(), tmp_path / "o.tmodel")
    registry.unregister(name)

    @reg(name)
    class New(nn.Module):
        def __init__(self, dim: int = 3):
            super().__init__()
            self.a = nn.Linear(dim, dim)
            self.b = nn.Linear(dim, dim)

    err = error_of(lambda: tmodel.load(tmp_path / "o.tmodel"))
    assert err.code == "STATE_MISMATCH"
    assert "'b'" in str(err)


# -- pydantic config models -------------------------------------------------------------------------------
class GateConfig(BaseModel):
    dim: int = Field(gt=0)
    act: Literal["silu", "gelu"] = "silu"


def _gate(reg: Register, name: str, calls: list[dict[str, Any]]) -> type[nn.Module]:
    @reg(name, config=GateConfig)
    class Gate(nn.Module):
        def __init__(self, dim: int, act: str = "silu"):
            super().__init__()
            calls.append({"dim": dim, "act": act})
            self.act = act
            self.proj = nn.Linear(max(dim, 1), 2)

    return Gate


def test_config_model_rejects_on_save(reg: Register, tmp_path: Path) -> None:
    gate = _gate(reg, unique("Gate"), [])
    tmodel.save(gate(4, act="gelu"), tmp_path / "ok.tmodel")
    for kwargs, field in (({"dim": 4, "act": "tanh"}, "act"), ({"dim": 0}, "dim")):
        err = error_of(lambda k=kwargs: tmodel.save({"m": gate(**k)}, tmp_path / "bad.tmodel"))
        assert err.code == "BAD_CONFIG"
        assert field in str(err) and "on save" in str(err)
        assert not (tmp_path / "bad.tmodel").exists()


@pytest.mark.parametrize(("field", "value"), [("act", "tanh"), ("dim", -3), ("dim", "four")])
def test_config_model_rejects_on_load(reg: Register, tmp_path: Path, field: str, value: Any) -> None:
    calls: list[dict[str, Any]] = []
    gate = _gate(reg, unique("Gate"), calls)
    tmodel.save(gate(4), tmp_path / "g.tmodel")
    assert isinstance(tmodel.load(tmp_path / "g.tmodel"), gate)
    rewrite_manifest(tmp_path / "g.tmodel", lambda w: w["modules"][0]["config"].__setitem__(field, value))
    calls.clear()
    err = error_of(lambda: tmodel.load(tmp_path / "g.tmodel"))
    assert err.code == "BAD_CONFIG"
    assert field in str(err) and "on load" in str(err)
    assert calls == [], "the config is validated before the constructor runs"


# -- get_config / from_config and captured configs -----------------------------------------------------------
def test_get_config_and_from_config_overrides(reg: Register, tmp_path: Path) -> None:
    made: list[dict[str, Any]] = []

    @reg(unique("Custom"))
    class Custom(nn.Module):
        def __init__(self, n: int, secret: object = None):
            super().__init__()
            self.size = n
            self.secret = secret  # not data: only get_config decides what is saved
            self.lin = nn.Linear(n, n)

        def get_config(self) -> dict[str, Any]:
            return {"size": self.size, "mode": "square"}

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Custom:
            made.append(dict(config))
            return cls(config["size"])

    model = Custom(3, secret=object())
    assert "_tmodel_init_args" not in model.__dict__  # no capture when get_config is defined
    tmodel.save(model, tmp_path / "c.tmodel")
    # save rebuilds it on the meta device, as load will, before the file is in place (SPEC.md §11)
    assert made == [{"size": 3, "mode": "square"}]
    assert read_wire(tmp_path / "c.tmodel")["modules"][0]["config"] == {"size": 3, "mode": "square"}
    back = tmodel.load(tmp_path / "c.tmodel")
    # constructed once more, on the meta device (names, shapes and memory checked): every tensor it holds
    # is the file's, so that module is filled and returned, not constructed again
    assert made == [{"size": 3, "mode": "square"}] * 2
    assert isinstance(back, Custom) and back.size == 3 and back.secret is None
    assert torch.equal(back.lin.weight, model.lin.weight)


def test_get_config_without_from_config_constructs_with_kwargs(reg: Register, tmp_path: Path) -> None:
    @reg(unique("OnlyGet"))
    class OnlyGet(nn.Module):
        def __init__(self, width: int, *layers: nn.Module):
            super().__init__()
            self.width = width
            self.lin = nn.Linear(width, 1)

        def get_config(self) -> dict[str, Any]:
            return {"width": self.width}

    model = OnlyGet(5, nn.ReLU())
    tmodel.save(model, tmp_path / "o.tmodel")
    back = tmodel.load(tmp_path / "o.tmodel")
    assert isinstance(back, OnlyGet) and back.width == 5


def test_captured_config_includes_defaults_and_kwargs(reg: Register, tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    @reg(unique("Kw"))
    class Kw(nn.Module):
        def __init__(self, dim: int, act: str = "silu", *, scale: float = 2.0, **extra: Any):
            super().__init__()
            seen.append({"dim": dim, "act": act, "scale": scale, **extra})
            self.lin = nn.Linear(dim, dim)

    model = Kw(4, flag=True, label="n")
    want = {"dim": 4, "act": "silu", "scale": 2.0, "flag": True, "label": "n"}
    assert registry.spec_for_module(model, "test").get_config(model) == want
    tmodel.save(model, tmp_path / "k.tmodel")
    assert read_wire(tmp_path / "k.tmodel")["modules"][0]["config"] == want
    seen.clear()
    back = tmodel.load(tmp_path / "k.tmodel")
    assert seen == [want]  # the meta-device dry run, whose module the file's tensors then fill
    assert registry.spec_for_module(back, "test").get_config(back) == want


def test_captured_config_of_a_registered_subclass_is_its_own(reg: Register, tmp_path: Path) -> None:
    """The outermost __init__ call is recorded: a registered subclass saves its own arguments."""

    @reg(unique("Parent"))
    class Parent(nn.Module):
        def __init__(self, dim: int, bias: bool = True):
            super().__init__()
            self.lin = nn.Linear(dim, dim, bias=bias)

    @reg(unique("Kid"))
    class Kid(Parent):
        def __init__(self, width: int):
            super().__init__(width * 2, bias=False)

    model = Kid(3)
    tmodel.save(model, tmp_path / "k.tmodel")
    assert read_wire(tmp_path / "k.tmodel")["modules"][0]["config"] == {"width": 3}
    back = tmodel.load(tmp_path / "k.tmodel")
    assert type(back) is Kid and back.lin.bias is None and back.lin.in_features == 6


def test_config_values_keep_their_python_types(reg: Register, tmp_path: Path) -> None:
    @reg(unique("Kinds"))
    class Kinds(nn.Module):
        def __init__(self, **values: Any):
            super().__init__()
            self.values = values

    values = {
        "none": None,
        "flag": False,
        "i": -(1 << 63),
        "u": (1 << 64) - 1,
        "f": 0.1,
        "s": "naïve",
        "b": b"\x00\xff",
        "t": (1, (2, [3])),
        "l": [1.5, "x", None],
        "d": {1: "one", "k": {True: (None,)}, 2.5: b""},
        "dtype": torch.bfloat16,
        "dtypes": [torch.float16, torch.int8],
        "child": nn.Linear(2, 3),
        # schema version 3's plain values
        "set": {1, "a"},
        "device": torch.device("cuda:1"),
        "size": torch.Size([2, 3]),
        "complex": 1 - 2j,
        "bytearray": bytearray(b"x"),
        "value_only_dtype": torch.qint8,
        # schema version 4's
        "layout": torch.sparse_csr,
        "qscheme": torch.per_channel_symmetric,
        "keys": {(1, ("a", torch.float16)): 1, torch.device("cpu"): 2, 1j: 3, torch.strided: 4},
        "tuple_set": {(1, 2), torch.Size([3])},
    }
    model = Kinds(**values)
    tmodel.save(model, tmp_path / "k.tmodel")
    back = tmodel.load(tmp_path / "k.tmodel")

    def same(a: Any, b: Any) -> None:
        assert type(a) is type(b), (a, b)
        if isinstance(a, dict):
            assert [(type(k), k) for k in a] == [(type(k), k) for k in b]
            for k in a:
                same(a[k], b[k])
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b)
            for x, y in zip(a, b, strict=True):
                same(x, y)
        elif isinstance(a, nn.Module):
            assert torch.equal(a.weight, b.weight)
        else:
            assert a == b

    same(back.values, values)


@pytest.mark.parametrize(
    "value",
    [
        lambda x: x,
        torch.ones(2),
        nn.Parameter(torch.ones(2)),
        object(),
        frozenset({1, 2}),
        1 << 64,
        -(1 << 63) - 1,
        [1, lambda: 0],
        {"k": torch.zeros(1)},
        {(1, torch.ones(1)): "a tensor in a tuple key"},
        torch.empty(2, device="meta"),
    ],
    ids=[
        "lambda",
        "tensor",
        "parameter",
        "object",
        "frozenset",
        "int-too-big",
        "int-too-small",
        "lambda-in-list",
        "tensor-in-dict",
        "tensor-in-tuple-key",
        "meta-tensor",
    ],
)
def test_config_value_that_is_not_data_is_bad_config(reg: Register, tmp_path: Path, value: Any) -> None:
    @reg(unique("Holder"))
    class Holder(nn.Module):
        def __init__(self, dim: int, extra: Any = None):
            super().__init__()
            self.lin = nn.Linear(dim, dim)

    err = error_of(lambda: tmodel.save({"m": Holder(2, extra=value)}, tmp_path / "h.tmodel"))
    assert err.code == "BAD_CONFIG"
    assert "extra" in str(err)
    assert not (tmp_path / "h.tmodel").exists()


def test_module_valued_config_shares_the_child_record(reg: Register, tmp_path: Path) -> None:
    @reg(unique("Wrap"))
    class Wrap(nn.Module):
        def __init__(self, inner: nn.Module, scale: float = 1.0):
            super().__init__()
            self.inner = inner
            self.scale = scale

    torch.manual_seed(0)
    model = Wrap(nn.Linear(3, 3), scale=0.5)
    tmodel.save(model, tmp_path / "w.tmodel")
    wire = read_wire(tmp_path / "w.tmodel")
    assert len(wire["modules"]) == 2
    assert wire["modules"][0]["config"] == {"inner": {"module": 1}, "scale": 0.5}
    assert wire["modules"][0]["children"] == {"inner": 1}
    back = tmodel.load(tmp_path / "w.tmodel")
    assert torch.equal(back.inner.weight, model.inner.weight)


def test_constructor_that_reinitialises_a_config_module_keeps_loaded_weights(
    reg: Register, tmp_path: Path
) -> None:
    """SPEC 5.7: the layer is constructed, then its parameters are replaced by the file's. A constructor
    that initialises a module it is given (as nn.Transformer does) must not overwrite the loaded weights."""

    @reg(unique("InitWrap"))
    class InitWrap(nn.Module):
        def __init__(self, inner: nn.Linear):
            super().__init__()
            self.inner = inner
            with torch.no_grad():
                nn.init.zeros_(inner.weight)
                nn.init.zeros_(inner.bias)

    model = InitWrap(nn.Linear(3, 3))
    with torch.no_grad():
        model.inner.weight.copy_(torch.arange(9.0).reshape(3, 3))
        model.inner.bias.fill_(2.0)
    tmodel.save(model, tmp_path / "w.tmodel")
    back = tmodel.load(tmp_path / "w.tmodel")
    assert torch.equal(back.inner.weight, model.inner.weight)
    assert torch.equal(back.inner.bias, model.inner.bias)


# -- crafted files ----------------------------------------------------------------------------------------
def _wrapped_file(reg: Register, tmp_path: Path) -> Path:
    @reg(unique("Wrap"))
    class Wrap(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

    path = tmp_path / "w.tmodel"
    tmodel.save(Wrap(nn.Linear(2, 2)), path)
    return path


@pytest.mark.parametrize(
    "edit",
    [
        lambda w: w["modules"][1]["config"].__setitem__("back", {"module": 0}),
        lambda w: w["modules"][0]["config"].__setitem__("me", {"module": 0}),
        lambda w: w["modules"][1]["config"].__setitem__("deep", {"list": [{"dict": [["k", {"module": 0}]]}]}),
        lambda w: w["modules"][1]["children"].__setitem__("loop", 0),
    ],
    ids=["two-record-cycle", "self-reference", "nested-reference", "child-cycle"],
)
def test_module_cycle_is_bad_layout(
    reg: Register, tmp_path: Path, edit: Callable[[dict[str, Any]], None]
) -> None:
    path = rewrite_manifest(_wrapped_file(reg, tmp_path), edit)
    assert error_of(lambda: tmodel.load(path)).code == "BAD_LAYOUT"
    assert error_of(lambda: tmodel.open(path)).code == "BAD_LAYOUT"


def test_tensor_in_a_config_is_bad_config(reg: Register, tmp_path: Path) -> None:
    path = rewrite_manifest(
        _wrapped_file(reg, tmp_path),
        lambda w: w["modules"][1]["config"].__setitem__("in_features", {"tensor": 0}),
    )
    assert error_of(lambda: tmodel.load(path)).code == "BAD_CONFIG"


@pytest.mark.parametrize(
    "config",
    [
        {"in_features": 2, "out_features": 2, "bias": True, "surprise": 1},
        {"in_features": 2, "bias": True},
        {"in_features": "two", "out_features": 2, "bias": True},
        {"in_features": -5, "out_features": 2, "bias": True},
    ],
    ids=["unknown-key", "missing-key", "wrong-type", "negative"],
)
def test_construction_failure_is_bad_config(reg: Register, tmp_path: Path, config: dict[str, Any]) -> None:
    path = rewrite_manifest(
        _wrapped_file(reg, tmp_path), lambda w: w["modules"][1].__setitem__("config", config)
    )
    err = error_of(lambda: tmodel.load(path))
    assert err.code == "BAD_CONFIG"
    assert "torch.nn.Linear" in str(err)


@pytest.mark.parametrize(
    "config",
    [
        {"num_groups": 0, "num_channels": 4, "eps": 1e-5, "affine": True, "bias": True},
        {"num_groups": 3, "num_channels": 4, "eps": 1e-5, "affine": True, "bias": True},
    ],
    ids=["zero-groups", "indivisible"],
)
def test_any_construction_error_from_a_file_is_bad_config(tmp_path: Path, config: dict[str, Any]) -> None:
    """A reader raises nothing but TModelError for any file content (SPEC 9): a constructor failing with
    ZeroDivisionError on a crafted config is still BAD_CONFIG."""
    path = tmp_path / "g.tmodel"
    tmodel.save(nn.GroupNorm(2, 4), path)
    rewrite_manifest(path, lambda w: w["modules"][0].__setitem__("config", config))
    try:
        tmodel.load(path)
    except TModelError as exc:
        assert exc.code == "BAD_CONFIG"
    except Exception as exc:  # pragma: no cover - the failure this test exists to catch
        pytest.fail(f"a crafted config raised {type(exc).__name__}: {exc}, not a TModelError")
    else:
        pytest.fail("loaded a GroupNorm from an invalid config")


def test_config_disagreeing_with_tensor_shapes_is_state_mismatch(tmp_path: Path) -> None:
    """A record whose config builds Linear(2, 2) but whose weight is 3x5 must not load as a Linear that
    reports in_features=2 and holds a 3x5 weight."""
    path = tmp_path / "l.tmodel"
    tmodel.save(nn.Linear(5, 3), path)
    rewrite_manifest(path, lambda w: w["modules"][0]["config"].update(in_features=2, out_features=2))
    assert error_of(lambda: tmodel.load(path)).code == "STATE_MISMATCH"


def test_renamed_parameter_in_file_is_state_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "l.tmodel"
    tmodel.save(nn.Linear(2, 2), path)

    def rename(w: dict[str, Any]) -> None:
        params = w["modules"][0]["parameters"]
        params["kernel"] = params.pop("weight")

    rewrite_manifest(path, rename)
    err = error_of(lambda: tmodel.load(path))
    assert err.code == "STATE_MISMATCH"
    assert "kernel" in str(err) and "weight" in str(err)


def _rename_param(new: str) -> Callable[[dict[str, Any]], None]:
    def edit(w: dict[str, Any]) -> None:
        params = w["modules"][0]["parameters"]
        params[new] = params.pop("weight")

    return edit


def _add_param(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda w: w["modules"][0]["parameters"].__setitem__(name, {"tensor": 0, "requires_grad": True})


@pytest.mark.parametrize(
    "edit",
    [
        _rename_param("forward"),
        _add_param("training"),
        _add_param("in_features"),
        lambda w: w["modules"][0]["buffers"].__setitem__("weight", 0),
        lambda w: w["modules"][0]["buffers"].__setitem__("extra", 0),
        lambda w: w["modules"][0]["children"].__setitem__("weight", None),
        lambda w: w["modules"][0]["children"].__setitem__("ghost", None),
        lambda w: w["modules"][0]["parameters"].__setitem__("ghost", None),
    ],
    ids=[
        "param-named-like-a-method",
        "param-named-training",
        "param-named-like-a-config-attribute",
        "buffer-named-like-a-parameter",
        "extra-buffer",
        "nil-child-named-like-a-parameter",
        "nil-child",
        "nil-parameter-slot",
    ],
)
def test_crafted_record_names_are_state_mismatch(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None]
) -> None:
    """Record names that differ from the constructed module's are STATE_MISMATCH (SPEC 5.7 step 4), never a
    KeyError/TypeError from torch and never a silently altered module."""
    path = tmp_path / "l.tmodel"
    tmodel.save(nn.Linear(2, 2), path)
    rewrite_manifest(path, edit)
    try:
        loaded = tmodel.load(path)
    except TModelError as exc:
        assert exc.code == "STATE_MISMATCH"
    except Exception as exc:  # pragma: no cover - the failure this test exists to catch
        pytest.fail(f"a crafted record raised {type(exc).__name__}: {exc}, not a TModelError")
    else:
        pytest.fail(f"loaded a Linear from a record with other names: {dict(loaded.named_children())}")


# -- nothing is imported or called by a name read from a file ----------------------------------------------
@pytest.mark.parametrize(
    "type_name",
    [
        "os.system",
        "builtins.eval",
        "subprocess.Popen",
        "torch.nn.modules.linear.Linear",
        "evilpkg_tmodel.Payload",
    ],
)
def test_nothing_is_imported_by_name(
    reg: Register, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, type_name: str
) -> None:
    path = _wrapped_file(reg, tmp_path)
    rewrite_manifest(path, lambda w: w["modules"][0].__setitem__("type", type_name))
    tmodel.load  # noqa: B018  (resolve the lazy attribute before imports are watched)

    system_calls: list[Any] = []
    monkeypatch.setattr(os, "system", lambda *a, **k: system_calls.append(a) or 0)
    imported: list[str] = []
    real_import, real_import_module = py_builtins.__import__, importlib.import_module

    def watch_import(name: str, *args: Any, **kwargs: Any) -> Any:
        imported.append(name)
        return real_import(name, *args, **kwargs)

    def watch_import_module(name: str, package: str | None = None) -> Any:
        imported.append(name)
        return real_import_module(name, package)

    monkeypatch.setattr(py_builtins, "__import__", watch_import)
    monkeypatch.setattr(importlib, "import_module", watch_import_module)
    before = set(sys.modules)

    err = error_of(lambda: tmodel.load(path))
    assert err.code == "UNREGISTERED_TYPE"
    assert type_name in str(err)
    assert system_calls == []
    module_part = type_name.rsplit(".", 1)[0]
    assert not [n for n in imported if n == module_part or n.startswith("evilpkg")], imported
    assert "evilpkg_tmodel" not in sys.modules
    assert not {m for m in set(sys.modules) - before if m.split(".")[0] in ("subprocess", "evilpkg_tmodel")}


def test_a_missing_registration_error_lists_every_unregistered_class_at_once() -> None:
    """One round, not one per attempt: every unregistered class the reader would have to construct, each
    at its first path; a class its parent's constructor builds (Norm, made by Block) needs no registration."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = Norm()

    class Norm(nn.Module):
        pass

    class Head(nn.Module):
        pass

    model = nn.Sequential(Block(), nn.Linear(2, 2), Head(), Block())
    with pytest.raises(UnregisteredType) as info:
        tmodel.save_bytes(model)
    message = str(info.value)
    assert message.startswith("2 unregistered classes must be constructed by the reader")
    for name, where in (("Block", "0"), ("Head", "2")):
        assert f".{name} (at {where})" in message
    assert "Linear" not in message and "Norm" not in message and "(at 3)" not in message
    assert info.value.layer.endswith("Block")
    with pytest.raises(UnregisteredType) as one:
        tmodel.save_bytes(nn.Sequential(Head()))
    assert str(one.value).startswith("1 unregistered class must be constructed by the reader")
