"""The conformance runner: the reference passes; broken, crashing and hanging implementations fail the
cases they should, within the time limit; known failures that start passing fail the run."""

from __future__ import annotations

import json
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tmodel.cli import main as cli
from tmodel.conformance import runner


def _impl(tmp_path: Path, body: str) -> str:
    script = tmp_path / "impl.py"
    script.write_text(textwrap.dedent(body))
    return f"{sys.executable} {script}"


HEAD = """
import json, sys, time
for line in sys.stdin:
    req = json.loads(line)
    op = req["op"]
    if op == "hello":
        hello = {"ok": True, "name": "x", "version": "0", "capabilities": ["read"], "schema_versions": [1]}
        print(json.dumps(hello), flush=True)
        continue
    if op == "bye":
        print(json.dumps({"ok": True}), flush=True)
        break
"""


def test_the_reference_passes_every_case(tmp_path: Path) -> None:
    report = runner.run(write_dir=tmp_path)
    assert report.results and report.failed == [] and report.problems == []
    assert {r.case.category for r in report.results} >= {"golden"}
    assert any(r.case.id.endswith("#write") for r in report.results) or not any(
        c.category != "golden" and "description" in c.expect for c in runner.collect()
    )


def test_wrong_answers_crashes_and_hangs_fail(tmp_path: Path) -> None:
    wrong = _impl(tmp_path, HEAD + '    print(json.dumps({"ok": False, "error": "BAD_MAGIC"}), flush=True)\n')
    report = runner.run(wrong, timeout=5)
    should_fail = {
        r.case.id
        for r in report.results
        if "description" in r.case.expect or "BAD_MAGIC" not in r.case.expect["error"]["codes"]
    }
    assert {r.case.id for r in report.failed} == should_fail and len(should_fail) < len(report.results)
    crash = _impl(tmp_path, HEAD + "    sys.exit(3)\n")
    report = runner.run(crash, timeout=5)
    assert report.failed and all("crash or timeout" in r.detail for r in report.failed)
    hang = _impl(tmp_path, HEAD + "    time.sleep(60)\n")
    t0 = time.monotonic()
    report = runner.run(hang, tiers=("MUST",), timeout=0.5)
    assert all(not r.ok and "no answer within 0.5 s" in r.detail for r in report.results)
    # each case: its timeout, then the implementation killed and started again (a process start per case)
    assert time.monotonic() - t0 < (0.5 + 0.25) * len(report.results) + 30


def test_memory_limit_applies(tmp_path: Path) -> None:
    greedy = _impl(
        tmp_path,
        HEAD
        + "    x = bytearray(3 << 30)\n    print(json.dumps({'ok': True, 'description': {}}), flush=True)\n",
    )
    report = runner.run(greedy, tiers=("MUST",), memory=1 << 30, timeout=20)
    assert report.results and all(not r.ok for r in report.results)


def test_known_failures(tmp_path: Path) -> None:
    case = runner.collect()[0].id
    report = runner.run(known_failures={case})
    assert report.problems == [f"known failure now passes, remove it from the list: {case}"]


def test_cli_run_junit_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junit = tmp_path / "j.xml"
    assert cli.main(["conformance", "run", "--junit", str(junit)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("conformance: ") and out.splitlines()[-1].endswith(" 0 failed")
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and suite.get("failures") == "0" and int(suite.get("tests", "0")) >= 7
    wrong = _impl(tmp_path, HEAD + '    print(json.dumps({"ok": False, "error": "BAD_MAGIC"}), flush=True)\n')
    assert cli.main(["conformance", "run", "--impl", wrong, "--tier", "MUST"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error[CONFORMANCE_FAILED]: ")


def test_the_independent_reader_passes_every_must_case() -> None:
    reader = Path(__file__).resolve().parents[1] / "conformance" / "independent_reader.py"
    report = runner.run(f"{sys.executable} {reader}", tiers=("MUST",))
    assert report.failed == [] and report.problems == []
    assert len(report.results) >= 100
    must = [c for c in runner.collect() if c.tier == "MUST"]
    assert report.skipped == [
        f"{len([c for c in must if c.category == 'model'])} cases need 'modules': "
        "the implementation does not declare it"
    ]
    hello = runner.Implementation(f"{sys.executable} {reader}", Path.cwd(), 1 << 32, 10)
    try:
        capabilities = hello.request({"op": "hello"})["capabilities"]
    finally:
        hello.stop()
    encrypted = [c for c in must if "encryption" in c.requires]
    assert encrypted
    if "encryption" not in capabilities:
        assert report.substituted == [
            f"{len(encrypted)} cases need 'encryption': the implementation does not declare it, so they "
            "expect what a reader without it answers"
        ]
    else:
        assert report.substituted == []


#: a reader of the header only: no capability but `read`; an encrypted file is refused by its flag (SPEC.md
#: §3.1), anything else answered BAD_MAGIC; it records every request it gets
BARE = (
    HEAD
    + """
    log.write(json.dumps(req) + "\\n"); log.flush()
    with open(req["path"], "rb") as f:
        head = f.read(64)
    code = "UNKNOWN_FEATURE" if head[:8] == b"\\x89TMODEL\\n" and head[12] & 2 else "BAD_MAGIC"
    print(json.dumps({"ok": False, "error": code}), flush=True)
"""
)


def test_capabilities_skip_or_substitute(tmp_path: Path) -> None:
    """Without `encryption`, an encrypted case expects UNKNOWN_FEATURE and gets no key; without
    `signatures` or `modules`, the cases that need them are skipped; read_with reaches only an
    implementation that declares what the case needs."""
    log = tmp_path / "requests.jsonl"
    bare = _impl(tmp_path, f"log = open({str(log)!r}, 'a')\n" + BARE)
    report = runner.run(bare, timeout=5)
    cases = runner.collect()
    by_id = {r.case.id: r for r in report.results}
    need = {cap: [c for c in cases if cap in c.requires] for cap in ("encryption", "signatures", "modules")}
    assert need["encryption"] and need["signatures"] and need["modules"]
    for c in need["encryption"]:
        assert by_id[c.id].ok and by_id[c.id].case.expect["error"]["codes"] == ["UNKNOWN_FEATURE"]
    skipped = [
        c for c in cases if "encryption" not in c.requires and {"signatures", "modules"} & set(c.requires)
    ]
    assert not {c.id for c in skipped} & set(by_id)
    counts = {cap: len([c for c in skipped if c.requires[0] == cap]) for cap in ("modules", "signatures")}
    assert report.skipped == [
        f"{n} cases need '{cap}': the implementation does not declare it"
        for cap, n in sorted(counts.items())
        if n
    ]
    sent = {r["path"]: r for r in map(json.loads, log.read_text().splitlines())}
    for c in need["encryption"] + need["signatures"]:  # no key, no trust: it declared neither
        assert str(c.path) not in sent or set(sent[str(c.path)]) == {"op", "path"}


def test_read_with_reaches_the_implementation(tmp_path: Path) -> None:
    """An implementation that declares every capability gets each case's read_with in its read request."""
    log = tmp_path / "requests.jsonl"
    body = HEAD.replace('"capabilities": ["read"]', '"capabilities": ["read", "encryption", "signatures"]')
    impl = _impl(
        tmp_path,
        body
        + f"    open({str(log)!r}, 'a').write(json.dumps(req) + '\\n')\n"
        + '    print(json.dumps({"ok": False, "error": "BAD_MAGIC"}), flush=True)\n',
    )
    runner.run(impl, timeout=5)
    sent = {r["path"]: r for r in map(json.loads, log.read_text().splitlines())}
    with_key = [c for c in runner.collect() if c.read_with]
    assert with_key
    for c in with_key:
        if "modules" not in c.requires:
            assert {k: v for k, v in sent[str(c.path)].items() if k not in ("op", "path")} == c.read_with
