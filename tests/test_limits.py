"""Every resource limit of SPEC.md §8 is documented with its default, enforced with its code, and adjustable
by the caller (`tmodel.open(path, limits=...)`, `tmodel.load(..., limits=...)`)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import tmodel
from tmodel.errors import TModelError
from tmodel.limits import DEFAULT_LIMITS, GiB, Limits, MiB
from tmodel.nn import registry

ROOT = Path(__file__).resolve().parent.parent
DERIVED = {"max_expansion", "decoded_slack", "max_total_bytes"}  # the "decoded size" row


@tmodel.register("tests.limits.Cached", version=1)
class Cached(nn.Module):
    """A layer whose constructor allocates a non-persistent buffer (what `max_unsaved_bytes` bounds)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2))
        self.register_buffer("cache", torch.zeros(n), persistent=False)


class FoundA(nn.Module):
    """Layers an integration would register on first use: the finder below registers them by name."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))


class FoundB(FoundA):
    pass


FOUND: dict[str, type[nn.Module]] = {"tests.limits.FoundA": FoundA, "tests.limits.FoundB": FoundB}


def _find(name: str) -> None:
    if name in FOUND and not registry.is_registered_name(name):
        registry.register_class(FOUND[name], name, get_config=lambda m: {})


def _forget_found() -> None:
    for name in FOUND:
        if registry.is_registered_name(name):
            registry.unregister(name)


registry.add_finders(_find, lambda cls: _find(next((n for n, c in FOUND.items() if c is cls), "")))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("limits")
    ckpt = {
        "model": nn.Sequential(nn.Linear(4, 3), nn.ReLU(), Cached(1000)),
        "nested": {"a": {"b": {"c": torch.arange(6).reshape(2, 3)}}},
        "zeros": torch.zeros(1 << 20),  # 4 MiB of zeros: compresses ~1000x
        "long_name_tensor": torch.ones(5000),
    }
    paths = {"main": d / "main.tmodel", "chunks": d / "chunks.tmodel", "found": d / "found.tmodel"}
    paths["sharded"] = d / "sharded.tmodel"  # an index and 3 shards of one tensor each
    tmodel.save(
        {f"t{i}": torch.full((256,), float(i)) for i in range(3)}, paths["sharded"], max_shard_size=1024
    )
    paths["kdf"] = d / "kdf.tmodel"
    tmodel.save({"x": torch.ones(3)}, paths["kdf"], encrypt_with=KDF_KEY)
    tmodel.save(nn.Sequential(FoundA(), FoundB(), FoundA()), paths["found"])
    tmodel.save(ckpt, paths["main"])
    tmodel.save({"x": torch.arange(10_000, dtype=torch.float32)}, paths["chunks"], chunk_size=4096)
    return paths


CASES = [  # (file, limit, other limit changes, code when one below the file's need)
    ("main", "max_manifest_bytes", {}, "LIMIT_EXCEEDED"),
    ("main", "max_tensors", {}, "LIMIT_EXCEEDED"),
    ("main", "max_blobs", {}, "LIMIT_EXCEEDED"),
    ("main", "max_modules", {}, "LIMIT_EXCEEDED"),
    ("main", "max_module_paths", {}, "LIMIT_EXCEEDED"),
    ("chunks", "max_chunks", {}, "LIMIT_EXCEEDED"),
    ("main", "max_rank", {}, "LIMIT_EXCEEDED"),
    ("main", "max_depth", {}, "LIMIT_EXCEEDED"),
    ("main", "max_name_bytes", {}, "BAD_NAME"),
    ("chunks", "max_chunk_size", {}, "LIMIT_EXCEEDED"),
    ("main", "max_window_size", {}, "BAD_COMPRESSED_DATA"),
    ("main", "max_expansion", {"decoded_slack": 0}, "LIMIT_EXCEEDED"),
    ("main", "decoded_slack", {"max_expansion": 0}, "LIMIT_EXCEEDED"),
    ("main", "max_total_bytes", {}, "LIMIT_EXCEEDED"),
    ("main", "max_unsaved_bytes", {}, "LIMIT_EXCEEDED"),
    ("found", "max_found_names", {}, "LIMIT_EXCEEDED"),
    ("kdf", "max_kdf_bytes", {}, "LIMIT_EXCEEDED"),
    ("sharded", "max_shards", {}, "LIMIT_EXCEEDED"),
]
#: the passphrase of the "kdf" file, with scrypt parameters small enough for a test: 128 * 2^10 * 8 bytes
KDF_KEY = tmodel.Passphrase("limits", log_n=10, r=8, p=1)


def _outcome(path: Path, limits: Limits) -> str:
    _forget_found()  # so that every load asks the finder again
    try:
        tmodel.load(path, limits=limits, key=KDF_KEY)  # the one encrypted file's; the others ignore it
    except TModelError as exc:
        return exc.code
    return "ok"


@pytest.mark.parametrize(("name", "field", "other", "code"), CASES, ids=[c[1] for c in CASES])
def test_each_limit_is_enforced_at_its_exact_boundary(
    files: dict[str, Path], name: str, field: str, other: dict[str, int], code: str
) -> None:
    """The smallest value that loads the file is found by bisection; one less fails with the code."""
    path = files[name]
    assert _outcome(path, DEFAULT_LIMITS) == "ok"
    base = dataclasses.replace(DEFAULT_LIMITS, **other)
    lo, hi = 0, max(getattr(DEFAULT_LIMITS, field), 1 << 20)  # 4 MiB of zeros expand > 1024x
    assert _outcome(path, dataclasses.replace(base, **{field: hi})) == "ok"
    while lo < hi:  # invariant: hi loads
        mid = (lo + hi) // 2
        if _outcome(path, dataclasses.replace(base, **{field: mid})) == "ok":
            hi = mid
        else:
            lo = mid + 1
    assert hi > 0
    assert _outcome(path, dataclasses.replace(base, **{field: hi - 1})) == code
    with tmodel.open(path, key=KDF_KEY) as f:
        m = f.manifest
        if name == "sharded":  # an index (SPEC.md §5.10): max_shards counts its shard table
            assert len(m.shards) == 3
            need: int | None = len(m.shards)
        else:
            need = {
                "max_tensors": len(m.tensors),
                "max_blobs": len(m.blobs),
                "max_modules": len(m.modules),
                "max_module_paths": 4,  # the Sequential and its three children
                "max_chunks": sum(len(b.chunks) for b in m.blobs),
                "max_rank": max(len(t.shape) for t in m.tensors),
                "max_name_bytes": max(len(t.name.encode()) for t in m.tensors),
                "max_chunk_size": max(b.chunk_size for b in m.blobs),
                "decoded_slack": sum(b.nbytes for b in m.blobs),
                "max_total_bytes": sum(b.nbytes for b in m.blobs),
                "max_unsaved_bytes": 4000 if name == "main" else None,
                "max_found_names": 2 if name == "found" else None,  # two distinct names, FoundA twice
                "max_kdf_bytes": 128 * 2**10 * 8,
            }.get(field)
    if need is not None:
        assert hi == need  # limits are inclusive maxima of exactly what SPEC.md §8 says they count


def test_every_limit_was_exercised() -> None:
    assert {c[1] for c in CASES} == {f.name for f in dataclasses.fields(Limits)}


def test_open_takes_limits(files: dict[str, Path]) -> None:
    with pytest.raises(TModelError) as info:
        tmodel.open(files["main"], limits=Limits(max_tensors=2))
    assert info.value.code == "LIMIT_EXCEEDED"
    with tmodel.open(files["main"], limits=Limits(max_tensors=10**7)) as f:
        assert "zeros" in f


def _human(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB)):
        if n % size == 0 and n >= size:
            return f"{n // size} {unit}"
    return f"{n:,}" if n >= 10_000 else str(n)


def test_spec_lists_every_limit_with_its_default() -> None:
    spec = (ROOT / "SPEC.md").read_text(encoding="utf-8")
    section = spec[spec.index("## 8. Resource limits") : spec.index("## 9.")]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, re.MULTILINE))
    for f in dataclasses.fields(Limits):
        if f.name in DERIVED:
            continue
        assert rows[f.name].strip() == _human(getattr(DEFAULT_LIMITS, f.name)), f.name
    assert set(rows) == {f.name for f in dataclasses.fields(Limits)} - DERIVED
    d = DEFAULT_LIMITS
    top = d.max_total_bytes.bit_length() - 1
    formula = f"`min(2^{top}, {d.max_expansion} · file_size + {_human(d.decoded_slack)})`"
    assert f"| decoded size | {formula} |" in section
