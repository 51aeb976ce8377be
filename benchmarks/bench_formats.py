"""The formats compared: one save and one load function each, called exactly as a user would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import safetensors.torch
import torch

import tmodel

# tmodel imports its torch layer (tmodel.api, pydantic manifest models) on first use of tmodel.save/load:
# ~0.13 s here. Pay it now, with the other imports, so the timings compare like with like.
_tm_save = tmodel.save
_tm_load_fn = tmodel.load


@dataclass(frozen=True)
class Format:
    name: str  # command-line key
    label: str  # table row label
    ext: str
    save: Callable[[dict[str, torch.Tensor], str], None]
    load: Callable[[str], Any]


def _torch_save(sd: dict[str, torch.Tensor], path: str) -> None:
    torch.save(sd, path)


def _torch_load(path: str) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def _st_save(sd: dict[str, torch.Tensor], path: str) -> None:
    safetensors.torch.save_file(sd, path)


def _st_load(path: str) -> Any:
    return safetensors.torch.load_file(path)


def _tm_raw_save(sd: dict[str, torch.Tensor], path: str) -> None:
    _tm_save(sd, path, codec="raw")


def _tm_auto_save(sd: dict[str, torch.Tensor], path: str) -> None:
    _tm_save(sd, path)


def _tm_load(path: str) -> Any:
    return _tm_load_fn(path)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("torch", "torch.save / torch.load", "pt", _torch_save, _torch_load),
        Format("safetensors", "safetensors save_file / load_file", "safetensors", _st_save, _st_load),
        Format("tmodel-raw", 'tmodel codec="raw"', "tmodel", _tm_raw_save, _tm_load),
        Format("tmodel", 'tmodel codec="auto" (compressed)', "tmodel", _tm_auto_save, _tm_load),
    )
}
