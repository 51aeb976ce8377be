"""Schema version 5: configs that hold what real constructors take (class and function references,
partials, registered value types) and children built by their parent, which need no registration."""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fuzz_mutators as fm
import pytest
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn

import tmodel
import tmodel.api
from tmodel import TModelError
from tmodel.nn import references, registry


class Color(enum.Enum):
    RED = 1
    BLUE = 2


@dataclasses.dataclass
class Dims:
    width: int
    act: Callable[..., Any] = F.gelu
    tag: Color = Color.RED


class Options(BaseModel):
    eps: float = 1e-5
    name: str = "x"


class Block(nn.Module):  # unregistered: built by its parent
    def __init__(self, dims: Dims, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.fc = nn.Linear(dims.width, dims.width)
        self.norm = norm(dims.width)
        self.act = dims.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.fc(x)))


class Net(nn.Module):
    def __init__(
        self,
        dims: Dims,
        n: int = 2,
        norm: Callable[[int], nn.Module] = nn.LayerNorm,
        opts: Options | None = None,
        head: type[nn.Module] = nn.Identity,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(dims, norm) for _ in range(n)])
        self.head = head()
        self.opts = opts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return self.head(x)


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    tmodel.register_value_type(Color, "tests.s5.Color")
    tmodel.register_value_type(Dims, "tests.s5.Dims")
    tmodel.register_value_type(Options, "tests.s5.Options")
    tmodel.register_class(Net, "tests.s5.Net", 1)
    yield
    registry.unregister("tests.s5.Net")
    for name in ("tests.s5.Color", "tests.s5.Dims", "tests.s5.Options"):
        references.unregister_reference(name)


def _net() -> Net:
    torch.manual_seed(0)
    dims = Dims(4, F.silu, Color.BLUE)
    return Net(dims, 3, functools.partial(nn.LayerNorm, eps=1e-3), Options(eps=0.5, name="o"), nn.Tanh)


def test_references_partials_and_value_types_round_trip(tmp_path: Path) -> None:
    model = _net()
    tmodel.save(model, tmp_path / "n.tmodel")
    back = tmodel.load(tmp_path / "n.tmodel")
    x = torch.randn(5, 4)
    assert torch.equal(model(x), back(x))
    assert type(back) is Net and type(back.blocks[0]) is Block and type(back.head) is nn.Tanh
    assert back.blocks[2].norm.eps == 1e-3 and back.blocks[0].act is F.silu
    assert back.opts == Options(eps=0.5, name="o") and type(back.opts) is Options
    with tmodel.open(tmp_path / "n.tmodel") as f:
        m = f.manifest
    config = m.to_wire()["modules"][0]["config"]
    assert config["dims"] == {
        "object": {
            "type": "tests.s5.Dims",
            "data": {
                "dict": [
                    ["width", 4],
                    ["act", {"ref": "torch.nn.functional.silu"}],
                    ["tag", {"object": {"type": "tests.s5.Color", "data": 2}}],
                ]
            },
        }
    }
    assert config["norm"] == {
        "partial": {"ref": "torch.nn.LayerNorm", "args": [], "kwargs": [["eps", 0.001]]}
    }
    assert config["head"] == {"ref": "torch.nn.Tanh"}
    blocks = [r for r in m.modules if r.version is None]
    assert len(blocks) == 3 and {r.type for r in blocks} == {f"{__name__}.Block"}
    assert all(r.config == {} for r in blocks)


def test_a_function_or_value_nobody_registered_is_refused_at_save_naming_its_place(tmp_path: Path) -> None:
    def mine(x: torch.Tensor) -> torch.Tensor:
        return x

    with pytest.raises(TModelError) as info:
        tmodel.save(Net(Dims(2, mine)), tmp_path / "a.tmodel")
    assert info.value.code == "BAD_CONFIG"
    assert "config['dims']" in str(info.value) and "is code, not data" in str(info.value)
    assert "tmodel.register_function" in str(info.value)

    @dataclasses.dataclass
    class Unregistered:
        a: int = 1

    with pytest.raises(TModelError) as info:
        tmodel.save(Net(Dims(2), opts=Unregistered()), tmp_path / "b.tmodel")  # type: ignore[arg-type]
    assert info.value.code == "BAD_CONFIG" and "register_value_type" in str(info.value)
    assert not (tmp_path / "a.tmodel").exists() and not (tmp_path / "b.tmodel").exists()


def test_a_name_the_reading_program_did_not_register_is_unregistered_type(tmp_path: Path) -> None:
    def sig(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)

    tmodel.register_function(sig, "tests.s5.sig")
    try:
        tmodel.save(Net(Dims(2, sig)), tmp_path / "n.tmodel")
        assert type(tmodel.load(tmp_path / "n.tmodel").blocks[0].act) is type(sig)
    finally:
        references.unregister_reference("tests.s5.sig")
    with pytest.raises(TModelError) as info:
        tmodel.load(tmp_path / "n.tmodel")
    assert info.value.code == "UNREGISTERED_TYPE" and "'tests.s5.sig'" in str(info.value)


def test_a_child_of_another_class_than_the_record_names_is_a_state_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "n.tmodel"
    tmodel.save(Net(Dims(2)), path)
    wire = _edit(path)
    index = next(i for i, r in enumerate(wire["modules"]) if r["version"] is None)
    wire["modules"][index]["type"] = "somewhere.Else"
    _write(path, wire)
    with pytest.raises(TModelError) as info:
        tmodel.load(path)
    assert info.value.code == "STATE_MISMATCH"
    assert f"built a {__name__}.Block, the file has somewhere.Else" in str(info.value)


def _edit(path: Path) -> Any:
    parts = fm.split(path.read_bytes())
    return fm.layout(parts)[1]


def _write(path: Path, wire: Any) -> None:
    parts = fm.split(path.read_bytes())
    region, _ = fm.layout(parts)
    path.write_bytes(fm.sign(parts.header, region, fm.encode(wire), parts.digest_name))


def _hostile(tmp_path: Path, change: Callable[[Any], None]) -> TModelError:
    path = tmp_path / "h.tmodel"
    tmodel.save(Net(Dims(2)), path)
    wire = _edit(path)
    change(wire)
    _write(path, wire)
    with pytest.raises(TModelError) as info:
        tmodel.load(path)
    return info.value


def _parent_built(wire: Any) -> Any:
    return next(r for r in wire["modules"] if r["version"] is None)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda w: w.update(root={"ref": "torch.nn.ReLU"}), "MANIFEST_SCHEMA"),
        (lambda w: w.update(root={"list": [{"object": {"type": "a.B", "data": 1}}]}), "MANIFEST_SCHEMA"),
        (lambda w: w["modules"][0]["config"].update(head={"ref": "torch..ReLU"}), "BAD_NAME"),
        (lambda w: w["modules"][0]["config"].update(head={"ref": "os.system" + "x" * 300}), "BAD_NAME"),
        (
            lambda w: w["modules"][0]["config"].update(
                norm={
                    "partial": {
                        "ref": "torch.nn.LayerNorm",
                        "args": [],
                        "kwargs": [["eps", 1.0], ["eps", 2.0]],
                    }
                }
            ),
            "MANIFEST_SCHEMA",
        ),
        (
            lambda w: w["modules"][0]["config"].update(
                norm={"partial": {"ref": "torch.nn.LayerNorm", "args": [], "kwargs": [[1, 1.0]]}}
            ),
            "MANIFEST_SCHEMA",
        ),
        (
            lambda w: w["modules"][0]["config"].update(opts={"object": {"type": "x", "data": 1, "y": 2}}),
            "MANIFEST_SCHEMA",
        ),
        (lambda w: _parent_built(w).update(config={"a": 1}), "MANIFEST_SCHEMA"),
        (lambda w: _parent_built(w).update(type="os/system"), "BAD_NAME"),
        (lambda w: _parent_built(w).update(type="a." * 600 + "b"), "BAD_NAME"),
        (lambda w: w["modules"][0].update(version=None, config={}), "UNREGISTERED_TYPE"),
        (lambda w: w["modules"][0]["config"].update(head={"ref": "builtins.eval"}), "UNREGISTERED_TYPE"),
        (
            lambda w: w["modules"][0]["config"].update(opts={"object": {"type": "os.Environ", "data": 1}}),
            "UNREGISTERED_TYPE",
        ),
        (
            lambda w: w["modules"][0]["config"].update(
                opts={"object": {"type": "tests.s5.Options", "data": {"dict": [["eps", "x"]]}}}
            ),
            "BAD_CONFIG",
        ),
    ],
)
def test_hostile_schema5_content_is_refused_with_its_code(
    tmp_path: Path, change: Callable[[Any], None], code: str
) -> None:
    assert _hostile(tmp_path, change).code == code


def test_register_class_works_for_instances_that_exist_already(tmp_path: Path) -> None:
    class Late(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.fc = nn.Linear(width, 1)

    made = Late(3)  # before any registration
    registry.register_class(Late, "tests.s5.Late", 1, get_config=lambda m: {"width": m.fc.in_features})
    try:
        tmodel.save(made, tmp_path / "l.tmodel")
        back = tmodel.load(tmp_path / "l.tmodel")
        assert type(back) is Late and torch.equal(back.fc.weight, made.fc.weight)
    finally:
        registry.unregister("tests.s5.Late")

    class Captured(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.fc = nn.Linear(width, 1)

    early = Captured(2)
    tmodel.register_class(Captured, "tests.s5.Captured")
    try:
        with pytest.raises(TModelError) as info:
            tmodel.save(early, tmp_path / "c.tmodel")
        assert info.value.code == "INVALID_ARGUMENT" and "get_config=" in str(info.value)
        tmodel.save(Captured(2), tmp_path / "c.tmodel")  # made after: its arguments are captured
        assert type(tmodel.load(tmp_path / "c.tmodel")) is Captured
    finally:
        registry.unregister("tests.s5.Captured")


def test_a_library_model_with_a_config_object_saves_whole(tmp_path: Path) -> None:
    """transformers' GPT-2: one registration of the root and of its config class; every inner class is
    built by the model's constructor; weights stay tied."""
    transformers = pytest.importorskip("transformers")
    config_cls, model_cls = transformers.GPT2Config, transformers.GPT2LMHeadModel
    tmodel.register_value_type(
        config_cls, "tests.s5.GPT2Config", to_data=lambda c: c.to_diff_dict(), from_data=config_cls.from_dict
    )
    tmodel.register_class(model_cls, "tests.s5.GPT2LMHeadModel", get_config=lambda m: {"config": m.config})
    try:
        torch.manual_seed(0)
        model = model_cls(config_cls(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16)).eval()
        tmodel.save(model, tmp_path / "g.tmodel")
        back = tmodel.load(tmp_path / "g.tmodel").eval()
        ids = torch.randint(0, 50, (2, 7))
        with torch.no_grad():
            assert torch.equal(model(ids).logits, back(ids).logits)
        assert type(back) is model_cls and back.lm_head.weight is back.transformer.wte.weight
        assert [type(m) for m in back.modules()] == [type(m) for m in model.modules()]
    finally:
        registry.unregister("tests.s5.GPT2LMHeadModel")
        references.unregister_reference("tests.s5.GPT2Config")


def test_a_name_is_registered_once_across_layers_functions_and_value_types() -> None:
    class Other(nn.Module):
        pass

    with pytest.raises(TModelError) as info:
        tmodel.register_class(Other, "tests.s5.Color")  # a value type's name
    assert info.value.code == "INVALID_ARGUMENT" and "already registered" in str(info.value)
    with pytest.raises(TModelError) as info:
        tmodel.register_function(len, "tests.s5.Net")  # a layer's name
    assert info.value.code == "INVALID_ARGUMENT"
    assert not registry.is_registered(Other)
