"""Checkpoint objects <-> the manifest's object tree (SPEC.md §5.4).

Rules: what `torch.load(weights_only=True)` accepts is saved with its type kept: dict, OrderedDict (with a
state dict's `_metadata`), Counter, list, tuple, set, str, int, float, complex, bool, None, bytes, bytearray,
torch.Size, torch.device, torch.dtype, tensors and nn.Parameters (with `requires_grad`); also modules and
numpy arrays and scalars; from schema 4 keys beyond scalars (tuples of keys, dtype, device, complex, Size,
numpy scalars, layouts, qschemes), layouts and qschemes, tensors' Python attributes and meta tensors
(without data). Types are matched exactly: a subclass (a defaultdict, a namedtuple, an IntEnum) is
refused rather than saved as its base. Any value that cannot be stored is refused with an error that names
where it sits (e.g. `checkpoint["optim"]["state"][3]["foo"]`), and so is nesting the reader would refuse.
Tensor names are key paths joined with "." when that gives a valid, unique name, else `tensor.N`.
A container used in several places is stored once per place, so an object whose expanded tree exceeds
`MAX_NODES` is refused, counted in time linear in its distinct containers before anything is expanded.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import UnsupportedType
from .limits import DEFAULT_LIMITS
from .manifest.names import unique_name
from .manifest.nodes import Node, OptimizerNode, StatefulNode
from .manifest.wire import ModuleWire
from .nn.records import ModuleBuilder, ModuleWriter
from .tensors.dtypes import DTYPE_NAMES
from .tensors.storage import check_tensor
from .tensors.values import (
    MAX_DEPTH,
    NOT_PLAIN,
    key_node,
    node_levels,
    plain_node,
    room,
    to_python,
    value_repr,
    wire_identity,
)
from .training import class_name, optimizer_params, state_dict_of, state_value, stateful

#: the root node sits at msgpack level 2, in the manifest's map (MAX_DEPTH: SPEC.md §4)
ROOT = "checkpoint"
#: nodes an expanded tree may have: each takes at least one byte of a manifest the reader accepts
MAX_NODES = DEFAULT_LIMITS.max_manifest_bytes
_MAPPING_TAGS: dict[type, str] = {dict: "dict", OrderedDict: "ordered_dict", Counter: "counter"}


@dataclass
class Flattened:
    """The wire form of an object tree, the tensors it refers to in order, and its module records."""

    root: Any
    tensors: list[torch.Tensor] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    taken: set[str] = field(default_factory=set)
    modules: ModuleWriter | None = None
    #: fills each optimizer node's body, run once every module is recorded (its parameters' records)
    pending: list[Callable[[], None]] = field(default_factory=list)

    def add_tensor(self, t: torch.Tensor, keys: tuple[str, ...], path: str) -> int:
        """Append a tensor named after its key path; returns its index."""
        check_tensor(t, path)
        self.tensors.append(t)
        self.names.append(unique_name(".".join(keys), len(self.names), self.taken))
        return len(self.tensors) - 1

    def records(self) -> list[ModuleWire]:
        return [] if self.modules is None else self.modules.records

    def libraries(self) -> dict[str, str]:
        """Library name -> version, for the integrations whose registrations the records use."""
        return {} if self.modules is None else dict(self.modules.libraries)


def _key_repr(key: Any) -> str:
    if isinstance(key, str):
        return "[" + json.dumps(key, ensure_ascii=False) + "]"
    return f"[{value_repr(key)}]"


def flatten(obj: Any) -> Flattened:
    """Turn a checkpoint into its wire tree, collecting tensors and naming them."""
    _check_expansion(obj)
    out = Flattened(root=None)
    out.modules = ModuleWriter(out.add_tensor)
    out.root = _flatten(obj, ROOT, (), out, 2)
    for fill in out.pending:  # an optimizer may come before the model that holds its parameters
        fill()
    return out


def _check_expansion(obj: Any) -> None:
    """UNSUPPORTED_TYPE when the tree `obj` expands to (shared containers once per place) has more than
    `MAX_NODES` nodes; sizes are memoised per container, so the count is linear in the object's size."""
    sizes: dict[int, int] = {}

    def size(node: Any, depth: int) -> int:
        kind = type(node)
        if kind is not list and kind is not tuple and kind not in _MAPPING_TAGS:
            return 1
        known = sizes.get(id(node))
        if known is not None:
            return known
        if depth > MAX_DEPTH:  # `_flatten` refuses it by its depth
            return 1
        inside = [*node.keys(), *node.values()] if kind in _MAPPING_TAGS else node
        total = 1 + sum(size(x, depth + 1) for x in inside)
        if kind is OrderedDict and hasattr(node, "_metadata"):
            total += size(node._metadata, depth + 1)
        if total > MAX_NODES:
            raise UnsupportedType(
                f"{ROOT}: the object expands to more than {MAX_NODES} nodes (a container used in several "
                "places is stored once per place)"
            )
        sizes[id(node)] = total
        return total

    size(obj, 0)


def _flatten(obj: Any, path: str, keys: tuple[str, ...], out: Flattened, depth: int) -> Any:
    """The node of `obj`, which sits at msgpack level `depth`."""
    room(path, depth)
    node = plain_node(obj, path, UnsupportedType)
    if node is not NOT_PLAIN:
        room(path, depth + node_levels(node) - 1)
        return node
    kind = type(obj)
    if isinstance(obj, torch.Tensor):
        attrs = getattr(obj, "__dict__", {})
        if not attrs:
            return _tensor(obj, path, keys, out, depth)
        room(path, depth + 3)  # the attrs' array of pairs
        pairs = []
        for name, v in attrs.items():
            if type(name) is not str:
                raise UnsupportedType(f"{path}: tensor attribute name {value_repr(name)} is not a string")
            sub = f"{path}.{name}"
            plain_node(name, sub, UnsupportedType)  # valid Unicode
            pairs.append([name, _flatten(v, sub, (*keys, name), out, depth + 4)])
        if any(type(n) is dict and "module" in n for n in _wire_nodes(pairs)):
            raise UnsupportedType(f"{path}: a tensor attribute cannot hold a module")
        return {"tensor_attrs": {"of": _tensor(obj, path, keys, out, depth + 2), "attrs": pairs}}
    if isinstance(obj, nn.Module):
        assert out.modules is not None
        room(path, depth + 1)
        return {"module": out.modules.add(obj, keys, path)}
    if isinstance(obj, torch.optim.Optimizer):
        return _optimizer(obj, path, keys, out, depth)
    state = stateful(obj)
    if state is not None:
        what, cls, value = state
        room(path, depth + 2)
        return {
            "stateful": {"kind": what, "class": cls, "state": _flatten(value, path, keys, out, depth + 2)}
        }
    if kind in _MAPPING_TAGS:
        inside = depth + (2 if kind is OrderedDict else 1)  # the level of the entries' array
        room(path, inside)
        items = []
        seen: set[Any] = set()
        for k, v in obj.items():
            sub = _key_repr(k)
            key = key_node(k, path + sub, UnsupportedType, inside + 2)
            if (identity := wire_identity(key)) in seen:  # only NaNs: distinct in Python, not by their bits
                raise UnsupportedType(
                    f"{path}: two NaN keys with the same bits cannot be stored (a file's keys are distinct "
                    "by their bits, SPEC.md §5.4)"
                )
            seen.add(identity)
            room(path + sub, inside + 1 + node_levels(key))
            items.append([key, _flatten(v, path + sub, (*keys, str(k)), out, inside + 2)])
        if kind is not OrderedDict:
            _check_attributes(obj, path, ())
            return {_MAPPING_TAGS[kind]: items}
        _check_attributes(obj, path, ("_metadata",))
        metadata = [
            _flatten(v, f"{path}._metadata", (*keys, "_metadata"), out, inside + 1)
            for v in ([obj._metadata] if hasattr(obj, "_metadata") else [])
        ]
        return {"ordered_dict": {"items": items, "metadata": metadata}}
    if kind is list or kind is tuple:
        tag = "list" if kind is list else "tuple"
        room(path, depth + 1)
        return {
            tag: [_flatten(v, f"{path}[{i}]", (*keys, str(i)), out, depth + 2) for i, v in enumerate(obj)]
        }
    base = next(
        (b for b in (bool, int, float, str, bytes, dict, list, tuple, set) if isinstance(obj, b)), None
    )
    if isinstance(obj, (torch.UntypedStorage, torch.TypedStorage)):
        raise UnsupportedType(
            f"{path}: a storage ({kind.__name__}) cannot be saved as a value; save a tensor"
        )
    if kind.__name__ == "tensortype":  # torch.FloatTensor and the other legacy tensor type objects
        raise UnsupportedType(f"{path}: legacy tensor type {obj.__module__}.{obj.__name__} cannot be saved")
    if base is not None:  # subclasses: enums, namedtuples, defaultdicts, numpy-free scalars and the like
        raise UnsupportedType(f"{path}: unsupported type {kind.__name__} (a subclass of {base.__name__})")
    raise UnsupportedType(f"{path}: unsupported type {kind.__name__}")


def _optimizer(
    opt: torch.optim.Optimizer, path: str, keys: tuple[str, ...], out: Flattened, depth: int
) -> dict[str, Any]:
    """An optimizer node; its parameters are keyed by record and local name once every module of the
    checkpoint is recorded (SPEC.md §5.4)."""
    room(path, depth + 4)  # node, body, params array, param map, then the state node
    body: dict[str, Any] = {"class": class_name(type(opt)), "groups": [], "params": []}
    writer = out.modules
    assert writer is not None

    def where(p: nn.Parameter) -> tuple[int, str, tuple[str, ...]] | None:
        return writer.parameters.get(id(p))

    def fill() -> None:
        groups, params = optimizer_params(opt, where, path)
        body["groups"] = [
            _flatten(g, f"{path}.param_groups[{i}]", (*keys, f"group{i}"), out, depth + 3)
            for i, g in enumerate(groups)
        ]
        for p in params:
            at = ".".join(p.keys)
            body["params"].append(
                {
                    "group": p.group,
                    "module": p.module,
                    "name": p.name,
                    "state": _flatten(p.state, f"{path}.state[{at!r}]", (*keys, at), out, depth + 4),
                }
            )

    out.pending.append(fill)
    return {"optimizer": body}


def _tensor(t: torch.Tensor, path: str, keys: tuple[str, ...], out: Flattened, depth: int) -> Any:
    """The reference node of a tensor at msgpack level `depth`: tensor, parameter, requires_grad, or a
    meta tensor's node (dtype, shape, strides and offset; no data)."""
    kind = type(t)
    if (
        t.is_meta
        and kind in (torch.Tensor, nn.Parameter)
        and t.layout == torch.strided
        and t.dtype in DTYPE_NAMES
    ):
        room(path, depth + 3)
        body = {
            "dtype": DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "strides": list(t.stride()),
            "offset": t.storage_offset(),
            "parameter": kind is nn.Parameter,
            "requires_grad": t.requires_grad,
        }
        return {"meta_tensor": body}
    index = out.add_tensor(t, keys, path)
    room(path, depth + (2 if kind is nn.Parameter else 1))
    if kind is nn.Parameter:
        return {"parameter": {"tensor": index, "requires_grad": t.requires_grad}}
    return {"requires_grad": index} if t.requires_grad else {"tensor": index}


def _wire_nodes(root: Any) -> list[Any]:
    """Every map and array under a wire tree (iteratively)."""
    stack, seen = [root], []
    while stack:
        v = stack.pop()
        seen.append(v)
        stack.extend(v.values() if type(v) is dict else v if type(v) is list else ())
    return seen


def _check_attributes(obj: Any, path: str, allowed: tuple[str, ...]) -> None:
    """A mapping's instance attributes are dropped by nothing: only those the format holds may be set."""
    extra = sorted(set(getattr(obj, "__dict__", ())) - set(allowed))
    if extra:
        raise UnsupportedType(f"{path}: {type(obj).__name__} attribute {extra[0]!r} cannot be saved")


def rebuild(root: Node, tensors: Sequence[torch.Tensor], modules: ModuleBuilder) -> Any:
    """Turn a validated tree back into Python objects: tensors taken by index, modules rebuilt."""
    return to_python(root, tensors.__getitem__, modules.rebuild, training=training_value)


def training_value(node: Any, convert: Callable[[Any], Any]) -> Any:
    """An optimizer node as the state dict torch's `state_dict()` gives (ids in the saved order), a
    stateful node as its state (an RNGState for the generators)."""
    if isinstance(node, OptimizerNode):
        body = node.value
        groups = [convert(g) for g in body.groups]
        return state_dict_of(groups, [(p.group, convert(p.state)) for p in body.params])
    assert isinstance(node, StatefulNode)
    return state_value(node.value.kind, convert(node.value.state))
