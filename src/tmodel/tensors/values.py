"""Plain Python values as manifest nodes: the rules that checkpoint trees and layer configs share
(SPEC.md §5.4): None, bool, 64-bit int, float, valid-Unicode str, bytes, and torch dtypes of the table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..errors import TModelError
from ..manifest.encoding import INT_MAX, INT_MIN
from ..manifest.nodes import PYTHON, DtypeNode, ModuleRef, TensorRef, fold
from .dtypes import DTYPE_NAMES, TORCH_DTYPES

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


def to_python(node: Any, tensor: Callable[[int], Any], module: Callable[[int], Any]) -> Any:
    """A validated tree as Python values: containers rebuilt, dtypes resolved, tensor and module
    references through the callbacks (which may also refuse them)."""

    def leaf(n: Any) -> Any:
        kind = type(n)
        if kind is TensorRef:
            return tensor(n.tensor)
        if kind is ModuleRef:
            return module(n.module)
        if kind is DtypeNode:
            return TORCH_DTYPES[n.dtype]
        return n

    return fold(node, leaf, PYTHON)


def no_tensor(error: type[TModelError]) -> Callable[[int], Any]:
    """A tensor callback for `to_python` that refuses tensors: layer configs hold data, not tensors."""

    def refuse(index: int) -> Any:
        raise error("a layer config cannot hold a tensor")

    return refuse
