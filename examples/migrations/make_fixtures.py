"""How the frozen fixtures in fixtures/ were made: the example layers as they were at v1 and v2.

Run once per version (`python examples/migrations/make_fixtures.py v1`, then `... v2`, each in its own
process, since one process registers one version of a layer); it refuses to overwrite a fixture,
since frozen files are never regenerated. Each fixture holds the layer, an input, and the layer's output on
that input when it was written, so a test can check that today's code computes the same.
"""

from __future__ import annotations

import math
import os
import sys

import torch
from torch import nn

import tmodel

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from examples.migrations.attend import attend  # noqa: E402  (the math never changed, only the layout)


class AttentionV1(nn.Module):
    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Parameter(torch.randn(3 * dim, dim) / math.sqrt(dim))
        self.proj = nn.Parameter(torch.randn(dim, dim) / math.sqrt(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = x.shape[-1]
        w = self.qkv
        q, k, v = x @ w[:dim].T, x @ w[dim : 2 * dim].T, x @ w[2 * dim :].T
        return attend(q, k, v, self.n_heads, torch.ones(())) @ self.proj.T


class AttentionV2(nn.Module):
    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Parameter(torch.randn(dim, dim) / math.sqrt(dim))
        self.k = nn.Parameter(torch.randn(dim, dim) / math.sqrt(dim))
        self.v = nn.Parameter(torch.randn(dim, dim) / math.sqrt(dim))
        self.proj = nn.Parameter(torch.randn(dim, dim) / math.sqrt(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return attend(x @ self.q.T, x @ self.k.T, x @ self.v.T, self.n_heads, torch.ones(())) @ self.proj.T


class RunningNormV1(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.arange(dim, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.running_mean


class ScaleV1(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(0.5, 2.0, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


def _save(name: str, model: nn.Module, x: torch.Tensor) -> None:
    path = os.path.join(HERE, name)
    if os.path.exists(path):
        print(f"{path} is frozen; not rewritten", file=sys.stderr)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with torch.no_grad():
        y = model(x)
    tmodel.save({"model": model, "input": x, "output": y}, path)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    os.makedirs(HERE, exist_ok=True)
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8)
    if sys.argv[1:] == ["v1"]:
        tmodel.register("example.Attention", version=1)(AttentionV1)
        tmodel.register("example.RunningNorm", version=1)(RunningNormV1)
        tmodel.register("example.Scale", version=1)(ScaleV1)
        _save("example.Attention/v1.tmodel", AttentionV1(8, 2), x)
        _save("example.RunningNorm/v1.tmodel", RunningNormV1(8), x)
        _save("example.Scale/v1.tmodel", ScaleV1(8), x)
    elif sys.argv[1:] == ["v2"]:
        tmodel.register("example.Attention", version=2)(AttentionV2)
        _save("example.Attention/v2.tmodel", AttentionV2(8, 2), x)
    else:
        raise SystemExit("usage: make_fixtures.py v1|v2")
