"""Shared fixtures: one small, valid checkpoint file that several test modules read or damage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tmodel


def small_checkpoint() -> dict[str, object]:
    """Three storages, two codecs under "auto" (bytegroup-zstd for float32/int64, zstd for uint8/bool),
    compressible and incompressible chunks, a bool tensor, a tied tensor and a nested tree."""
    g = torch.Generator().manual_seed(0)
    w = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    return {
        "w": w,
        "w_tied": w,
        "noise": torch.randint(0, 256, (96,), dtype=torch.uint8, generator=g),
        "mask": torch.arange(40) % 3 == 0,
        "ids": torch.arange(12, dtype=torch.int64),
        "tree": {3: (1.5, None, b"\x00\x01"), "name": "small", "flags": [True, False]},
    }


@pytest.fixture(scope="session")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~1.5 KB valid file, written once per session; treat it as read-only (copy before damaging)."""
    path = tmp_path_factory.mktemp("small") / "small.tmodel"
    tmodel.save(small_checkpoint(), path, chunk_size=128, metadata={"purpose": "tests"})
    return path
