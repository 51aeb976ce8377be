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
from tmodel.conformance.describe import describe, reader_options
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


def _verify(path: Path, read_with: dict[str, Any]) -> None:
    with Reader(path, key=reader_options(read_with).get("key")) as r:
        r.verify()


VALID = _cases("valid")
HOSTILE = _cases("hostile")
#: the sharded folder's cases: its valid set and the hostile indexes beside it
SHARDED = _cases("sharded")
ALL = VALID + HOSTILE + SHARDED
#: every hostile case, of every folder
ALL_HOSTILE = HOSTILE + [p for p in SHARDED if p.stem in make_cases.SHARDED_HOSTILE]


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
    if case["category"] != "valid":
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
    assert {p.stem for p in VALID} == set(make_cases.VALID) | set(make_cases.CRYPTO_VALID)
    assert {p.stem for p in HOSTILE} == set(make_cases.HOSTILE)
    assert {p.stem for p in SHARDED} == set(make_cases.SHARDED_VALID) | set(make_cases.SHARDED_HOSTILE)
    assert len(make_cases.SHARDED_HOSTILE) >= 25


@pytest.mark.parametrize("path", VALID, ids=_id)
def test_valid_case_decodes_to_its_description(path: Path) -> None:
    case = _load(path)
    tmodel_path = path.with_suffix(".tmodel")
    read_with = case.get("read_with", {})
    assert describe(str(tmodel_path), **reader_options(read_with)) == case["expect"]["description"]
    assert _code(lambda: tmodel.load(tmodel_path, **make_cases.load_options(read_with))) == "OK"
    assert _code(lambda: _verify(tmodel_path, read_with)) == "OK"


@pytest.mark.parametrize("path", HOSTILE, ids=_id)
def test_hostile_case_is_rejected_with_an_allowed_code(path: Path) -> None:
    case = _load(path)
    sibling = CASES / case["sibling"]
    assert sibling.exists()
    sibling_case = _load(sibling.with_suffix(".json"))
    sibling_read = sibling_case.get("read_with", {})
    expected = sibling_case["expect"]["description"]
    assert describe(str(sibling), **reader_options(sibling_read)) == expected  # the sibling passes
    tmodel_path = path.with_suffix(".tmodel")
    read_with = case.get("read_with", {})
    # the ONE change is to the file or, for what the caller gives, to the read request: never both
    assert (tmodel_path.read_bytes() != sibling.read_bytes()) != (read_with != sibling_read)
    codes = case["expect"]["error"]["codes"]
    assert _code(lambda: tmodel.load(tmodel_path, **make_cases.load_options(read_with))) in codes
    verify_code = _code(lambda: _verify(tmodel_path, read_with))
    if case["category"] == "model":  # layer rules apply only when modules are rebuilt (SPEC.md §9 step 10)
        assert verify_code in [*codes, "OK"]
    elif codes == ["SIGNATURE_REQUIRED"]:  # trust is the caller's question, which verify does not ask
        assert verify_code == "OK"
    else:
        assert verify_code in codes


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_capabilities_follow_the_file(path: Path) -> None:
    """A file with the ENCRYPTED flag needs `encryption`, and a reader without it refuses the file by its
    header (SPEC.md §3.1, §3.5); model-phase cases need `modules`; only signature verification and
    trust checks are skipped by a reader without `signatures`."""
    case = _load(path)
    data = path.with_suffix(".tmodel").read_bytes()
    encrypted = data[:8] == b"\x89TMODEL\n" and bool(data[12] & 2)
    requires = case.get("requires", [])
    assert ("encryption" in requires) == encrypted
    assert ("modules" in requires) == (case["category"] == "model")
    if encrypted:
        assert case["without"] == {
            "encryption": {"error": {"phase": "container", "codes": ["UNKNOWN_FEATURE"]}}
        }
    else:
        assert "without" not in case
    if "signatures" in requires:
        assert case["tier"] == "SHOULD"
        codes = case["expect"].get("error", {}).get("codes", [])
        assert codes in (["BAD_SIGNATURE"], ["SIGNATURE_REQUIRED"]) or "description" in case["expect"]
    if case.get("read_with", {}).get("key") is not None:  # an encrypted file's, or its sibling's
        assert (
            encrypted
            or "encryption" in _load(CASES / case["sibling"].replace(".tmodel", ".json"))["requires"]
        )


def _readme_table() -> dict[int, list[str]]:
    text = (CONFORMANCE / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Case corpus") :]
    rows: dict[int, list[str]] = {}
    for m in re.finditer(r"^\| (\d+) \| [^|]* \| ([^\n]*) \|$", section, re.MULTILINE):
        rows[int(m.group(1))] = re.findall(r"`([a-z0-9_]+)`", m.group(2))
    return rows


def test_readme_maps_every_attack_line() -> None:
    rows = _readme_table()
    assert sorted(rows) == sorted(make_cases.ATTACKS) == list(range(1, max(make_cases.ATTACKS) + 1))
    hostile = {p.stem: _load(p)["attack"]["line"] for p in ALL_HOSTILE}
    assert len(hostile) == len(ALL_HOSTILE)  # names are unique across the folders
    for line, names in rows.items():
        assert names or line in make_cases.NOT_A_FILE, f"ATTACKS line {line} has no case"
        for name in names:
            assert hostile[name] == line, (name, line)
    assert sorted(n for names in rows.values() for n in names) == sorted(hostile)
    assert make_cases.table() in (CONFORMANCE / "README.md").read_text(encoding="utf-8")


def test_every_attack_line_has_a_case_or_a_reason() -> None:
    lines = {_load(p)["attack"]["line"] for p in ALL_HOSTILE}
    assert lines | set(make_cases.NOT_A_FILE) == set(make_cases.ATTACKS)


def test_regenerating_gives_identical_files(tmp_path: Path) -> None:
    make_cases.write(tmp_path)
    for kind in ("valid", "hostile", "sharded"):
        fresh = {p.name: p.read_bytes() for p in (tmp_path / kind).iterdir()}
        stored = {p.name: p.read_bytes() for p in (CASES / kind).iterdir()}
        assert sorted(fresh) == sorted(stored)
        changed = [name for name in fresh if fresh[name] != stored[name]]
        assert not changed, changed


def test_published_test_keys_are_the_suite_keys() -> None:
    """conformance/README.md publishes the suite's keys: each value there is the one make_cases uses."""
    text = (CONFORMANCE / "README.md").read_text(encoding="utf-8")
    table = text[text.index("### Published test keys") :].split("\n\n")[2]
    kdf = make_cases.TEST_KDF
    for value in (
        make_cases.TEST_KEY.hex(),
        make_cases.OTHER_KEY.hex(),
        f"`{make_cases.TEST_PASSPHRASE}`, scrypt salt `{kdf['salt'].hex()}`, "
        f"`log_n` {kdf['log_n']}, `r` {kdf['r']}, `p` {kdf['p']}",
        f"`{make_cases.OTHER_PASSPHRASE}`",
        *(f"bytes `0x{s:02x}`; key id `{make_cases.signer_id(s)}`" for s in make_cases.SIGNING_SEEDS),
    ):
        assert value in table, value
