"""Refactors change no byte: a fixed object saves to the bytes recorded before the code was last moved
(hashes taken at commit 9c2c4a0, before the package moved under src/)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from torch import nn

import tmodel

RECORDED = {
    "auto": "7966df545e826db78794e0bbd940f7f0d9092beb7fb60578a7b9ec0617f86f62",
    "raw": "6928eadc6d8f4fbed3a443fdefde6a7a0db22776e0f5237dc195e6640e2dabd0",
}
DTYPES = ("float64", "float16", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool", "complex64")


def fixed_object() -> dict[str, object]:
    """Modules, views of one storage, a transpose, every codec path, a typed tree, empty and 0-d tensors."""
    g = torch.Generator().manual_seed(1234)
    torch.manual_seed(1234)
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.ReLU(), nn.Embedding(5, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    base = torch.arange(24, dtype=torch.float32)
    return {
        "model": model,
        "state": {"w": base.view(4, 6), "w_t": base.view(4, 6).t(), "half": base[:12]},
        "dtypes": {n: torch.arange(6).to(getattr(torch, n)) for n in DTYPES},
        "tree": {3: (1.5, None, b"\x00\x01"), "name": "fixed", "flags": [True, False], "dt": torch.float16},
        "empty": torch.empty(0, 3),
        "scalar": torch.tensor(2.5),
    }


@pytest.mark.parametrize("codec", sorted(RECORDED))
def test_fixed_object_saves_to_the_recorded_bytes(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "fixed.tmodel"
    tmodel.save(fixed_object(), path, codec=codec, chunk_size=64, metadata={"k": [1, 2.0, "x", None, b"b"]})
    assert hashlib.sha256(path.read_bytes()).hexdigest() == RECORDED[codec]
