"""Golden files of every released schema version are frozen: their hashes never change, and the current
reader still decodes each to its recorded canonical description."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tmodel.conformance.describe import describe

GOLDEN = Path(__file__).resolve().parents[1] / "conformance" / "golden"
SUMS = {
    line.split("  ", 1)[1]: line.split("  ", 1)[0]
    for line in (GOLDEN / "SHA256SUMS").read_text().splitlines()
    if line.strip()
}
CASES = sorted(p for p in GOLDEN.glob("v*/*.tmodel"))


def test_every_frozen_file_is_listed_with_its_hash() -> None:
    on_disk = {p.relative_to(GOLDEN).as_posix() for p in GOLDEN.glob("v*/*") if p.is_file()}
    assert on_disk == set(SUMS)
    for rel, digest in SUMS.items():
        assert hashlib.sha256((GOLDEN / rel).read_bytes()).hexdigest() == digest, f"{rel} was modified"


def test_there_are_golden_files_for_version_1() -> None:
    assert len([p for p in CASES if p.parent.name == "v1"]) == 7


def test_there_are_golden_files_for_version_2_with_modules() -> None:
    v2 = sorted(p.stem for p in CASES if p.parent.name == "v2")
    assert len(v2) == 8 and "modules" in v2
    description = json.loads((GOLDEN / "v2" / "modules.json").read_text())
    assert description["schema_version"] == 2
    assert [m["type"] for m in description["modules"]] == [
        "torch.nn.Sequential",
        "torch.nn.Linear",
        "torch.nn.BatchNorm1d",
        "torch.nn.ReLU",
    ]


def test_there_are_golden_files_for_version_3_with_torch_types() -> None:
    v3 = sorted(p.stem for p in CASES if p.parent.name == "v3")
    assert len(v3) == 9 and "torch_types" in v3
    description = json.loads((GOLDEN / "v3" / "torch_types.json").read_text())
    assert description["schema_version"] == 3


def test_there_are_golden_files_for_version_4_with_torch_values() -> None:
    v4 = sorted(p.stem for p in CASES if p.parent.name == "v4")
    assert "torch_values" in v4 and "torch_types" in v4 and "modules" in v4
    assert len(v4) == 10


def test_there_are_golden_files_for_version_5_with_configs() -> None:
    v5 = sorted(p.stem for p in CASES if p.parent.name == "v5")
    assert "configs" in v5 and "torch_values" in v5 and len(v5) == 11
    description = json.loads((GOLDEN / "v5" / "configs.json").read_text())
    assert description["schema_version"] == 5
    assert [m["type"] for m in description["modules"]] == [
        "conformance.Block",
        "torch.nn.Linear",
        "torch.nn.LayerNorm",
        "tmodel.conformance.freeze._Inner",
    ]


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_golden_file_loads_to_its_description(path: Path) -> None:
    expected = json.loads(path.with_suffix(".json").read_text())
    assert describe(str(path)) == expected
