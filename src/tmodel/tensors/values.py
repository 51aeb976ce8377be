"""Plain Python values as manifest nodes: the rules that checkpoint trees and layer configs share
(SPEC.md §5.4): None, bool, 64-bit int, float, valid-Unicode str, bytes, torch dtypes, and from schema 3
bytearray, complex, torch.Size, torch.device, sets of keys and numpy arrays and scalars, from schema 4
torch.layout and torch.qscheme values and tuples of keys in sets. Each is matched by its exact type: a
subclass is not the type it derives from, and is refused where it is met."""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import TModelError, UnsupportedType
from ..limits import DEFAULT_LIMITS
from ..manifest.dtypes import extent
from ..manifest.encoding import INT_MAX, INT_MIN, pack_manifest
from ..manifest.nodes import (
    CONFIG_ONLY,
    LAYOUTS,
    PYTHON,
    QSCHEMES,
    TRAINING_STATE,
    BytearrayNode,
    ComplexNode,
    DeviceNode,
    DtypeNode,
    GradTensorRef,
    LayoutNode,
    MetaBody,
    MetaTensorNode,
    ModuleRef,
    NdarrayNode,
    NumpyScalarNode,
    ParameterRef,
    QschemeNode,
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


def room(path: str, depth: int, error: type[TModelError] = UnsupportedType) -> None:
    """Refuse, naming `path`, a node at msgpack level `depth` the reader would refuse (before recursing)."""
    if depth > MAX_DEPTH:
        raise error(f"{path}: nested deeper than a file may hold ({MAX_DEPTH} msgpack levels)")


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
    if kind is torch.layout:
        return _named(v, "layout", LAYOUTS, path, error)
    if kind is torch.qscheme:
        return _named(v, "qscheme", QSCHEMES, path, error)
    if kind is set:
        return {"set": _set_elements(v, path, error)}
    node = numpy_node(v, path, error)
    return NOT_PLAIN if node is None else node


def _named(v: Any, tag: str, names: tuple[str, ...], path: str, error: type[TModelError]) -> Any:
    """A layout or qscheme as `{tag: name}`, the name of `torch.<name>`."""
    name = str(v).removeprefix("torch.")
    if name not in names:
        raise error(f"{path}: {tag} {v} is not one the format names")
    return {tag: name}


_REPR = reprlib.Repr()
for _limit in ("maxtuple", "maxlist", "maxarray", "maxdict", "maxset", "maxfrozenset", "maxdeque"):
    setattr(_REPR, _limit, 1 << 30)
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = 1 << 30
_REPR.maxlevel = 16


def value_repr(v: Any) -> str:
    """`repr` for paths in messages, bounded in depth: a key nested thousands deep shows as `(...)` below
    16 levels rather than exhausting the stack."""
    return _REPR.repr(v)


def key_node(v: Any, path: str, error: type[TModelError], depth: int = 0) -> Any:
    """The node of a dict key or set element (SPEC.md §5.4) at msgpack level `depth`: a scalar, dtype,
    device, complex, Size, numpy scalar, layout, qscheme or a tuple of keys; `error` naming `path` for
    anything else, and for a key nested deeper than a file may hold."""
    room(path, depth, error)
    if type(v) is tuple:
        return {"tuple": [key_node(x, f"{path}[{i}]", error, depth + 2) for i, x in enumerate(v)]}
    node = plain_node(v, path, error)
    if node is NOT_PLAIN or (type(node) is dict and next(iter(node)) in ("set", "bytearray", "ndarray")):
        raise error(f"{path}: a key (or set element) of type {type(v).__name__} cannot be stored")
    return node


def _set_elements(v: set[Any], path: str, error: type[TModelError]) -> list[Any]:
    """A set's elements as key nodes in a canonical order, so that equal sets give equal bytes whatever
    Python's hash seed (SPEC.md §11): scalars by kind, then value (floats by value, NaNs last by their
    bits), then the other keys by their msgpack bytes."""
    items = [key_node(x, f"{path} element {value_repr(x)}", error) for x in v]
    if len({wire_identity(x) for x in items}) != len(items):
        raise error(f"{path}: a set holding two NaNs with the same bits cannot be stored")

    def key(x: Any) -> tuple[int, Any]:
        if type(x) is dict:
            return (len(_KIND_ORDER), pack_manifest(x))
        if type(x) is float:
            return (_KIND_ORDER[float], (1, scalar_identity(x)[1]) if math.isnan(x) else (0, x))
        return (_KIND_ORDER[type(x)], 0 if x is None else x)

    return sorted(items, key=key)


def wire_identity(wire: Any) -> Any:
    """A wire key's identity in the file (`key_identity` of its node)."""
    return scalar_identity(wire) if type(wire) is not dict else pack_manifest(wire)


def to_python(
    node: Any,
    tensor: Callable[[int], Any],
    module: Callable[[int], Any],
    meta: Callable[[MetaBody], Any] | None = None,
    reference: Callable[[Any, Callable[[Any], Any]], Any] | None = None,
    training: Callable[[Any, Callable[[Any], Any]], Any] | None = None,
) -> Any:
    """A validated tree as Python values: containers rebuilt, values made, tensor and module references
    and meta tensors through the callbacks (which may also refuse them; meta tensors are made by default).
    A config's ref, partial and object nodes go to `reference`, the object tree's optimizer and stateful
    nodes to `training`, with the conversion of their contents (each refused without its callback).
    Parameter nodes of one tensor give one Parameter."""
    make_meta = meta_tensor if meta is None else meta
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
            elements = [fold(x, leaf, PYTHON) for x in n.items]
            python_keys(elements, "set node elements")
            return set(elements)
        if kind is LayoutNode:
            return _torch_value(n.value, torch.layout, "layout")
        if kind is QschemeNode:
            return _torch_value(n.value, torch.qscheme, "qscheme")
        if kind is MetaTensorNode:
            return make_meta(n.value)
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
        if kind in CONFIG_ONLY:
            if reference is None:
                raise UnsupportedType("a ref, partial or object node outside a layer config")
            return reference(n, lambda x: fold(x, leaf, PYTHON))
        if kind in TRAINING_STATE:
            if training is None:
                raise UnsupportedType("an optimizer or stateful node outside the object tree")
            return training(n, lambda x: fold(x, leaf, PYTHON))
        return n

    return fold(node, leaf, PYTHON)


def _torch_value(name: str, kind: type, what: str) -> Any:
    """`torch.<name>` if it is a value of `kind`; UNSUPPORTED_TYPE for a name this torch lacks."""
    value = getattr(torch, name, None)
    if type(value) is not kind:
        raise UnsupportedType(f"{what} {name!r} is not a {what} of torch {torch.__version__}")
    return value


def meta_tensor(body: MetaBody) -> torch.Tensor:
    """A meta tensor of the node's dtype, shape, strides and storage offset (a Parameter if it was one)."""
    dtype = torch_dtype(body.dtype)
    base = torch.empty(body.offset + extent(1, body.shape, body.strides), dtype=dtype, device="meta")
    t = base.as_strided(body.shape, body.strides, body.offset)
    grad = body.requires_grad and (t.is_floating_point() or t.is_complex())
    if body.parameter:
        return nn.Parameter(t, requires_grad=grad)
    return t.requires_grad_(True) if grad else t


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


def no_tensor(error: type[TModelError]) -> Callable[[Any], Any]:
    """A tensor callback for `to_python` that refuses tensors: layer configs hold data, not tensors."""

    def refuse(index: Any) -> Any:
        raise error("a layer config cannot hold a tensor")

    return refuse
