"""Every reference to a SPEC.md section, in code, tests, data and docs, names a heading that SPEC.md has.

Forms found: `SPEC.md §5.7`, `SPEC §6.3`, a bare `§12` or `§A.3`, ranges `§5.2-§5.4` / `§5.2–5.4` (both ends
must exist), `SPEC 5.7` / `SPEC.md section 4` without the sign, and `Appendix A.3`. Headings are numbered
`## 5. Manifest content`, `### 5.1 Blob`, `## Appendix A. Title`, `### A.1 Title`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "SPEC.md"

#: folders scanned recursively, and folders whose own *.md files are scanned
TREES = ("src", "tests", "examples", "benchmarks", "format", "conformance")
MD_FOLDERS = (".", "conformance", "migrations", "benchmarks")
SUFFIXES = {".py", ".md", ".json", ".toml", ".txt"}
#: frozen binary fixtures, nothing to read there
SKIP = ("examples/migrations/fixtures",)

# spelled out, so that this file's own examples of wrong references are not references themselves
SIGN, WORD, APPENDIX = "\u00a7", "SPEC", "Appendix"
NUMBER = r"(?:[0-9]+(?:\.[0-9]+)*|[A-Z](?:\.[0-9]+)*)"
HEADING = re.compile(rf"^#{{2,4}} (?:Appendix )?({NUMBER})\.? ", re.MULTILINE)
REFERENCE = re.compile(
    rf"{SIGN} ?({NUMBER})\b(?:\s*[-\u2013]\s*{SIGN}? ?({NUMBER})\b)?"
    rf"|\bSPEC(?:\.md)? (?:section )?([0-9]+(?:\.[0-9]+)*)\b"
    rf"|\bAppendix ([A-Z](?:\.[0-9]+)*)\b"
)


def headings(text: str) -> set[str]:
    """The section numbers of a SPEC text: `5`, `5.1`, `A`, `A.1`."""
    return set(HEADING.findall(text))


def references(text: str) -> Iterator[tuple[int, str]]:
    """(line number, section number) of every section reference in `text`; a range gives both ends."""
    for m in REFERENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        for number in m.groups():
            if number:
                yield line, number


def unresolved(text: str, known: set[str]) -> list[tuple[int, str]]:
    return [(line, n) for line, n in references(text) if n not in known]


def scanned_files() -> list[Path]:
    files: set[Path] = {SPEC}
    for tree in TREES:
        for path in (ROOT / tree).rglob("*"):
            rel = path.relative_to(ROOT).as_posix()
            wanted = path.suffix in SUFFIXES and not rel.startswith(SKIP) and "__pycache__" not in path.parts
            if wanted and path.is_file():
                files.add(path)
    for folder in MD_FOLDERS:
        files.update((ROOT / folder).glob("*.md"))
    return sorted(files)


KNOWN = headings(SPEC.read_text(encoding="utf-8"))


def test_spec_headings_are_numbered() -> None:
    assert {"1", "3.2", "5", "5.7", "10", "13"} <= KNOWN
    assert "A" in KNOWN  # the appendix
    for number in KNOWN:
        if "." in number:  # every subsection sits under a section that exists
            assert number.rsplit(".", 1)[0] in KNOWN, number


def test_the_check_can_fail() -> None:
    fake = f"see SPEC.md {SIGN}99, SPEC {SIGN}5.2-{SIGN}5.77, {SIGN}3.1\u20133.9, {APPENDIX} Z and {WORD} 42"
    assert [n for _, n in unresolved(fake, KNOWN)] == ["99", "5.77", "3.9", "Z", "42"]
    real = f"SPEC.md {SIGN}10, {SIGN}5.2\u2013{SIGN}5.4, {SIGN}3.3. SPEC 5.7 step 4, Appendix A"
    assert [n for _, n in references(real)] == ["10", "5.2", "5.4", "3.3", "5.7", "A"]
    assert unresolved(real, KNOWN) == []


def test_scan_covers_the_documented_places() -> None:
    rel = {p.relative_to(ROOT).as_posix() for p in scanned_files()}
    for expected in (
        "SPEC.md",
        "README.md",
        "conformance/README.md",
        "conformance/ATTACKS.md",
        "migrations/README.md",
        "benchmarks/README.md",
        "src/tmodel/errors.py",
        "format/generate.py",
        "tests/test_spec_refs.py",
    ):
        assert expected in rel, expected


@pytest.mark.parametrize("path", scanned_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_spec_reference_resolves(path: Path) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return  # not text
    missing = [f"{path.relative_to(ROOT)}:{line}: {SIGN}{n}" for line, n in unresolved(text, KNOWN)]
    assert not missing, "references to sections SPEC.md does not have:\n" + "\n".join(missing)
