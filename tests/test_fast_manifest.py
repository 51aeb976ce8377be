"""The fast path of manifest validation (`tmodel.manifest.fast`): it proves the manifests tmodel writes,
and it never accepts what the strict path (`checks.read_manifest`) refuses, so every error keeps its code.
Mutated manifests (tests/fuzz_mutators.py) are re-encoded canonically, so that they reach the fast path's
checks rather than its canonical-encoding test."""

from __future__ import annotations

import collections
import random
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from fuzz_mutators import encode, mutate_chunks, mutate_manifest, split
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import tmodel
from tmodel.container.framing import TRAILER_SIZE
from tmodel.errors import TModelError
from tmodel.limits import DEFAULT_LIMITS, Limits
from tmodel.manifest.checks import read_manifest
from tmodel.manifest.encoding import pack_manifest
from tmodel.manifest.fast import prove
from tmodel.manifest.validated import read_validated


def _objects() -> dict[str, Any]:
    base = torch.arange(24, dtype=torch.float32)
    return {
        "state": {
            "w": torch.randn(3, 4),
            "b": torch.zeros(4, dtype=torch.bfloat16),
            "i": torch.arange(5),
            "empty": torch.zeros(0, 3),
            "scalar": torch.tensor(2.5),
            "mask": torch.tensor([True, False]),
            "view": base[2:10],
            "t": base.view(4, 6).t(),
            "e": torch.ones(1).expand(5),
        },
        "checkpoint": {
            "step": 7,
            "lr": [0.1, None, True, "x", b"y", (1, 2.0)],
            "sd": collections.OrderedDict(a=torch.ones(2), b=nn.Parameter(torch.zeros(3))),
            "dtype": torch.float16,
            "grad": torch.ones(2, requires_grad=True),
            3: {1.5: torch.ones(1), -1: "neg"},
        },
        "modules": {"model": nn.Sequential(nn.Linear(3, 2), nn.ReLU()), "extra": torch.ones(2)},
        "rich": {"set": {1, 2}, "device": torch.device("cpu"), "size": torch.Size([2, 3]), "c": 1 + 2j},
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = {}
    for name, obj in _objects().items():
        path = tmp_path_factory.mktemp("fast") / f"{name}.tmodel"
        tmodel.save(obj, path, metadata={"k": [1, {"n": None}]}, codec="raw" if name == "state" else "auto")
        out[name] = path.read_bytes()
    return out


def _region(data: bytes) -> tuple[bytes, int, int]:
    offset, length = struct.unpack_from("<QQ", data, len(data) - TRAILER_SIZE)
    return data[offset : offset + length], offset, len(data)


def _outcome(fn: Any) -> Any:
    """What `fn` returns, or the code of the TModelError it raises."""
    try:
        return fn()
    except TModelError as exc:
        return exc.code


@pytest.mark.parametrize("name", ["state", "checkpoint", "modules", "rich"])
def test_what_tmodel_writes_takes_the_fast_path(files: dict[str, bytes], name: str) -> None:
    """Every file the writer makes is proven by the fast path (a top-level field whose order in
    `schema.Manifest` differs from the order written would make this fail), and it reads back the same."""
    raw, offset, size = _region(files[name])
    proven = prove(raw, DEFAULT_LIMITS, offset, size)
    assert proven is not None
    fast = read_validated(raw, DEFAULT_LIMITS, offset, size).manifest
    strict = read_manifest(raw, DEFAULT_LIMITS, offset, size)[0]
    assert fast.to_wire() == strict.to_wire()
    assert pack_manifest(fast.to_wire()) == raw
    assert (proven.root is None) == (name in ("modules", "rich"))  # trees of other kinds take pydantic's


def test_a_valid_manifest_encoded_otherwise_takes_the_strict_path(files: dict[str, bytes]) -> None:
    """Keys in another order are valid (SPEC.md §4: SHOULD), but not canonical: declined, then read."""
    raw, offset, size = _region(files["state"])
    wire = split(files["state"]).wire
    shuffled = dict(reversed(list(wire.items())))
    other = pack_manifest(shuffled)
    size += len(other) - len(raw)
    assert prove(other, DEFAULT_LIMITS, offset, size) is None
    assert read_validated(other, DEFAULT_LIMITS, offset, size).manifest.to_wire() == wire


@pytest.mark.parametrize(
    "limits",
    [
        Limits(max_tensors=8),
        Limits(max_blobs=2),
        Limits(max_rank=1),
        Limits(max_name_bytes=4),
        Limits(max_depth=7),
        Limits(max_depth=5),
        Limits(max_chunk_size=8),
        Limits(max_chunks=2),
        Limits(max_modules=1),
        Limits(max_module_paths=1),
    ],
)
def test_tighter_limits_are_refused_with_the_strict_paths_code(
    files: dict[str, bytes], limits: Limits
) -> None:
    for data in files.values():
        _agree(*_region(data), limits)


def _agree(raw: bytes, offset: int, size: int, limits: Limits = DEFAULT_LIMITS) -> None:
    """The fast path declines whatever the strict path refuses, and the reader then reports the strict
    path's code; what both accept reads back the same."""
    strict = _outcome(lambda: pack_manifest(read_manifest(raw, limits, offset, size)[0].to_wire()))
    fast = prove(raw, limits, offset, size)
    if isinstance(strict, str):
        assert fast is None, f"the fast path accepted a manifest the strict path refuses [{strict}]"
        assert _outcome(lambda: read_validated(raw, limits, offset, size)) == strict
    elif fast is not None:  # compared encoded: a NaN is not equal to itself
        assert pack_manifest(read_validated(raw, limits, offset, size).manifest.to_wire()) == strict


def _check_agreement(data: bytes, rng: random.Random, chunks: bool) -> None:
    parts = split(data)
    _, offset, _ = _region(data)
    (mutate_chunks if chunks else mutate_manifest)(rng, parts)
    try:
        raw = encode(parts.wire)
    except (TypeError, ValueError, OverflowError):
        return
    _agree(raw, offset, offset + len(raw) + TRAILER_SIZE)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rng=st.randoms(use_true_random=False), name=st.sampled_from(["state", "checkpoint", "modules", "rich"])
)
def test_mutated_manifests_are_refused_with_the_strict_paths_code(
    files: dict[str, bytes], rng: random.Random, name: str
) -> None:
    _check_agreement(files[name], rng, chunks=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rng=st.randoms(use_true_random=False), name=st.sampled_from(["state", "checkpoint"]))
def test_mutated_chunk_tables_are_refused_with_the_strict_paths_code(
    files: dict[str, bytes], rng: random.Random, name: str
) -> None:
    _check_agreement(files[name], rng, chunks=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), name=st.sampled_from(["state", "checkpoint", "modules"]))
def test_flipped_manifest_bytes_are_refused_with_the_strict_paths_code(
    files: dict[str, bytes], data: st.DataObject, name: str
) -> None:
    """Byte edits of the encoded manifest (its digest not recomputed here: the manifest layer alone)."""
    raw, offset, size = _region(files[name])
    at = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255))
    _agree(raw[:at] + bytes([value]) + raw[at + 1 :], offset, size)


def test_a_file_of_many_chunks_a_blob_takes_the_strict_path(tmp_path: Path) -> None:
    """Chunk lists are held packed by the strict path; the fast path leaves such manifests to it."""
    path = tmp_path / "dense.tmodel"
    tmodel.save({"w": torch.zeros(4096, dtype=torch.uint8)}, path, chunk_size=1)
    raw, offset, size = _region(path.read_bytes())
    assert prove(raw, DEFAULT_LIMITS, offset, size) is None
    assert len(read_validated(raw, DEFAULT_LIMITS, offset, size).blobs[0].chunks) == 4096
