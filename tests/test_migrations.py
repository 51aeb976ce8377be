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
from tmodel.migrations import v1_to_v2

GOLDEN_V1 = sorted((Path(__file__).resolve().parents[1] / "conformance" / "golden" / "v1").glob("*.tmodel"))


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


def test_the_chain_is_complete_and_reaches_the_current_schema() -> None:
    chain.check_chain()
    assert chain.OLDEST == 1 and chain.CURRENT == tmodel.manifest.schema.SCHEMA_VERSION == 2
    upgraded, source = chain.upgrade(_v1())
    assert source == 1 and upgraded["schema_version"] == 2
    assert chain.downgrade(upgraded, 1) == _v1()


def test_a_gap_in_the_chain_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    gap = SimpleNamespace(__name__="v2_to_v3", FROM_VERSION=3, TO_VERSION=4)
    monkeypatch.setattr(chain, "STEPS", (v1_to_v2, gap))
    with pytest.raises(AssertionError, match="version 2"):
        chain.check_chain()


@pytest.mark.parametrize("version", [0, 3, -1, 2**40])
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
        assert reader.manifest.schema_version == 2
        assert reader.manifest.modules == []
    tmodel.load(path)


def test_new_files_are_written_as_the_current_version(tmp_path: Path) -> None:
    tmodel.save({"w": torch.ones(2)}, tmp_path / "x.tmodel")
    with Reader(tmp_path / "x.tmodel") as reader:
        assert reader.source_schema_version == 2
