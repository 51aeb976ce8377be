"""A file controls no big cost of rebuilding: a built-in layer's config holding `device`, `dtype` or
`factory_kwargs` is BAD_CONFIG (SPEC.md Appendix A.1), and constructors that would run long for what the file
holds are stopped in the dry run (Appendix A.4), before any memory is spent."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import Any

import fuzz_mutators as fm
import pytest
import torch
from torch import nn

import tmodel
from tmodel.errors import TModelError


def _with_config(tmp_path: Path, module: nn.Module, extra: dict[str, Any]) -> Path:
    path = tmp_path / "m.tmodel"
    tmodel.save(module, path)
    parts = fm.split(path.read_bytes())
    region, wire = fm.layout(parts)
    wire["modules"][0]["config"].update(extra)
    path.write_bytes(fm.sign(parts.header, region, fm.encode(wire), parts.digest_name))
    return path


@pytest.mark.parametrize(
    "extra",
    [
        {"device": "cpu"},
        {"device": {"device": "cpu"}},
        {"dtype": {"dtype": "float64"}},
        {"factory_kwargs": {"dict": []}},
    ],
)
@pytest.mark.parametrize(
    "module", [nn.Linear(2, 3), nn.LSTM(2, 3), nn.Sequential()], ids=["linear", "lstm", "seq"]
)
def test_a_builtin_layers_config_may_not_place_tensors(tmp_path: Path, module: nn.Module, extra: Any) -> None:
    path = _with_config(tmp_path, module, extra)
    for where in ("cpu", "meta"):
        with pytest.raises(TModelError) as info:
            tmodel.load(path, map_location=where)
        assert info.value.code == "BAD_CONFIG"
        assert f"may not hold {next(iter(extra))!r}" in str(info.value)
        assert info.value.layer == f"torch.nn.{type(module).__name__}"


def test_the_same_file_without_the_key_loads(tmp_path: Path) -> None:
    module = nn.Linear(2, 3)
    path = _with_config(tmp_path, module, {})
    out = tmodel.load(path)
    assert torch.equal(out.weight, module.weight) and out.weight.device.type == "cpu"


@pytest.mark.parametrize(
    "module",
    [nn.RNN(2, 3), nn.LSTM(2, 3), nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 1)],
    ids=["rnn", "lstm", "transformer_encoder"],
)
def test_a_config_that_makes_a_constructor_loop_is_stopped_within_a_second(
    tmp_path: Path, module: nn.Module
) -> None:
    """`num_layers=10**7` over a file holding one layer: the dry run counts the constructors' torch calls
    against what the file holds and stops (LIMIT_EXCEEDED), before anything is built on a real device."""
    path = _with_config(tmp_path, module, {"num_layers": 10**7})
    began = time.perf_counter()  # timed without tracemalloc, which slows deep copies several times over
    with pytest.raises(TModelError) as info:
        tmodel.load(path)
    seconds = time.perf_counter() - began
    tracemalloc.start()
    try:
        with pytest.raises(TModelError) as again:
            tmodel.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.code == again.value.code == "LIMIT_EXCEEDED"
    assert "torch calls for what the file holds" in str(info.value)
    assert seconds < 5  # about 0.5 s unloaded; generous for a loaded CI machine
    assert peak < 64 << 20
