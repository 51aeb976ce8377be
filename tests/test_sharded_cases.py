"""The sharded cases (conformance/cases/sharded/, SPEC.md §5.10): the folder holds the valid set's index,
its JSON and its shards, and hostile indexes that read those shards; the reference and the independent
reader give every hostile index its expected code, and the valid set is what its description says."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import tmodel
from tmodel.archive.reader import Reader
from tmodel.conformance import make_cases
from tmodel.conformance.describe import describe
from tmodel.conformance.sharded_cases import SET, shard_files
from tmodel.conformance.surgery import build, split
from tmodel.container.framing import HEADER_SIZE
from tmodel.errors import TModelError

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
FOLDER = CONFORMANCE / "cases" / "sharded"
INDEX = FOLDER / f"{SET}.tmodel"
HOSTILE = sorted(FOLDER / f"{name}.tmodel" for name in make_cases.SHARDED_HOSTILE)


def _independent_reader() -> ModuleType:
    spec = importlib.util.spec_from_file_location("independent_reader", CONFORMANCE / "independent_reader.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ir = _independent_reader()


def _code(fn: Any) -> str:
    try:
        fn()
    except TModelError as exc:
        return exc.code
    return "OK"


def _independent_code(path: Path) -> str:
    try:
        ir.read_description(str(path))
    except ir.ReaderError as exc:
        return str(exc.code)
    return "OK"


def _verify(path: Path) -> None:
    with Reader(path) as r:
        r.verify()


def _index(path: Path = INDEX) -> dict[str, Any]:
    return split(path.read_bytes())[2]


def test_the_folder_holds_cases_and_the_listed_shards_only() -> None:
    shards = [s["file"] for s in _index()["shards"]]
    assert len(shards) >= 3 and shards == shard_files(len(shards))
    cases = {p.stem for p in FOLDER.glob("*.json")}
    assert cases == {SET} | set(make_cases.SHARDED_HOSTILE)
    assert {p.name for p in FOLDER.iterdir()} == {
        f"{n}{e}" for n in cases for e in (".json", ".tmodel")
    } | set(shards)


def test_the_valid_set() -> None:
    case = json.loads(INDEX.with_suffix(".json").read_text(encoding="utf-8"))
    assert case["id"] == f"sharded/{SET}" and case["category"] == "valid"
    assert describe(str(INDEX)) == case["expect"]["description"] == ir.read_description(str(INDEX))
    assert _code(lambda: _verify(INDEX)) == "OK"
    obj = tmodel.load(INDEX)
    assert obj["tied_rows"].untyped_storage().data_ptr() == obj["tied"].untyped_storage().data_ptr()
    m = _index()
    assert m["blobs"] == []
    blob = {t["name"]: t["blob"] for t in m["tensors"]}
    assert blob["empty"] is None and blob["tied"] == blob["tied_rows"] is not None
    dtypes = {t["dtype"] for t in m["tensors"]}
    assert {"float32", "bfloat16", "bool"} <= dtypes
    for s in m["shards"]:  # each shard is a container of its own, a state dict read alone
        shard = FOLDER / s["file"]
        assert shard.stat().st_size == s["size"]
        assert sorted(tmodel.load(shard)) == sorted(t["name"] for t in _index(shard)["tensors"])


@pytest.mark.parametrize("path", HOSTILE, ids=lambda p: p.stem)
def test_hostile_index_gives_its_code_in_both_readers(path: Path) -> None:
    case = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert case["sibling"] == f"sharded/{SET}.tmodel"
    (code,) = case["expect"]["error"]["codes"]  # exactly one code: every rule here has one
    assert _code(lambda: tmodel.load(path)) == code
    assert _code(lambda: _verify(path)) == code
    assert _independent_code(path) == code


@pytest.mark.parametrize("path", HOSTILE, ids=lambda p: p.stem)
def test_hostile_index_is_the_set_index_with_its_manifest_changed(path: Path) -> None:
    data, sibling = path.read_bytes(), INDEX.read_bytes()
    assert data != sibling and data[:HEADER_SIZE] == sibling[:HEADER_SIZE]
    assert split(data)[2] != split(sibling)[2]
    # only the manifest changed, the trailer digest recomputed: taken apart and put together, it is the same
    assert build(*split(data)) == data
