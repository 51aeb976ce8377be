"""The attention math, shared by every version of the example layer (only the storage layout changed)."""

from __future__ import annotations

import math

import torch


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, temperature: torch.Tensor
) -> torch.Tensor:
    """Multi-head scaled dot-product attention over (batch, seq, dim) inputs."""
    b, s, d = q.shape
    split = [t.reshape(b, s, heads, d // heads).transpose(1, 2) for t in (q, k, v)]
    logits = split[0] @ split[1].transpose(-1, -2) / math.sqrt(d // heads) * temperature
    return (logits.softmax(-1) @ split[2]).transpose(1, 2).reshape(b, s, d)
