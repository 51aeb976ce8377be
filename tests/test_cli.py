"""The `tmodel` command line: exact exit codes, one-line `error[CODE]:` messages and never a traceback,
both in a subprocess (`python -m tmodel.cli`) and in-process through `main`; names and metadata from a
hostile file reach the terminal escaped."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

import tmodel
from tmodel.archive.reader import Reader
from tmodel.cli import main as cli
from tmodel.cli import text
from tmodel.cli.main import from_json_value, main, to_json_value
from tmodel.conformance import make_cases
from tmodel.errors import TModelError

META: dict[str, Any] = {
    "name": "tiny",
    "step": 12,
    "big": 2**64 - 1,
    "lr": 1e-3,
    "neg_zero": -0.0,
    "inf": float("inf"),
    "raw": b"\x00\xffab",
    "none": None,
    "flags": [True, False, [b"\x01"]],
    "tagged": {"$bytes": "not bytes"},
    "cfg": {"hidden": 64, "$x": 1},
}


def checkpoint() -> dict[str, torch.Tensor]:
    w = torch.arange(64, dtype=torch.float32).reshape(8, 8)
    return {
        "w": w,
        "w_tied": w,
        "b": torch.zeros(8, dtype=torch.bfloat16),
        "mask": torch.arange(10) % 2 == 0,
        "empty": torch.zeros(0, 3),
    }


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.tmodel"
    tmodel.save(checkpoint(), path, metadata=META, chunk_size=64)
    return path


def damaged(path: Path, offset: int, dest: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    dest.write_bytes(bytes(data))
    return dest


@pytest.fixture
def corrupt(good: Path, tmp_path: Path) -> Path:
    with Reader(good) as r:
        offset = r.manifest.blobs[0].offset + 3
    return damaged(good, offset, tmp_path / "corrupt.tmodel")


@pytest.fixture
def bad_magic(good: Path, tmp_path: Path) -> Path:
    return damaged(good, 1, tmp_path / "magic.tmodel")


def run(mode: str, args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the CLI, in a subprocess or in-process."""
    if mode == "subprocess":
        p = subprocess.run(
            [sys.executable, "-m", "tmodel.cli", *args], capture_output=True, text=True, timeout=300
        )
        return p.returncode, p.stdout, p.stderr
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


MODES = ["inprocess", "subprocess"]


def assert_error(result: tuple[int, str, str], code: str) -> None:
    rc, out, err = result
    assert rc == 1
    assert out == ""
    assert err.startswith(f"error[{code}]: ")
    assert err.endswith("\n") and err.count("\n") == 1
    assert "Traceback" not in err


# -- verify ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_verify_ok(mode: str, good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Reader(good) as r:
        n = len(r.manifest.tensors)
        checked = sum(b.nbytes for b in r.manifest.blobs)
    assert run(mode, ["verify", str(good)], capsys) == (
        0,
        f"ok: {good} ({n} tensors, {checked} bytes checked, unsigned)\n",
        "",
    )
    assert (n, checked) == (5, 64 * 4 + 16 + 10)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("command", ["verify", "inspect"])
def test_errors_are_one_line_with_code(
    mode: str,
    command: str,
    corrupt: Path,
    bad_magic: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if command == "verify":  # a flipped blob byte is only seen when the blob is read
        assert_error(run(mode, [command, str(corrupt)], capsys), "CHECKSUM_MISMATCH")
    assert_error(run(mode, [command, str(bad_magic)], capsys), "BAD_MAGIC")
    assert_error(run(mode, [command, str(tmp_path / "nope.tmodel")], capsys), "IO_ERROR")
    assert_error(run(mode, [command, str(tmp_path)], capsys), "NOT_REGULAR_FILE")
    (tmp_path / "tiny").write_bytes(b"\x89TMO")
    assert_error(run(mode, [command, str(tmp_path / "tiny")], capsys), "TRUNCATED")


def test_flipped_manifest_byte_is_caught_by_inspect(
    good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    size = good.stat().st_size
    bad = damaged(good, size - 64 - 5, tmp_path / "m.tmodel")  # inside the manifest
    assert_error(run("inprocess", ["inspect", str(bad)], capsys), "CHECKSUM_MISMATCH")


@pytest.mark.parametrize("mode", MODES)
def test_usage_errors_exit_2(mode: str, good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (
        [],
        ["frobnicate"],
        ["verify"],
        ["inspect", str(good), "--bogus"],
        ["convert", "a", "b", "--codec", "lz4"],
    ):
        rc, out, err = run(mode, args, capsys)
        assert rc == 2, args
        assert "usage:" in err and "Traceback" not in err
    rc, out, _ = run(mode, ["--help"], capsys)
    assert rc == 0 and "inspect" in out


def test_keyboard_interrupt_exits_130_quietly(
    good: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(self: Reader, progress: Any = None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Reader, "verify", interrupted)
    assert run("inprocess", ["verify", str(good)], capsys) == (130, "", "")


def test_unexpected_exception_is_still_one_line(
    good: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(self: Reader, progress: Any = None) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(Reader, "verify", broken)
    assert_error(run("inprocess", ["verify", str(good)], capsys), "TMODEL")


# -- progress bar ------------------------------------------------------------------------------------------
class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_tty(
    good: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main(["verify", str(good)]) == 0
    drawn = tty.getvalue()
    assert "\rverify [" in drawn and "100.0%" in drawn
    assert drawn.endswith("\r") and "\n" not in drawn  # erased at the end, nothing left on the line
    monkeypatch.undo()
    assert run("inprocess", ["verify", str(good)], capsys)[2] == ""  # capsys stderr is no TTY


def test_progress_bar_draws_and_erases() -> None:
    out = FakeTTY()
    bar = cli.ProgressBar(out, "x", width=10)
    bar(5, 10)
    bar(10, 10)
    bar.close()
    text = out.getvalue()
    assert "\rx [#####.....]  50.0%" in text and "\rx [##########] 100.0%" in text
    assert text.endswith("\r")


# -- inspect -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_inspect_json_round_trips_exact_values(
    mode: str, good: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run(mode, ["inspect", str(good), "--json"], capsys)
    assert (rc, err) == (0, "")
    doc = json.loads(out)
    meta = from_json_value(doc["metadata"])
    assert meta == META
    assert [type(v) for v in meta.values()] == [type(v) for v in META.values()]
    assert math.copysign(1.0, meta["neg_zero"]) == -1.0
    assert doc["metadata"]["raw"] == {"$bytes": "00ff6162"}
    assert doc["metadata"]["inf"] == {"$float": "inf"}
    assert doc["metadata"]["tagged"] == {"$dict": {"$bytes": "not bytes"}}
    ck = checkpoint()
    assert [t["name"] for t in doc["tensors"]] == list(ck)
    for t in doc["tensors"]:
        want = ck[t["name"]]
        assert t["shape"] == list(want.shape)
        assert t["dtype"] == str(want.dtype).removeprefix("torch.")
        assert t["raw_bytes"] == want.numel() * want.element_size()
    with Reader(good) as r:
        m = r.manifest
        assert doc["file_bytes"] == r.file_size == good.stat().st_size
    by_name = {t["name"]: t for t in doc["tensors"]}
    assert by_name["w"]["blob"] == by_name["w_tied"]["blob"]
    assert by_name["w"]["stored_bytes"] == m.blobs[by_name["w"]["blob"]].length
    assert by_name["empty"] == {
        "name": "empty",
        "dtype": "float32",
        "shape": [0, 3],
        "strides": [3, 1],
        "blob": None,
        "offset": 0,
        "codec": None,
        "stored_bytes": 0,
        "raw_bytes": 0,
        "ratio": None,
    }
    totals = doc["totals"]
    assert totals["tensors"] == 5 and totals["blobs"] == len(m.blobs) == 3
    assert totals["stored_bytes"] == sum(b.length for b in m.blobs)  # the tied blob counted once
    assert totals["raw_bytes"] == sum(b.nbytes for b in m.blobs) == 64 * 4 + 16 + 10
    assert doc["blobs"][0]["chunks"] == len(m.blobs[0].chunks) == 4


def test_inspect_lists_meta_tensors_of_the_object_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = torch.ones(2)
    t.foo = (1, 2)  # type: ignore[attr-defined]
    obj = {
        (1, "a"): t,
        "m": torch.empty(3, 2, device="meta"),
        "p": torch.nn.Parameter(torch.empty(0, device="meta")),
    }
    tmodel.save(obj, tmp_path / "m.tmodel")
    rc, out, err = run("inprocess", ["inspect", str(tmp_path / "m.tmodel")], capsys)
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[2].split()[:3] == ["(1,", "'a')", "float32"]
    assert lines[4] == "meta tensors (no data): 2: float32 [3, 2], float32 [0]"
    rc, out, err = run("inprocess", ["inspect", "--json", str(tmp_path / "m.tmodel")], capsys)
    doc = json.loads(out)
    assert doc["meta_tensors"] == [{"dtype": "float32", "shape": [3, 2]}, {"dtype": "float32", "shape": [0]}]
    assert [t["name"] for t in doc["tensors"]] == ["(1, 'a')"]


def test_inspect_table(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run("inprocess", ["inspect", str(good)], capsys)
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"{good}: {good.stat().st_size} bytes, schema 7")
    assert lines[1].split() == ["name", "dtype", "shape", "codec", "stored", "raw", "ratio"]
    rows = {line.split()[0]: line.split() for line in lines[2:7]}
    assert rows["w"][:4] == ["w", "float32", "[8,", "8]"]
    assert rows["empty"][-3:] == ["0", "0", "-"]
    assert lines[7].startswith("total: 5 tensors")
    assert "3 blobs" in lines[7]
    assert lines[8] == "metadata:"
    assert '  name: "tiny"' in lines
    assert '  raw: {"$bytes": "00ff6162"}' in lines


def test_json_value_tags() -> None:
    values: list[Any] = [float("-inf"), {"$only": 1}, {"$a": 1, "b": 2}, [b""], "$bytes", {}]
    for v in values:
        assert from_json_value(json.loads(json.dumps(to_json_value(v)))) == v
    assert math.isnan(from_json_value(to_json_value(float("nan"))))
    with pytest.raises(ValueError):
        from_json_value({"$what": 1})


# -- convert -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_convert_command(mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tensors = {"a": torch.randn(4, 4), "b": torch.arange(5)}
    src = tmp_path / "m.tmodel"
    tmodel.save(tensors, src, metadata={"format": "pt"})
    st = tmp_path / "m.safetensors"
    assert run(mode, ["convert", str(src), str(st)], capsys) == (0, f"ok: {src} -> {st}\n", "")
    got = safetensors.torch.load_file(str(st))
    for k, t in tensors.items():
        assert torch.equal(got[k], t) and got[k].dtype == t.dtype
    back = tmp_path / "back.tmodel"
    assert run(mode, ["convert", str(st), str(back), "--codec", "raw"], capsys)[0] == 0
    with Reader(back) as r:
        assert {b.codec for b in r.manifest.blobs} == {"raw"}
        assert r.manifest.metadata == {"format": "pt"}


@pytest.mark.parametrize("mode", MODES)
def test_convert_errors(mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nested = tmp_path / "n.tmodel"
    tmodel.save({"model": {"w": torch.ones(1)}}, nested)
    assert_error(
        run(mode, ["convert", str(nested), str(tmp_path / "n.safetensors")], capsys), "UNSUPPORTED_TYPE"
    )
    assert_error(run(mode, ["convert", str(nested), str(tmp_path / "n.xyz")], capsys), "INVALID_ARGUMENT")
    hostile = tmp_path / "h.safetensors"
    hostile.write_bytes((10_000).to_bytes(8, "little") + b"{}")
    assert_error(run(mode, ["convert", str(hostile), str(tmp_path / "h.tmodel")], capsys), "TRUNCATED")
    evil_index = tmp_path / "e.safetensors.index.json"
    evil_index.write_text(json.dumps({"weight_map": {"w": "../x.safetensors"}}))
    assert_error(run(mode, ["convert", str(evil_index), str(tmp_path / "e.tmodel")], capsys), "BAD_NAME")
    assert sorted(os.listdir(tmp_path)) == ["e.safetensors.index.json", "h.safetensors", "n.tmodel"]


# -- hostile text from a file ------------------------------------------------------------------------------
TITLE, CLEAR, RLO = "\x1b]0;title\x07", "\x1b[2J", "\u202e"
RAW_CONTROLS = ["\x1b", "\x07", "\r", "\u202e", "\u2066", "\x9b", "\x85", "\x7f"]
HOSTILE = f"{TITLE}{CLEAR}{RLO}\r"
HOSTILE_META: dict[str, Any] = {
    f"k{HOSTILE}": f"v{HOSTILE}\x7f",
    "nested": {f"in{TITLE}": [f"{CLEAR}x", b"\x1b"]},
}
TENSOR_NAME = f"w{RLO}gpj.exe\u2066\x9b\x85"  # what a tensor name may hold: C0 and DEL are BAD_NAME


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.tmodel"
    state = {TENSOR_NAME: torch.ones(2), f"mod{HOSTILE}": torch.nn.Linear(2, 2)}
    tmodel.save(state, path, metadata=HOSTILE_META)
    return path


def test_escape_and_quote() -> None:
    assert text.escape(f"a{TITLE}b") == "a\\x1b]0;title\\x07b"
    assert text.escape("\t\n\r\x00\x7f\x9b\u061c\u200e\u200f\u202a\u202e\u2066\u2069") == (
        "\\t\\n\\r\\x00\\x7f\\x9b\\u061c\\u200e\\u200f\\u202a\\u202e\\u2066\\u2069"
    )
    assert text.escape('plain ünïcode \\ "') == 'plain ünïcode \\ "'  # nothing else changes
    assert text.escape(os.fsdecode(b"caf\xff")) == "caf\\xff"  # a non-UTF-8 byte of a path
    assert text.quote("model.fc.weight") == "model.fc.weight"  # names that need nothing stay bare
    assert text.quote(f"w{RLO}") == '"w\\u202e"'
    assert text.quote('say "hi" \\ now') == '"say \\"hi\\" \\\\ now"'  # unambiguous once quoted
    assert text.quote("") == '""' and text.quote("x", always=True) == '"x"'


@pytest.mark.parametrize("mode", MODES)
def test_inspect_escapes_control_and_bidi_characters(
    mode: str, hostile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run(mode, ["inspect", str(hostile)], capsys)
    assert (rc, err) == (0, "")
    for ch in RAW_CONTROLS:
        assert ch not in out, repr(ch)
    escaped = "\\x1b]0;title\\x07\\x1b[2J\\u202e\\r"
    lines = out.splitlines()
    assert any(line.startswith('"w\\u202egpj.exe\\u2066\\x9b\\x85"  float32') for line in lines)
    linear = f'  "mod{escaped}": torch.nn.Linear v1 (6 params)  in_features=2, out_features=2, bias=True'
    assert linear in lines  # a dict key, in the architecture, with the layer's config
    assert f'  "k{escaped}": "v{escaped}\\x7f"' in lines  # metadata key and value
    assert '  nested: {"in\\x1b]0;title\\x07": ["\\x1b[2Jx", {"$bytes": "1b"}]}' in lines


@pytest.mark.parametrize("mode", MODES)
def test_inspect_json_keeps_the_exact_hostile_strings(
    mode: str, hostile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run(mode, ["inspect", str(hostile), "--json"], capsys)
    assert (rc, err) == (0, "")
    assert out.isascii() and all(ch not in out for ch in RAW_CONTROLS)
    doc = json.loads(out)
    assert from_json_value(doc["metadata"]) == HOSTILE_META
    assert doc["tensors"][0]["name"] == TENSOR_NAME
    assert doc["architecture"][0]["name"] == f"mod{HOSTILE}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_the_error_line_escapes_a_hostile_name(
    mode: str, command: str, good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head, region, wire, digest = make_cases.split(good.read_bytes())
    wire["tensors"][0]["name"] = f"w{HOSTILE}\u2066\x9b"
    bad = tmp_path / "bad.tmodel"
    bad.write_bytes(make_cases.build(head, region, wire, digest))
    result = run(mode, [command, str(bad)], capsys)
    assert_error(result, "BAD_NAME")
    err = result[2]
    assert all(ch not in err for ch in RAW_CONTROLS)
    assert "\\x1b]0;title\\x07\\x1b[2J\\u202e\\r\\u2066\\x9b" in err


def test_every_error_message_is_escaped(
    good: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever composed the message (a name without repr, a path): the line that reaches the terminal
    holds no control character, and stays one line."""

    def hostile(self: Reader, progress: Any = None) -> None:
        raise TModelError(f"layer path {HOSTILE}\x9b\u2066 is bad\nsecond line")

    monkeypatch.setattr(Reader, "verify", hostile)
    result = run("inprocess", ["verify", str(good)], capsys)
    assert_error(result, "TMODEL")
    assert (
        result[2]
        == "error[TMODEL]: layer path \\x1b]0;title\\x07\\x1b[2J\\u202e \\x9b\\u2066 is bad second line\n"
    )


def test_every_line_a_command_prints_is_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"ok{CLEAR}{RLO}.tmodel"
    tmodel.save({"w": torch.ones(1)}, path)
    rc, out, err = run("inprocess", ["verify", str(path)], capsys)
    assert (rc, err) == (0, "")
    assert out == f"ok: {tmp_path}/ok\\x1b[2J\\u202e.tmodel (1 tensors, 4 bytes checked, unsigned)\n"
