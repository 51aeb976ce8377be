"""Torch's side of the dtype table: derived from the format's table (`tmodel.manifest.dtypes`), never
listed again."""

from __future__ import annotations

import torch

from ..manifest.dtypes import DTYPES

TORCH_DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPES}
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in TORCH_DTYPES.items()}
