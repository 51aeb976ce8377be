"""The conformance case corpus (conformance/cases/): well-formed, complete, deterministic, and the
reference reader gets every case right (valid files decode to their description; hostile files fail with
an allowed code).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import tmodel
from tmodel.archive.reader import Reader
from tmodel.conformance import make_cases
from tmodel.conformance.describe import describe
from tmodel.errors import TModelError

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
CASES = CONFORMANCE / "cases"
SCHEMA = json.loads((CONFORMANCE / "case.schema.json").read_text(encoding="utf-8"))


def _cases(kind: str) -> list[Path]:
    return sorted((CASES / kind).glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return case


def _code(fn: Any) -> str:
    """The TModelError code `fn` raises, "OK" when it raises nothing; any other exception propagates."""
    try:
        fn()
    except TModelError as exc:
        return exc.code
    return "OK"


def _verify(path: Path) -> None:
    with Reader(path) as r:
        r.verify()


VALID = _cases("valid")
HOSTILE = _cases("hostile")
ALL = VALID + HOSTILE


def _id(p: Path) -> str:
    return f"{p.parent.name}/{p.stem}"


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_case_matches_schema(path: Path) -> None:
    case = _load(path)
    jsonschema.Draft202012Validator(SCHEMA).validate(case)
    assert case["id"] == _id(path)
    assert case["file"] == path.stem + ".tmodel"
    if path.parent.name == "hostile":
        phases = {make_cases.PHASE[c] for c in case["expect"]["error"]["codes"]}
        assert case["category"] == case["expect"]["error"]["phase"] in phases


@pytest.mark.parametrize("kind", ["valid", "hostile"])
def test_every_file_has_its_pair(kind: str) -> None:
    folder = CASES / kind
    tmodels = {p.stem for p in folder.glob("*.tmodel")}
    jsons = {p.stem for p in folder.glob("*.json")}
    assert tmodels == jsons
    assert {p.name for p in folder.iterdir()} == {
        f"{n}{ext}" for n in tmodels for ext in (".tmodel", ".json")
    }


def test_corpus_size() -> None:
    assert len(HOSTILE) >= 40
    assert len(VALID) >= 10
    assert {p.stem for p in VALID} == set(make_cases.VALID)
    assert {p.stem for p in HOSTILE} == set(make_cases.HOSTILE)


@pytest.mark.parametrize("path", VALID, ids=_id)
def test_valid_case_decodes_to_its_description(path: Path) -> None:
    case = _load(path)
    tmodel_path = path.with_suffix(".tmodel")
    assert describe(str(tmodel_path)) == case["expect"]["description"]
    assert _code(lambda: tmodel.load(tmodel_path)) == "OK"
    assert _code(lambda: _verify(tmodel_path)) == "OK"


@pytest.mark.parametrize("path", HOSTILE, ids=_id)
def test_hostile_case_is_rejected_with_an_allowed_code(path: Path) -> None:
    case = _load(path)
    sibling = CASES / case["sibling"]
    assert sibling.exists()
    expected = _load(sibling.with_suffix(".json"))["expect"]["description"]
    assert describe(str(sibling)) == expected  # the sibling passes
    tmodel_path = path.with_suffix(".tmodel")
    assert tmodel_path.read_bytes() != sibling.read_bytes()
    codes = case["expect"]["error"]["codes"]
    assert _code(lambda: tmodel.load(tmodel_path)) in codes
    verify_code = _code(lambda: _verify(tmodel_path))
    if case["category"] == "model":  # layer rules apply only when modules are rebuilt (SPEC.md §9 step 10)
        assert verify_code in [*codes, "OK"]
    else:
        assert verify_code in codes


def _readme_table() -> dict[int, list[str]]:
    text = (CONFORMANCE / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Case corpus") :]
    rows: dict[int, list[str]] = {}
    for m in re.finditer(r"^\| (\d+) \| [^|]* \| ([^\n]*) \|$", section, re.MULTILINE):
        rows[int(m.group(1))] = re.findall(r"`([a-z0-9_]+)`", m.group(2))
    return rows


def test_readme_maps_every_attack_line() -> None:
    rows = _readme_table()
    assert sorted(rows) == list(range(1, 32))
    hostile = {p.stem: _load(p)["attack"]["line"] for p in HOSTILE}
    for line, names in rows.items():
        assert names or line in make_cases.NOT_A_FILE, f"ATTACKS line {line} has no case"
        for name in names:
            assert hostile[name] == line, (name, line)
    assert sorted(n for names in rows.values() for n in names) == sorted(hostile)
    assert make_cases.table() in (CONFORMANCE / "README.md").read_text(encoding="utf-8")


def test_every_attack_line_has_a_case_or_a_reason() -> None:
    lines = {_load(p)["attack"]["line"] for p in HOSTILE}
    assert lines | set(make_cases.NOT_A_FILE) == set(range(1, 32))


def test_regenerating_gives_identical_files(tmp_path: Path) -> None:
    make_cases.write(tmp_path)
    for kind in ("valid", "hostile"):
        fresh = {p.name: p.read_bytes() for p in (tmp_path / kind).iterdir()}
        stored = {p.name: p.read_bytes() for p in (CASES / kind).iterdir()}
        assert sorted(fresh) == sorted(stored)
        changed = [name for name in fresh if fresh[name] != stored[name]]
        assert not changed, changed
