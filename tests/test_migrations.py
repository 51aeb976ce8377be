"""The format's own schema chain: each step alone on plain dicts, the chain as a whole, and real files."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import tmodel
import tmodel.migrations as chain
from tmodel.archive.reader import Reader
from tmodel.errors import TModelError
from tmodel.migrations import v1_to_v2, v2_to_v3, v3_to_v4, v4_to_v5, v5_to_v6, v6_to_v7

GOLDEN = Path(__file__).resolve().parents[1] / "conformance" / "golden"
GOLDEN_V1 = sorted((GOLDEN / "v1").glob("*.tmodel"))
GOLDEN_V2 = sorted((GOLDEN / "v2").glob("*.tmodel"))
GOLDEN_V3 = sorted((GOLDEN / "v3").glob("*.tmodel"))
GOLDEN_V4 = sorted((GOLDEN / "v4").glob("*.tmodel"))
GOLDEN_V5 = sorted((GOLDEN / "v5").glob("*.tmodel"))
GOLDEN_V6 = sorted((GOLDEN / "v6").glob("*.tmodel"))


def _v1() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "required_features": [],
        "checksum": "xxh3-64",
        "blobs": [],
        "tensors": [],
        "root": {"dict": [["a", 1]]},
        "metadata": {"k": b"v"},
        "extensions": {},
    }


def test_v1_to_v2_adds_an_empty_module_table_and_keeps_the_rest() -> None:
    before = _v1()
    after = v1_to_v2.upgrade(copy.deepcopy(before))
    assert after["schema_version"] == 2
    assert after["modules"] == []
    assert {k: v for k, v in after.items() if k not in ("schema_version", "modules")} == {
        k: v for k, v in before.items() if k != "schema_version"
    }
    assert v1_to_v2.downgrade(after) == before


def test_v2_to_v1_refuses_a_file_with_modules() -> None:
    with pytest.raises(ValueError, match="modules"):
        v1_to_v2.downgrade({**v1_to_v2.upgrade(_v1()), "modules": [{"type": "x"}]})


def _v2() -> dict[str, Any]:
    return {
        **v1_to_v2.upgrade(_v1()),
        "tensors": [
            {"name": "w", "dtype": "bfloat16", "shape": [], "strides": [], "blob": None, "offset": 0}
        ],
        "root": {"dict": [["w", {"tensor": 0}], ["dt", {"dtype": "float16"}], ["m", {"module": 0}]]},
        "modules": [
            {
                "type": "torch.nn.Identity",
                "version": 1,
                "config": {"dtype": {"dtype": "int8"}, "k": {"list": [{"tuple": []}]}},
                "parameters": {},
                "buffers": {},
                "children": {},
                "training": True,
            }
        ],
    }


def test_v2_to_v3_renumbers_and_keeps_everything_else() -> None:
    before = _v2()
    after = v2_to_v3.upgrade(copy.deepcopy(before))
    assert list(after) == list(before)  # the key order, which is part of the bytes
    assert after == {**before, "schema_version": 3}
    assert v2_to_v3.downgrade(after) == before
    assert list(v2_to_v3.downgrade(after)) == list(before)


#: schema version 3's additions, each as it appears in a manifest
V3_NODES = {
    "ordered_dict": {"ordered_dict": {"items": [["a", 1]], "metadata": []}},
    "counter": {"counter": [["a", 2]]},
    "set": {"set": [1, "a"]},
    "bytearray": {"bytearray": b"ab"},
    "complex": {"complex": [1.0, 2.0]},
    "size": {"size": [2, 3]},
    "device": {"device": "cuda:0"},
    "parameter": {"parameter": {"tensor": 0, "requires_grad": True}},
    "requires_grad": {"requires_grad": 0},
    "ndarray": {"ndarray": {"dtype": "uint8", "shape": [1], "data": b"\x01"}},
    "numpy_scalar": {"numpy_scalar": {"dtype": "float32", "data": bytes(4)}},
}
V3_DTYPES = (
    "float8_e8m0fnu",
    "float4_e2m1fn_x2",
    "complex32",
    "bits8",
    "bits16",
    "bits1x8",
    "bits2x4",
    "bits4x2",
)


def _with_root_node(node: Any) -> dict[str, Any]:
    return {**_v2(), "root": {"dict": [["deep", {"list": [node]}]]}}


def _with_config_node(node: Any) -> dict[str, Any]:
    m = _v2()
    m["modules"][0]["config"]["x"] = {"tuple": [node]}
    return m


def _with_tensor_dtype(name: str) -> dict[str, Any]:
    m = _v2()
    m["tensors"][0]["dtype"] = name
    return m


def test_the_step_lists_every_node_kind_and_dtype_version_3_added() -> None:
    from tmodel.manifest import nodes
    from tmodel.manifest.dtypes import DTYPES, VALUE_DTYPES

    v2_tags = {
        "bool",
        "int",
        "float",
        "str",
        "bytes",
        "nil",
        "list",
        "tuple",
        "dict",
        "tensor",
        "module",
        "dtype",
    }
    later = set(v3_to_v4.V4_ONLY_NODES) | set(v4_to_v5.V5_ONLY_NODES) | set(v5_to_v6.V6_ONLY_NODES)
    assert set(v2_to_v3.V3_ONLY_NODES) == set(nodes._NODE_TAGS.values()) - v2_tags - later == set(V3_NODES)
    assert set(DTYPES) - v2_to_v3.V2_DTYPES == set(V3_DTYPES)
    assert set(DTYPES) >= v2_to_v3.V2_DTYPES
    assert not set(VALUE_DTYPES) & set(DTYPES)


@pytest.mark.parametrize("kind", sorted(V3_NODES))
@pytest.mark.parametrize("where", ["root", "config"])
def test_v3_nodes_are_refused_in_a_v2_manifest_and_in_a_downgrade(kind: str, where: str) -> None:
    make = _with_root_node if where == "root" else _with_config_node
    with pytest.raises(ValueError, match=f"no '{kind}' nodes") as info:
        v2_to_v3.upgrade(make(V3_NODES[kind]))
    assert type(info.value) is ValueError
    with pytest.raises(ValueError, match=f"no '{kind}' nodes"):
        v2_to_v3.downgrade({**make(V3_NODES[kind]), "schema_version": 3})
    with pytest.raises(TModelError) as err:
        chain.upgrade(make(V3_NODES[kind]))
    assert err.value.code == "MANIFEST_SCHEMA"


@pytest.mark.parametrize("name", [*V3_DTYPES, "uint4", "qint8"])
@pytest.mark.parametrize("where", ["tensor", "dtype node"])
def test_v3_dtypes_are_unknown_to_a_v2_manifest(name: str, where: str) -> None:
    manifest = _with_tensor_dtype(name) if where == "tensor" else _with_root_node({"dtype": name})
    with pytest.raises(v2_to_v3.UnknownDtype, match=name):
        v2_to_v3.upgrade(copy.deepcopy(manifest))
    with pytest.raises(v2_to_v3.UnknownDtype, match=name):
        v2_to_v3.downgrade({**manifest, "schema_version": 3})
    with pytest.raises(TModelError) as err:
        chain.upgrade(manifest)
    assert err.value.code == "UNKNOWN_DTYPE"


def test_node_lookalikes_in_metadata_and_dict_keys_are_not_nodes() -> None:
    """Only the object tree and configs hold nodes: metadata is plain data, and a dict key or a string
    value that spells a version-3 tag is just a string."""
    m = {**_v2(), "metadata": {"set": {"set": [1]}}, "root": {"dict": [["set", "ordered_dict"]]}}
    assert v2_to_v3.downgrade(v2_to_v3.upgrade(copy.deepcopy(m))) == m


def test_the_chain_is_complete_and_reaches_the_current_schema() -> None:
    chain.check_chain()
    assert chain.OLDEST == 1 and chain.CURRENT == tmodel.manifest.schema.SCHEMA_VERSION == 7
    assert (v1_to_v2, v2_to_v3, v3_to_v4, v4_to_v5, v5_to_v6, v6_to_v7) == chain.STEPS
    upgraded, source = chain.upgrade(_v1())
    assert source == 1 and upgraded["schema_version"] == 7 and upgraded["checkpoint"] is None
    assert upgraded["shards"] == []
    assert chain.downgrade(copy.deepcopy(upgraded), 2) == v1_to_v2.upgrade(_v1())
    assert chain.downgrade(upgraded, 1) == _v1()
    upgraded, source = chain.upgrade(_v2())
    assert source == 2 and upgraded == {**_v2(), "schema_version": 7, "checkpoint": None, "shards": []}


def test_a_gap_in_the_chain_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    gap = SimpleNamespace(__name__="v7_to_v8", FROM_VERSION=8, TO_VERSION=9)
    monkeypatch.setattr(chain, "STEPS", (v1_to_v2, v2_to_v3, v3_to_v4, v4_to_v5, v5_to_v6, v6_to_v7, gap))
    with pytest.raises(AssertionError, match="version 7"):
        chain.check_chain()


@pytest.mark.parametrize("version", [0, 8, -1, 2**40])
def test_versions_outside_the_chain_are_unsupported(version: int) -> None:
    with pytest.raises(TModelError) as err:
        chain.upgrade({**_v1(), "schema_version": version})
    assert err.value.code == "UNSUPPORTED_VERSION"


@pytest.mark.parametrize("value", [None, "1", 1.0, True])
def test_a_schema_version_that_is_not_an_int_is_a_schema_error(value: object) -> None:
    with pytest.raises(TModelError) as err:
        chain.upgrade({**_v1(), "schema_version": value})
    assert err.value.code == "MANIFEST_SCHEMA"


@pytest.mark.parametrize("path", GOLDEN_V1, ids=lambda p: p.stem)
def test_frozen_v1_files_read_through_the_chain(path: Path) -> None:
    with Reader(path) as reader:
        assert reader.source_schema_version == 1
        assert reader.manifest.schema_version == 7
        assert reader.manifest.modules == []
        assert reader.manifest.checkpoint is None
    tmodel.load(path)


@pytest.mark.parametrize("path", GOLDEN_V2, ids=lambda p: p.stem)
def test_frozen_v2_files_read_through_the_chain(path: Path) -> None:
    with Reader(path) as reader:
        assert reader.source_schema_version == 2
        assert reader.manifest.schema_version == 7
    tmodel.load(path)


@pytest.mark.parametrize("path", GOLDEN_V3, ids=lambda p: p.stem)
def test_frozen_v3_files_read_through_the_chain(path: Path) -> None:
    with Reader(path) as reader:
        assert reader.source_schema_version == 3
        assert reader.manifest.schema_version == 7
    tmodel.load(path)


@pytest.mark.parametrize("path", GOLDEN_V4, ids=lambda p: p.stem)
def test_frozen_v4_files_read_through_the_chain(path: Path) -> None:
    with Reader(path) as reader:
        assert reader.source_schema_version == 4
        assert reader.manifest.schema_version == 7
    tmodel.load(path)


@pytest.mark.parametrize("path", [p for p in GOLDEN_V5 if p.stem != "configs"], ids=lambda p: p.stem)
def test_frozen_v5_files_read_through_the_chain(path: Path) -> None:
    """(The `configs` file's records need conformance/freeze.py's registrations; test_golden reads it.)"""
    with Reader(path) as reader:
        assert reader.source_schema_version == 5
        assert reader.manifest.schema_version == 7
        assert reader.manifest.checkpoint is None
    tmodel.load(path)


def test_there_are_frozen_v5_files() -> None:
    assert len(GOLDEN_V5) == 11


V5_NODES: dict[str, Any] = {
    "ref": {"ref": "torch.nn.ReLU"},
    "partial": {"partial": {"ref": "torch.nn.LayerNorm", "args": [], "kwargs": [["eps", 0.001]]}},
    "object": {"object": {"type": "acme.Color", "data": 1}},
}


def _v4_with_config(config: dict[str, Any], version: Any = 1) -> dict[str, Any]:
    record = {
        "type": "acme.Net",
        "version": version,
        "config": config,
        "parameters": {},
        "buffers": {},
        "children": {},
        "training": True,
    }
    return {**_v2(), "schema_version": 4, "root": {"module": 0}, "modules": [record]}


def test_the_v4_to_v5_step_upgrades_by_renumbering() -> None:
    m = _v4_with_config({"n": 2, "act": {"dtype": "float32"}})
    up = v4_to_v5.upgrade(copy.deepcopy(m))
    assert up == {**m, "schema_version": 5}
    assert v4_to_v5.downgrade(up) == m


@pytest.mark.parametrize("kind", sorted(V5_NODES))
def test_v5_nodes_are_refused_in_a_v4_manifest_and_in_a_downgrade(kind: str) -> None:
    m = _v4_with_config({"x": {"list": [V5_NODES[kind]]}})
    with pytest.raises(ValueError, match=f"no '{kind}' nodes"):
        v4_to_v5.upgrade(copy.deepcopy(m))
    with pytest.raises(ValueError, match=f"no '{kind}' nodes"):
        v4_to_v5.downgrade({**m, "schema_version": 5})
    with pytest.raises(TModelError) as err:
        chain.upgrade(m)
    assert err.value.code == "MANIFEST_SCHEMA"


def test_a_record_built_by_its_parent_is_refused_in_a_v4_manifest_and_in_a_downgrade() -> None:
    m = _v4_with_config({}, version=None)
    with pytest.raises(ValueError, match="every version-4 module record has a layer version"):
        v4_to_v5.upgrade(copy.deepcopy(m))
    with pytest.raises(ValueError, match="every version-4 module record has a layer version"):
        v4_to_v5.downgrade({**m, "schema_version": 5})


def test_there_are_frozen_v4_files() -> None:
    assert len(GOLDEN_V4) == 10


def test_there_are_frozen_v3_files() -> None:
    assert len(GOLDEN_V3) == 9


V4_NODES: dict[str, Any] = {
    "layout": {"layout": "strided"},
    "qscheme": {"qscheme": "per_tensor_affine"},
    "meta_tensor": {
        "meta_tensor": {
            "dtype": "float32",
            "shape": [2],
            "strides": [1],
            "offset": 0,
            "parameter": False,
            "requires_grad": False,
        }
    },
    "tensor_attrs": {"tensor_attrs": {"of": {"tensor": 0}, "attrs": [["foo", 1]]}},
}
V4_KEYS: dict[str, Any] = {
    "tuple key": {"dict": [[{"tuple": [1, "a"]}, 0]]},
    "dtype key in a counter": {"counter": [[{"dtype": "float32"}, 1]]},
    "device key in an ordered_dict": {"ordered_dict": {"items": [[{"device": "cpu"}, 1]], "metadata": []}},
    "tuple set element": {"set": [{"tuple": [1]}]},
}


def _v3(root: Any) -> dict[str, Any]:
    return {**_v2(), "schema_version": 3, "root": root}


def test_the_v3_to_v4_step_upgrades_by_renumbering() -> None:
    m = _v3({"dict": [[1, {"set": [None, 2.5]}]]})
    up = v3_to_v4.upgrade(copy.deepcopy(m))
    assert up == {**m, "schema_version": 4}
    assert v3_to_v4.downgrade(up) == m


@pytest.mark.parametrize("kind", sorted(V4_NODES))
def test_v4_nodes_are_refused_in_a_v3_manifest_and_in_a_downgrade(kind: str) -> None:
    with pytest.raises(ValueError, match=f"no '{kind}' nodes"):
        v3_to_v4.upgrade(_v3({"list": [V4_NODES[kind]]}))
    with pytest.raises(ValueError, match=f"no '{kind}' nodes"):
        v3_to_v4.downgrade({**_v3({"list": [V4_NODES[kind]]}), "schema_version": 4})
    with pytest.raises(TModelError) as err:
        chain.upgrade(_v3({"list": [V4_NODES[kind]]}))
    assert err.value.code == "MANIFEST_SCHEMA"


@pytest.mark.parametrize("root", V4_KEYS.values(), ids=list(V4_KEYS))
def test_v4_keys_are_refused_in_a_v3_manifest_and_in_a_downgrade(root: Any) -> None:
    with pytest.raises(ValueError, match="version 3 keys and set elements are scalars only"):
        v3_to_v4.upgrade(_v3(root))
    with pytest.raises(ValueError, match="version 3 keys and set elements are scalars only"):
        v3_to_v4.downgrade({**_v3(root), "schema_version": 4})
    with pytest.raises(TModelError) as err:
        chain.upgrade(_v3(root))
    assert err.value.code == "MANIFEST_SCHEMA"


def test_there_are_frozen_v2_files() -> None:
    assert len(GOLDEN_V2) == 8


def test_new_files_are_written_as_the_current_version(tmp_path: Path) -> None:
    tmodel.save({"w": torch.ones(2)}, tmp_path / "x.tmodel")
    with Reader(tmp_path / "x.tmodel") as reader:
        assert reader.source_schema_version == 7


# -- schema step 5 -> 6: training-state nodes and the manifest key `checkpoint` ----------------------------
V6_NODES: dict[str, Any] = {
    "optimizer": {
        "optimizer": {
            "class": "torch.optim.sgd.SGD",
            "groups": [{"dict": [["lr", 0.1], ["momentum", 0.9]]}],
            "params": [{"group": 0, "module": 0, "name": "w", "state": {"dict": []}}],
        }
    },
    "stateful": {
        "stateful": {
            "kind": "lr_scheduler",
            "class": "torch.optim.lr_scheduler.StepLR",
            "state": {"dict": [["last_epoch", 3]]},
        }
    },
}
#: places in the object tree a version-6 node can sit (some of them refused by version 6 itself too)
V6_PLACES: dict[str, Any] = {
    "root": lambda n: n,
    "deep in lists": lambda n: {"list": [{"tuple": [1, {"list": [n]}]}]},
    "dict value": lambda n: {"dict": [["optim", n]]},
    "dict key": lambda n: {"dict": [[{"tuple": [n]}, 1]]},
    "ordered_dict metadata": lambda n: {"ordered_dict": {"items": [], "metadata": [n]}},
    "counter value": lambda n: {"counter": [["a", n]]},
    "set element": lambda n: {"set": [n]},
    "tensor attribute": lambda n: {"tensor_attrs": {"of": {"tensor": 0}, "attrs": [["a", n]]}},
}


def _v5(root: Any = None) -> dict[str, Any]:
    """A version-5 manifest (keys in the canonical order) with a module record and `root`."""
    record = {
        "type": "acme.Net",
        "version": None,
        "config": {},
        "parameters": {"w": {"tensor": 0, "requires_grad": True}},
        "buffers": {},
        "children": {},
        "training": True,
    }
    root = {"dict": [["model", {"module": 0}]]} if root is None else root
    return {**_v2(), "schema_version": 5, "root": root, "modules": [record]}


def _v6(root: Any = None, checkpoint: Any = None) -> dict[str, Any]:
    return {**_v5(root), "schema_version": 6, "checkpoint": checkpoint}


def test_the_step_lists_the_node_kinds_version_6_added() -> None:
    from tmodel.manifest import nodes

    assert v5_to_v6.FROM_VERSION == 5 and v5_to_v6.TO_VERSION == 6
    assert set(v5_to_v6.V6_ONLY_NODES) == set(V6_NODES) == {nodes._NODE_TAGS[k] for k in nodes.TRAINING_STATE}


def test_v5_to_v6_adds_a_nil_checkpoint_and_keeps_everything_else() -> None:
    before = _v5()
    after = v5_to_v6.upgrade(copy.deepcopy(before))
    assert after == {**before, "schema_version": 6, "checkpoint": None}
    assert list(after) == [*before, "checkpoint"]  # the key order of SPEC.md §5, part of the bytes
    assert v5_to_v6.downgrade(copy.deepcopy(after)) == before
    assert list(v5_to_v6.downgrade(after)) == list(before)


@pytest.mark.parametrize("value", [None, {"type": "acme.Run", "version": 1}, 3])
def test_v5_to_v6_refuses_a_v5_manifest_holding_checkpoint(value: Any) -> None:
    m = {**_v5(), "checkpoint": value}
    with pytest.raises(ValueError, match="no 'checkpoint' key") as info:
        v5_to_v6.upgrade(copy.deepcopy(m))
    assert type(info.value) is ValueError
    with pytest.raises(TModelError) as err:
        chain.upgrade(m)
    assert err.value.code == "MANIFEST_SCHEMA"


@pytest.mark.parametrize("place", sorted(V6_PLACES))
@pytest.mark.parametrize("kind", sorted(V6_NODES))
def test_v6_nodes_are_refused_in_a_v5_manifest_and_in_a_downgrade(kind: str, place: str) -> None:
    root = V6_PLACES[place](copy.deepcopy(V6_NODES[kind]))
    with pytest.raises(ValueError, match=f"no '{kind}' nodes"):
        v5_to_v6.upgrade(_v5(root))
    with pytest.raises(ValueError, match=f"no '{kind}' nodes"):
        v5_to_v6.downgrade(_v6(root))
    with pytest.raises(TModelError) as err:
        chain.upgrade(_v5(root))
    assert err.value.code == "MANIFEST_SCHEMA"
    with pytest.raises(TModelError) as err:  # a version-4 manifest goes through the same step
        chain.upgrade({**_v5(root), "schema_version": 4, "modules": []})
    assert err.value.code == "MANIFEST_SCHEMA"


@pytest.mark.parametrize("version", [1, 7])
def test_v6_to_v5_refuses_a_checkpoint_version(version: int) -> None:
    m = _v6(checkpoint={"type": "acme.Run", "version": version})
    with pytest.raises(ValueError, match="no checkpoint version"):
        v5_to_v6.downgrade(copy.deepcopy(m))
    with pytest.raises(ValueError, match="no checkpoint version"):
        chain.downgrade(m, 2)


def test_node_lookalikes_are_not_v6_nodes() -> None:
    """Metadata, extensions and dict keys that spell a version-6 tag are data, not nodes."""
    m = {
        **_v5({"dict": [["optimizer", "stateful"], ["checkpoint", {"list": ["optimizer"]}]]}),
        "metadata": {"optimizer": {"optimizer": {"class": "x"}}, "checkpoint": None},
        "extensions": {"org.example.stateful": {"stateful": 1}},
    }
    assert v5_to_v6.downgrade(v5_to_v6.upgrade(copy.deepcopy(m))) == m


def _wire(path: Path) -> tuple[dict[str, Any], bytes]:
    """A file's decoded manifest and its bytes."""
    import struct

    import msgpack

    data = path.read_bytes()
    offset, length = struct.unpack_from("<QQ", data, len(data) - 64)
    raw = data[offset : offset + length]
    return msgpack.unpackb(raw, raw=False, strict_map_key=False), raw


def test_a_plain_file_downgrades_and_upgrades_back_exactly(tmp_path: Path) -> None:
    from tmodel.manifest.encoding import pack_manifest

    torch.manual_seed(0)
    obj = {"model": torch.nn.Sequential(torch.nn.Linear(3, 2)), "step": 4, "w": torch.ones(2)}
    tmodel.save(obj, tmp_path / "plain.tmodel", metadata={"run": "a"})
    wire, raw = _wire(tmp_path / "plain.tmodel")
    assert wire["schema_version"] == 7 and wire["checkpoint"] is None and wire["shards"] == []
    for target in (6, 5, 2):
        down = chain.downgrade(copy.deepcopy(wire), target)
        assert down["schema_version"] == target and "shards" not in down
        assert ("checkpoint" in down) == (target == 6)
        up, source = chain.upgrade(copy.deepcopy(down))
        assert source == target and up == wire and list(up) == list(wire)
        assert pack_manifest(up) == raw  # byte for byte


@pytest.mark.parametrize("path", GOLDEN_V5, ids=lambda p: p.stem)
def test_frozen_v5_manifests_upgrade_and_downgrade_back_byte_for_byte(path: Path) -> None:
    from tmodel.manifest.encoding import pack_manifest

    wire, raw = _wire(path)
    up, source = chain.upgrade(copy.deepcopy(wire))
    assert source == 5 and up == {**wire, "schema_version": 7, "checkpoint": None, "shards": []}
    assert pack_manifest(chain.downgrade(up, 5)) == raw


def test_a_training_checkpoint_does_not_downgrade(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    for kind, obj in (("optimizer", {"model": model, "opt": opt}), ("stateful", {"sched": sched})):
        tmodel.save(obj, tmp_path / f"{kind}.tmodel")
        wire, _ = _wire(tmp_path / f"{kind}.tmodel")
        with pytest.raises(ValueError, match=f"no '{kind}' nodes"):
            chain.downgrade(wire, 5)


@pytest.mark.parametrize("path", [p for p in GOLDEN_V6 if p.stem != "configs"], ids=lambda p: p.stem)
def test_frozen_v6_files_read_through_the_chain(path: Path) -> None:
    """(The `configs` file's records need conformance/freeze.py's registrations; test_golden reads it.)"""
    with Reader(path) as reader:
        assert reader.source_schema_version == 6
        assert reader.manifest.schema_version == 7
        assert reader.manifest.shards == [] and reader.shards is None
    tmodel.load(path)


def test_the_frozen_v6_files_are_all_there() -> None:
    assert len(GOLDEN_V6) == 11


@pytest.mark.parametrize("path", GOLDEN_V6, ids=lambda p: p.stem)
def test_frozen_v6_manifests_upgrade_and_downgrade_back_byte_for_byte(path: Path) -> None:
    from tmodel.manifest.encoding import pack_manifest

    wire, raw = _wire(path)
    up, source = chain.upgrade(copy.deepcopy(wire))
    assert source == 6 and up == {**wire, "schema_version": 7, "shards": []}
    assert list(up) == [*wire, "shards"]  # the new key last, as SPEC.md §5 orders them
    assert pack_manifest(chain.downgrade(up, 6)) == raw


# -- schema step 6 -> 7: the manifest key `shards` ---------------------------------------------------------
def _v6_wire() -> dict[str, Any]:
    return {**_v5({"tensor": 0}), "schema_version": 6, "checkpoint": None}


def test_v6_to_v7_adds_empty_shards_and_keeps_everything_else() -> None:
    assert v6_to_v7.FROM_VERSION == 6 and v6_to_v7.TO_VERSION == 7
    before = _v6_wire()
    after = v6_to_v7.upgrade(copy.deepcopy(before))
    assert after == {**before, "schema_version": 7, "shards": []}
    assert v6_to_v7.downgrade(copy.deepcopy(after)) == before
    assert list(v6_to_v7.downgrade(after)) == list(before)


@pytest.mark.parametrize("value", [[], None, [{"file": "a.tmodel"}], 0])
def test_v6_to_v7_refuses_a_v6_manifest_holding_shards(value: Any) -> None:
    m = {**_v6_wire(), "shards": value}
    with pytest.raises(ValueError, match="no 'shards' key"):
        v6_to_v7.upgrade(copy.deepcopy(m))
    with pytest.raises(TModelError) as err:
        chain.upgrade(m)
    assert err.value.code == "MANIFEST_SCHEMA"


def test_an_index_does_not_downgrade(tmp_path: Path) -> None:
    tmodel.save({"a": torch.ones(300), "b": torch.zeros(300)}, tmp_path / "m.tmodel", max_shard_size=1200)
    wire, _ = _wire(tmp_path / "m.tmodel")
    assert [s["file"] for s in wire["shards"]] == ["m-00001-of-00002.tmodel", "m-00002-of-00002.tmodel"]
    with pytest.raises(ValueError, match="cannot be the index of a sharded set"):
        v6_to_v7.downgrade(copy.deepcopy(wire))
    with pytest.raises(ValueError, match="cannot be the index of a sharded set"):
        chain.downgrade(wire, 2)
    shard, _ = _wire(tmp_path / "m-00001-of-00002.tmodel")  # a shard is an ordinary file: it does
    assert chain.downgrade(copy.deepcopy(shard), 6)["schema_version"] == 6


@pytest.mark.parametrize("version", [2, 3, 4])
@pytest.mark.parametrize("modules", [5, None, "ab", {"a": 1}])
def test_a_module_table_that_is_no_array_is_the_schemas_error(version: int, modules: Any) -> None:
    """A step that looks into the module records leaves a `modules` that is not an array to the schema
    (found by tests/test_fast_manifest.py's mutants: it raised TypeError)."""
    wire = {
        "schema_version": version,
        "required_features": [],
        "checksum": "xxh3-64",
        "blobs": [],
        "tensors": [],
        "root": None,
        "metadata": {},
        "extensions": {},
        "modules": modules,
    }
    upgraded, _ = chain.upgrade(copy.deepcopy(wire))
    assert upgraded["modules"] == modules
    from tmodel.limits import DEFAULT_LIMITS
    from tmodel.manifest.checks import parse

    with pytest.raises(TModelError) as info:
        parse(upgraded, DEFAULT_LIMITS, 64, 64 + 64)
    assert info.value.code == "MANIFEST_SCHEMA"
