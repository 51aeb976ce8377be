"""A file chooses nothing about where tensors are made: a built-in layer's config holding `device`, `dtype`
or `factory_kwargs` is BAD_CONFIG (SPEC.md Appendix A.1), before any memory is spent."""

from __future__ import annotations

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
