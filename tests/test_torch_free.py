"""The torch-free layers import and work in a process where `import torch` fails."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import tomllib
import torch

import tmodel

ROOT = Path(__file__).resolve().parents[1]


def torch_free_modules() -> list[str]:
    """Every module of the torch-free layers, as pyproject.toml's import-linter contract names them (the
    one statement of that set), expanded to the modules on disk."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["source_modules"] for c in contracts if c.get("forbidden_modules") == ["torch"]]
    src = ROOT / "src"
    out = []
    for layer in layers:
        path = src / layer.replace(".", "/")
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
        for f in files:
            parts = f.relative_to(src).with_suffix("").parts
            out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


PRELUDE = textwrap.dedent(
    f"""
    import importlib, json, sys
    sys.modules["torch"] = None  # any `import torch` now raises ImportError
    import tmodel, tmodel.archive.reader
    for name in {torch_free_modules()!r}:
        importlib.import_module(name)
    """
)


def test_the_torch_free_set_covers_the_layers_below_tensors() -> None:
    names = torch_free_modules()
    assert "tmodel.archive.reader" in names and "tmodel.manifest.checks" in names
    assert not any(n.startswith(("tmodel.tensors", "tmodel.nn", "tmodel.api")) for n in names)


def run(body: str, *args: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_reader_verifies_without_torch(small_file: Path) -> None:
    out = run(
        """
        r = tmodel.archive.reader.Reader(sys.argv[1])
        r.verify()
        names = [t.name for t in r.manifest.tensors]
        r.close()
        try:
            tmodel.save
            save = "no error"
        except ImportError as exc:
            save = type(exc).__name__
        loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        blocked = sys.modules["torch"] is None
        print(json.dumps({"names": names, "save": save, "torch": loaded, "blocked": blocked}))
        """,
        str(small_file),
    )
    with tmodel.open(small_file) as f:
        assert out["names"] == f.keys()
    assert out["save"] in ("ImportError", "ModuleNotFoundError")
    assert out["torch"] == ["torch"] and out["blocked"] is True  # only the blocker itself


def test_api_entry_points_fail_loudly_without_torch() -> None:
    out = run(
        """
        result = {}
        for name in ("save", "load", "open", "TModelFile"):
            try:
                getattr(tmodel, name)
                result[name] = "no error"
            except ImportError as exc:
                result[name] = "ImportError"
        print(json.dumps(result))
        """
    )
    assert out == {
        "save": "ImportError",
        "load": "ImportError",
        "open": "ImportError",
        "TModelFile": "ImportError",
    }


def test_reader_detects_damage_without_torch(small_file: Path, tmp_path: Path) -> None:
    data = bytearray(small_file.read_bytes())
    data[100] ^= 0x01  # inside blob 0
    damaged = tmp_path / "d.tmodel"
    damaged.write_bytes(data)
    out = run(
        """
        try:
            tmodel.archive.reader.Reader(sys.argv[1]).verify()
            code = "OK"
        except tmodel.TModelError as exc:
            code = exc.code
        print(json.dumps({"code": code}))
        """,
        str(damaged),
    )
    assert out == {"code": "CHECKSUM_MISMATCH"}


def test_writer_without_torch_produces_a_loadable_file(tmp_path: Path) -> None:
    """The streaming writer needs no torch either: a float32 vector written from plain bytes loads
    back in torch bit-exact."""
    out_path = tmp_path / "w.tmodel"
    run(
        """
        import struct
        from tmodel.archive import writer
        data = memoryview(bytearray(struct.pack("<6f", 0.0, -0.0, 1.5, float("inf"), -2.0, 1e-45)))
        sources = [writer.BlobSource(data, "bytegroup-zstd", 4)]
        def finish(blobs):
            return {
                "schema_version": 1, "required_features": [], "checksum": "xxh3-64", "blobs": blobs,
                "tensors": [{"name": "x", "dtype": "float32", "shape": [2, 3], "strides": [3, 1],
                             "blob": 0, "offset": 0}],
                "root": {"dict": [["x", {"tensor": 0}], [1, {"tuple": [None, b"b"]}]]},
                "metadata": {"by": "torch-free"}, "extensions": {},
            }
        writer.write_atomic(sys.argv[1], sources, finish, writer.Options(chunk_size=8, threads=2))
        tmodel.archive.reader.Reader(sys.argv[1]).verify()
        print(json.dumps({}))
        """,
        str(out_path),
    )
    loaded = tmodel.load(out_path)
    want = torch.tensor([[0.0, -0.0, 1.5], [float("inf"), -2.0, 1e-45]])
    assert list(loaded) == ["x", 1] and loaded[1] == (None, b"b")
    assert loaded["x"].dtype == torch.float32 and loaded["x"].stride() == (3, 1)
    assert torch.equal(loaded["x"].view(torch.int32), want.view(torch.int32))
    with tmodel.open(out_path) as f:
        assert f.metadata == {"by": "torch-free"}
        assert [len(b.chunks) for b in f.manifest.blobs] == [3]
