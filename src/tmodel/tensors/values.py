"""Plain Python values as manifest nodes: the rules that checkpoint trees and layer configs share
(SPEC.md §5.4): None, bool, 64-bit int, float, valid-Unicode str, bytes, torch dtypes, and from schema 3
bytearray, complex, torch.Size, torch.device, sets of scalars and numpy arrays and scalars. Each is matched
by its exact type: a subclass is not the type it derives from, and is refused where it is met."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import TModelError, UnsupportedType
from ..limits import DEFAULT_LIMITS
from ..manifest.encoding import INT_MAX, INT_MIN
from ..manifest.nodes import (
    PYTHON,
    BytearrayNode,
    ComplexNode,
    DeviceNode,
    DtypeNode,
    GradTensorRef,
    ModuleRef,
    NdarrayNode,
    NumpyScalarNode,
    ParameterRef,
    SetNode,
    SizeNode,
    TensorRef,
    fold,
    python_keys,
    scalar_identity,
)
from .arrays import ndarray_value, numpy_node, numpy_scalar_value
from .dtypes import VALUE_DTYPE_NAMES, torch_dtype

#: msgpack nesting the reader allows (SPEC.md §4)
MAX_DEPTH = DEFAULT_LIMITS.max_depth
#: returned by `plain_node` for anything that is not a plain value (a container, a tensor, a module ...)
NOT_PLAIN: Any = object()
_KIND_ORDER = {type(None): 0, bool: 1, int: 2, float: 3, str: 4, bytes: 5}


def room(path: str, depth: int) -> None:
    """Refuse, naming `path`, a node at msgpack level `depth` the reader would refuse (before recursing)."""
    if depth > MAX_DEPTH:
        raise UnsupportedType(f"{path}: nested deeper than a file may hold ({MAX_DEPTH} msgpack levels)")


def node_levels(node: Any) -> int:
    """msgpack levels a leaf node takes (1 for a scalar)."""
    level, most = [node], 0
    while level:
        most += 1
        level = [x for v in level for x in (v.values() if type(v) is dict else v if type(v) is list else ())]
    return most


def plain_node(v: Any, path: str, error: type[TModelError]) -> Any:
    """The node of a plain value, `error` naming `path` if it cannot be stored, or NOT_PLAIN."""
    kind = type(v)
    if v is None or kind in (bool, float, bytes):
        return v
    if kind is str:
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise error(f"{path}: string is not valid Unicode (a lone surrogate)") from None
        return v
    if kind is int:
        if not INT_MIN <= v <= INT_MAX:
            raise error(f"{path}: integer {v} does not fit in 64 bits")
        return v
    if kind is torch.dtype:
        if v not in VALUE_DTYPE_NAMES:
            raise error(f"{path}: dtype {v} is not in the format's dtype table")
        return {"dtype": VALUE_DTYPE_NAMES[v]}
    if kind is bytearray:
        return {"bytearray": bytes(v)}
    if kind is complex:
        return {"complex": [v.real, v.imag]}
    if kind is torch.Size:
        return {"size": list(v)}
    if kind is torch.device:
        return {"device": str(v)}
    if kind is set:
        return {"set": _set_elements(v, path, error)}
    node = numpy_node(v, path, error)
    return NOT_PLAIN if node is None else node


def _set_elements(v: set[Any], path: str, error: type[TModelError]) -> list[Any]:
    """A set's elements as scalar nodes in a canonical order, so that equal sets give equal bytes whatever
    Python's hash seed (SPEC.md §11): by kind, then value (floats by value, NaNs last by their bits)."""
    items = []
    for x in v:
        if x is not None and type(x) not in _KIND_ORDER:
            raise error(f"{path}: a set element of type {type(x).__name__} (sets of scalars only)")
        items.append(plain_node(x, f"{path} element {x!r}", error))
    if len({scalar_identity(x) for x in items}) != len(items):
        raise error(f"{path}: a set holding two NaNs with the same bits cannot be stored")

    def key(x: Any) -> tuple[int, Any]:
        if type(x) is float:
            return (_KIND_ORDER[float], (1, scalar_identity(x)[1]) if math.isnan(x) else (0, x))
        return (_KIND_ORDER[type(x)], 0 if x is None else x)

    return sorted(items, key=key)


def to_python(node: Any, tensor: Callable[[int], Any], module: Callable[[int], Any]) -> Any:
    """A validated tree as Python values: containers rebuilt, values made, tensor and module references
    through the callbacks (which may also refuse them). Parameter nodes of one tensor give one Parameter."""
    parameters: dict[int, nn.Parameter] = {}

    def parameter(ref: ParameterRef) -> nn.Parameter:
        index = ref.value.tensor
        if index not in parameters:
            t = tensor(index)
            grad = ref.value.requires_grad and (t.is_floating_point() or t.is_complex())
            parameters[index] = nn.Parameter(t, requires_grad=grad)
        return parameters[index]

    def leaf(n: Any) -> Any:
        kind = type(n)
        if kind is TensorRef:
            return tensor(n.tensor)
        if kind is ParameterRef:
            return parameter(n)
        if kind is GradTensorRef:
            t = tensor(n.tensor)
            return t.requires_grad_(True) if t.is_floating_point() or t.is_complex() else t
        if kind is ModuleRef:
            return module(n.module)
        if kind is DtypeNode:
            return torch_dtype(n.dtype, values=True)
        if kind is SetNode:
            python_keys(n.items, "set node elements")
            return set(n.items)
        if kind is BytearrayNode:
            return bytearray(n.value)
        if kind is ComplexNode:
            return complex(n.value[0], n.value[1])
        if kind is SizeNode:
            return torch.Size(n.value)
        if kind is DeviceNode:
            return _device(n.value)
        if kind is NdarrayNode:
            return ndarray_value(n.value)
        if kind is NumpyScalarNode:
            return numpy_scalar_value(n.value)
        return n

    return fold(node, leaf, PYTHON)


def _device(name: str) -> torch.device:
    """A device node's torch.device; UNSUPPORTED_TYPE for one this torch does not know (or would spell
    differently, e.g. an index beyond its range)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or str(device) != name:
        raise UnsupportedType(f"device {name!r} is not a device of torch {torch.__version__}")
    return device


def no_tensor(error: type[TModelError]) -> Callable[[int], Any]:
    """A tensor callback for `to_python` that refuses tensors: layer configs hold data, not tensors."""

    def refuse(index: int) -> Any:
        raise error("a layer config cannot hold a tensor")

    return refuse
