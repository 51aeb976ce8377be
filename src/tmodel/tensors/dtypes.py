"""Torch's side of the dtype table: derived from the format's table (`tmodel.manifest.dtypes`) by name, never
listed again. The format's names are torch's attribute names; a name this torch lacks (an older release
has no `float8_e8m0fnu`, say) is simply absent here, so a file naming it is refused with a coded error
(`torch_dtype`) instead of failing inside torch."""

from __future__ import annotations

import torch

from ..errors import UnsupportedType
from ..manifest.dtypes import DTYPES, VALUE_DTYPES


def _present(names: tuple[str, ...] | list[str]) -> dict[str, torch.dtype]:
    return {n: d for n in names if isinstance(d := getattr(torch, n, None), torch.dtype)}


#: the dtypes tensors may have
TORCH_DTYPES: dict[str, torch.dtype] = _present(list(DTYPES))
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in TORCH_DTYPES.items()}
#: every dtype that may be a value in a tree or config: the tensor dtypes and VALUE_DTYPES
VALUE_TORCH_DTYPES: dict[str, torch.dtype] = {**TORCH_DTYPES, **_present(VALUE_DTYPES)}
VALUE_DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in VALUE_TORCH_DTYPES.items()}


def torch_dtype(name: str, values: bool = False) -> torch.dtype:
    """The torch dtype of a format dtype name (a validated manifest's: the name is in the table), or
    UNSUPPORTED_TYPE when this torch has no such dtype."""
    table = VALUE_TORCH_DTYPES if values else TORCH_DTYPES
    dtype = table.get(name)
    if dtype is None:
        raise UnsupportedType(f"dtype {name!r} does not exist in torch {torch.__version__}")
    return dtype


#: floating-point dtypes whose elements are packed pairs of values, which torch cannot cast
PACKED: frozenset[torch.dtype] = frozenset(d for n, d in TORCH_DTYPES.items() if n.endswith("_x2"))
