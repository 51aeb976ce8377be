"""The worked migration example (README "Writing a migration"): an attention layer that changed twice.

v1 stored one fused `qkv` weight; v2 split it into `q`, `k`, `v`; v3 renamed the config field `n_heads` to
`num_heads` and added a `temperature` buffer that defaults to 1. Files written by v1 and v2 load as v3 with
the same outputs. Two smaller layers show a buffer added (BatchNorm's `num_batches_tracked` story) and a
renamed parameter. Import this module (`tmodel migrate --import examples.migrations.attention ...`) to
register the layers and their steps.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel
from torch import nn

import tmodel
from tmodel.nn.steps import LayerRecord

from .attend import attend


class AttentionConfig(BaseModel):
    """The v3 config; every step into v3 is checked against it."""

    dim: int
    num_heads: int


@tmodel.register("example.Attention", version=3, config=AttentionConfig)
class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Parameter(torch.randn(dim, dim) / math.sqrt(dim))
        self.k = nn.Parameter(torch.randn(dim, dim) / math.sqrt(dim))
        self.v = nn.Parameter(torch.randn(dim, dim) / math.sqrt(dim))
        self.proj = nn.Parameter(torch.randn(dim, dim) / math.sqrt(dim))
        self.register_buffer("temperature", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (
            attend(x @ self.q.T, x @ self.k.T, x @ self.v.T, self.num_heads, self.temperature) @ self.proj.T
        )


@tmodel.migration(
    "example.Attention", from_version=1, downgrade=lambda rec: rec.merge(["q", "k", "v"], "qkv")
)
def split_qkv(rec: LayerRecord) -> None:
    """v1 -> v2: the fused (3·dim, dim) weight becomes three (dim, dim) weights."""
    dim = rec.config["dim"]
    rec.split("qkv", {"q": dim, "k": dim, "v": dim})


def _v3_to_v2(rec: LayerRecord) -> None:
    rec.config["n_heads"] = rec.config.pop("num_heads")
    rec.drop("temperature")


@tmodel.migration("example.Attention", from_version=2, downgrade=_v3_to_v2, config=AttentionConfig)
def rename_heads_add_temperature(rec: LayerRecord) -> None:
    """v2 -> v3: config `n_heads` is now `num_heads`; a `temperature` buffer appears, 1 by default."""
    rec.config["num_heads"] = rec.config.pop("n_heads")
    rec.add("temperature", torch.ones(()), kind="buffer")


@tmodel.register("example.RunningNorm", version=2)
class RunningNorm(nn.Module):
    """v2 added the `num_batches_tracked` buffer, as BatchNorm once did."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.running_mean


@tmodel.migration("example.RunningNorm", from_version=1)
def add_batch_counter(rec: LayerRecord) -> None:
    rec.add("num_batches_tracked", torch.tensor(0, dtype=torch.long), kind="buffer")


@tmodel.register("example.Scale", version=2)
class Scale(nn.Module):
    """v2 renamed the parameter `w` to `weight`."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


@tmodel.migration("example.Scale", from_version=1, downgrade=lambda rec: rec.rename("weight", "w"))
def rename_w(rec: LayerRecord) -> None:
    rec.rename("w", "weight")
