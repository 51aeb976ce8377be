"""Plain Python values as manifest nodes: the rules that checkpoint trees and layer configs share
(SPEC.md §5.4): None, bool, 64-bit int, float, valid-Unicode str, bytes, and torch dtypes of the table."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import TModelError
from .dtypes import DTYPE_NAMES

INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1
#: returned by `plain_node` for anything that is not a plain value (a container, a tensor, a module ...)
NOT_PLAIN: Any = object()


def plain_node(v: Any, path: str, error: type[TModelError]) -> Any:
    """The node of a plain value, `error` naming `path` if it cannot be stored, or NOT_PLAIN."""
    if v is None or type(v) in (bool, float, bytes):
        return v
    if type(v) is str:
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise error(f"{path}: string is not valid Unicode (a lone surrogate)") from None
        return v
    if type(v) is int:
        if not INT_MIN <= v <= INT_MAX:
            raise error(f"{path}: integer {v} does not fit in 64 bits")
        return v
    if isinstance(v, torch.dtype):
        if v not in DTYPE_NAMES:
            raise error(f"{path}: dtype {v} is not in the format's dtype table")
        return {"dtype": DTYPE_NAMES[v]}
    return NOT_PLAIN
