"""Builders registered as layer types, finders that register on first use, and the writer's
`tmodel.libraries` metadata key (SPEC.md §5.5, Appendix A.7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import tmodel
from tmodel.errors import TModelError
from tmodel.nn import registry

BUILT: list[dict[str, Any]] = []


def tiny_net(config: dict[str, Any]) -> nn.Module:
    BUILT.append(dict(config))
    return nn.Sequential(nn.Linear(config["width"], 3), nn.Tanh())


registry.register_builder("tests.builders.tiny_net", tiny_net, 1, library=("acme-zoo", "1.2.3"))


def made(width: int) -> nn.Module:
    """What an integration's wrapper does: build, then mark the model with its builder and arguments."""
    model = tiny_net({"width": width})
    registry.mark_built(model, "tests.builders.tiny_net", {"width": width})
    return model


def test_a_builder_record_is_its_name_and_arguments_and_rebuilds_through_it(tmp_path: Path) -> None:
    model = made(5)
    tmodel.save(model, tmp_path / "m.tmodel", metadata={"step": 3, "tmodel.libraries": {"x": "caller"}})
    with tmodel.open(tmp_path / "m.tmodel") as f:
        record = f.reader.manifest.to_wire()["modules"][0]
        assert (record["type"], record["version"], record["config"]) == (
            "tests.builders.tiny_net",
            1,
            {"width": 5},
        )
        assert f.metadata == {
            "step": 3,
            "tmodel.libraries": {"acme-zoo": "1.2.3"},
        }  # the writer's, not the caller's
    BUILT.clear()
    back = tmodel.load(tmp_path / "m.tmodel")
    assert BUILT[-1] == {"width": 5}  # the builder made it (a dry run on meta, then for real)
    assert type(back) is nn.Sequential and torch.equal(back[0].weight, model[0].weight)
    tmodel.save(back, tmp_path / "again.tmodel", metadata={"step": 3})  # marked too: it saves the same
    assert (tmp_path / "again.tmodel").read_bytes() == (tmp_path / "m.tmodel").read_bytes()


def test_a_file_without_integrations_has_no_libraries_key(tmp_path: Path) -> None:
    tmodel.save(nn.Linear(2, 2), tmp_path / "l.tmodel", metadata={"tmodel.libraries": {"x": "caller"}})
    with tmodel.open(tmp_path / "l.tmodel") as f:
        assert f.metadata == {}


def test_a_model_changed_after_its_builder_made_it_is_refused_at_save(tmp_path: Path) -> None:
    model = made(4)
    model[0] = nn.Linear(4, 7)
    with pytest.raises(TModelError) as info:
        tmodel.save(model, tmp_path / "changed.tmodel")
    assert info.value.code == "STATE_MISMATCH"
    assert not (tmp_path / "changed.tmodel").exists()


class Late(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.arange(3.0))


ASKED: list[str] = []


def _by_name(name: str) -> None:
    ASKED.append(name)
    if name == "tests.builders.Late" and not registry.is_registered_name(name):
        registry.register_class(Late, name, get_config=lambda m: {})


registry.add_finders(_by_name, lambda cls: _by_name("tests.builders.Late") if cls is Late else None)


def test_finders_register_a_class_on_first_use_when_saving_and_when_loading(tmp_path: Path) -> None:
    tmodel.save(nn.Sequential(Late()), tmp_path / "late.tmodel")  # the class finder registered it
    registry.unregister("tests.builders.Late")
    ASKED.clear()
    back = tmodel.load(tmp_path / "late.tmodel")  # the name finder registers it again
    assert "tests.builders.Late" in ASKED
    assert type(back[0]) is Late and torch.equal(back[0].w, torch.arange(3.0))
    with pytest.raises(TModelError) as info:
        registry.spec_for_name("tests.builders.Nothing", "here")
    assert info.value.code == "UNREGISTERED_TYPE"
