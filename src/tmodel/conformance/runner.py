"""`tmodel conformance run`: drive an implementation over PROTOCOL.md through every case, enforcing a time
limit per request and a memory limit per process, and report per tier and per category.

Rules: cases are data (golden files and `cases/**.json`); a crash, a timeout or a malformed response fails
the case; codes are compared, never messages; a known failure that starts passing fails the run.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import resource
import selectors
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from .suite import SUITE

TIERS = ("MUST", "SHOULD", "MAY")
DEFAULT_IMPL = f"{shlex.quote(sys.executable)} -m tmodel.conformance.reference_impl"


@dataclass(frozen=True)
class Case:
    id: str
    path: Path
    tier: str
    category: str
    expect: dict[str, Any]
    #: what the read request gives the reader besides the path (PROTOCOL.md: key, trusted_keys, ...)
    read_with: dict[str, Any] = field(default_factory=dict)
    #: the capabilities the case needs; `without` maps some of them to what an implementation lacking it
    #: must answer instead (else such an implementation skips the case)
    requires: tuple[str, ...] = ()
    without: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Result:
    case: Case
    ok: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: cases judged by what they expect of an implementation without a capability (`without`)
    substituted: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if not r.ok]


def collect(root: Path = SUITE) -> list[Case]:
    """Golden files of every version (expected: their description) and every case file under cases/."""
    cases = []
    from ..manifest.schema import SCHEMA_VERSION

    for path in sorted((root / "golden").glob("v*/*.tmodel")):
        expect = {"description": json.loads(path.with_suffix(".json").read_text())}
        # SPEC.md §12: reading older schema versions through a chain is a SHOULD; the current one, a MUST
        tier = "MUST" if path.parent.name == f"v{SCHEMA_VERSION}" else "SHOULD"
        cases.append(Case(f"golden/{path.parent.name}/{path.stem}", path, tier, "golden", expect))
    for spec in sorted((root / "cases").glob("*/*.json")):
        data = json.loads(spec.read_text())
        cases.append(
            Case(
                data["id"],
                spec.parent / data["file"],
                data["tier"],
                data["category"],
                data["expect"],
                data.get("read_with", {}),
                tuple(data.get("requires", ())),
                data.get("without", {}),
            )
        )
    return cases


def plan(cases: list[Case], capabilities: set[str], report: Report) -> list[tuple[Case, bool]]:
    """The cases to run against an implementation of these capabilities, each with whether it is judged
    by its own expectation (True) or by its `without` one (False); skipped ones noted in the report."""
    out: list[tuple[Case, bool]] = []
    skipped: dict[str, int] = {}
    substituted: dict[str, int] = {}
    for c in cases:
        missing = [r for r in c.requires if r not in capabilities]
        if not missing:
            out.append((c, True))
            continue
        instead = next((m for m in missing if m in c.without), None)
        if instead is None:
            skipped[missing[0]] = skipped.get(missing[0], 0) + 1
        else:
            out.append((Case(c.id, c.path, c.tier, c.category, c.without[instead]), False))
            substituted[instead] = substituted.get(instead, 0) + 1
    for cap, n in sorted(skipped.items()):
        report.skipped.append(f"{n} cases need '{cap}': the implementation does not declare it")
    for cap, n in sorted(substituted.items()):
        report.substituted.append(
            f"{n} cases need '{cap}': the implementation does not declare it, so they expect what a "
            "reader without it answers"
        )
    return out


class Implementation:
    """One running implementation process, restarted after a crash or a timeout."""

    def __init__(self, command: str, cwd: Path, memory: int, timeout: float) -> None:
        self.command, self.cwd, self.memory, self.timeout = shlex.split(command), cwd, memory, timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.hello: dict[str, Any] = {}

    def _start(self) -> None:
        memory = self.memory

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

        self.proc = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            preexec_fn=limit,
        )
        self.hello = self.request({"op": "hello"}, start=False)

    def request(self, req: dict[str, Any], start: bool = True) -> dict[str, Any]:
        """Send one request; a timeout, a death or a malformed answer raises RuntimeError (and restarts)."""
        if start and (self.proc is None or self.proc.poll() is not None):
            self._start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
            line = self._readline(self.proc.stdout.fileno())
            answer = json.loads(line)
            if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
                raise ValueError("the response is not a protocol object")
            return answer
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from None

    def _readline(self, fd: int) -> bytes:
        deadline = time.monotonic() + self.timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while not buf.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise TimeoutError(f"no answer within {self.timeout} s")
                piece = os.read(fd, 1 << 16)
                if not piece:
                    raise EOFError("the implementation exited")
                buf += piece
        return buf

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def _judge_read(case: Case, answer: dict[str, Any]) -> tuple[bool, str]:
    if "description" in case.expect:
        if not answer["ok"]:
            return False, f"expected a description, got error {answer.get('error')}"
        same = answer.get("description") == case.expect["description"]
        return same, "" if same else "description differs"
    codes = case.expect["error"]["codes"]
    if answer["ok"]:
        return False, f"accepted a file that must fail with {codes}"
    return (answer.get("error") in codes), f"error {answer.get('error')}, expected one of {codes}"


def _write_request(case: Case, out: Path) -> dict[str, Any]:
    """A write request rebuilding a valid case from its reference decoding."""
    import tmodel

    from ..tensors.memory import host_view
    from .describe import reader_options

    data = {}
    with tmodel.open(case.path, key=reader_options(case.read_with).get("key")) as f:
        for name in f:
            t = f.get_tensor(name).contiguous()
            data[name] = base64.b64encode(bytes(host_view(t))).decode()
    return {"op": "write", "path": str(out), "description": case.expect["description"], "data": data}


def run(
    command: str = DEFAULT_IMPL,
    tiers: tuple[str, ...] = TIERS,
    known_failures: set[str] | None = None,
    timeout: float = 10.0,
    memory: int = 4 << 30,
    root: Path = SUITE,
    write_dir: Path | None = None,
) -> Report:
    """Run every case of the given tiers against `command`."""
    from .describe import describe

    known = known_failures or set()
    report = Report()
    impl = Implementation(command, root, memory, timeout)
    try:
        impl.request({"op": "hello"})  # starts it, so its capabilities are known
        capabilities = set(impl.hello.get("capabilities", []))
        planned = plan([c for c in collect(root) if c.tier in tiers], capabilities, report)
        for case, own in planned:
            t0 = time.monotonic()
            # what the caller gives goes only to an implementation that declares what the case needs
            request = {"op": "read", "path": str(case.path), **(case.read_with if own else {})}
            try:
                ok, detail = _judge_read(case, impl.request(request))
            except RuntimeError as exc:
                ok, detail = False, f"crash or timeout: {exc}"
            report.results.append(Result(case, ok, "" if ok else detail, time.monotonic() - t0))
        if "write" in capabilities and write_dir is not None:
            for case in (c for c, own in planned if own):
                desc = case.expect.get("description")
                if desc is None or desc.get("modules") or case.category == "golden":
                    continue
                out = write_dir / (case.id.replace("/", "__") + ".tmodel")
                write_case = Case(case.id + "#write", case.path, case.tier, "write", case.expect)
                t0 = time.monotonic()
                try:
                    answer = impl.request(_write_request(case, out))
                    ok = answer["ok"] and describe(str(out)) == desc
                    detail = "" if ok else f"write: {answer.get('error') or 'read back differs'}"
                except Exception as exc:  # the reference read-back is part of the verdict
                    ok, detail = False, f"write: {type(exc).__name__}: {exc}"
                report.results.append(Result(write_case, ok, detail, time.monotonic() - t0))
        with contextlib.suppress(RuntimeError):
            impl.request({"op": "bye"})
    finally:
        impl.stop()
    for r in report.results:
        if r.case.id in known:
            if r.ok:
                report.problems.append(f"known failure now passes, remove it from the list: {r.case.id}")
            r.ok, r.detail = True, f"known failure: {r.detail}"
    return report


def summary(report: Report) -> list[str]:
    """Lines per tier and per category, failures listed."""
    lines = []
    for label in ("tier", "category"):
        groups: dict[str, list[Result]] = {}
        for r in report.results:
            groups.setdefault(r.case.tier if label == "tier" else r.case.category, []).append(r)
        for name, rs in sorted(groups.items()):
            passed = sum(r.ok for r in rs)
            lines.append(f"{label} {name}: {passed}/{len(rs)} passed")
    lines += [f"FAIL {r.case.id}: {r.detail}" for r in report.failed]
    lines += [f"PROBLEM {p}" for p in report.problems]
    lines += [f"skipped {s}" for s in report.skipped]
    lines += [f"without {s}" for s in report.substituted]
    total, failed = len(report.results), len(report.failed) + len(report.problems)
    lines.append(f"conformance: {total - len(report.failed)} passed, {failed} failed")
    return lines


def junit(report: Report, path: Path) -> None:
    """A JUnit XML file, one testcase per case."""
    cases = []
    for r in report.results:
        body = "" if r.ok else f'<failure message="{escape(r.detail, {chr(34): "&quot;"})}"/>'
        attrs = f'classname="{r.case.category}" name="{escape(r.case.id)}" time="{r.seconds:.3f}"'
        cases.append(f"  <testcase {attrs}>{body}</testcase>")
    head = (
        f'<testsuite name="tmodel-conformance" tests="{len(report.results)}" failures="{len(report.failed)}">'
    )
    xml = '<?xml version="1.0" encoding="utf-8"?>\n' + head + "\n" + "\n".join(cases) + "\n</testsuite>\n"
    path.write_text(xml)
