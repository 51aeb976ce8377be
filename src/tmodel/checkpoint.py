"""Checkpoint objects <-> the manifest's object tree (SPEC.md §5.4).

Rules: only dict / list / tuple / str / int / float / bool / None / bytes and tensors are saved; any other
value is refused with an error that names where it sits (e.g. `checkpoint["optim"]["state"][3]["foo"]`).
Tensor names are key paths joined with "." when that gives a valid, unique name, else `tensor.N`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import UnsupportedType
from .manifest.names import unique_name
from .manifest.nodes import Node
from .manifest.wire import ModuleWire
from .nn.records import ModuleBuilder, ModuleWriter
from .tensors.storage import check_tensor
from .tensors.values import NOT_PLAIN, plain_node, to_python

MAX_DEPTH = 40  # Python nesting levels; each takes up to three msgpack levels of the 128 allowed
ROOT = "checkpoint"


@dataclass
class Flattened:
    """The wire form of an object tree, the tensors it refers to in order, and its module records."""

    root: Any
    tensors: list[torch.Tensor] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    taken: set[str] = field(default_factory=set)
    modules: ModuleWriter | None = None

    def add_tensor(self, t: torch.Tensor, keys: tuple[str, ...], path: str) -> int:
        """Append a tensor named after its key path; returns its index."""
        check_tensor(t, path)
        self.tensors.append(t)
        self.names.append(unique_name(".".join(keys), len(self.names), self.taken))
        return len(self.tensors) - 1

    def records(self) -> list[ModuleWire]:
        return [] if self.modules is None else self.modules.records


def _key_repr(key: Any) -> str:
    if isinstance(key, str):
        return "[" + json.dumps(key, ensure_ascii=False) + "]"
    return f"[{key!r}]"


def flatten(obj: Any) -> Flattened:
    """Turn a checkpoint into its wire tree, collecting tensors and naming them."""
    out = Flattened(root=None)
    out.modules = ModuleWriter(out.add_tensor)
    out.root = _flatten(obj, ROOT, (), out, 0)
    return out


def _flatten(obj: Any, path: str, keys: tuple[str, ...], out: Flattened, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise UnsupportedType(f"{path}: nested deeper than {MAX_DEPTH} levels")
    node = plain_node(obj, path, UnsupportedType)
    if node is not NOT_PLAIN:
        return node
    if isinstance(obj, torch.Tensor):
        return {"tensor": out.add_tensor(obj, keys, path)}
    if isinstance(obj, nn.Module):
        assert out.modules is not None
        return {"module": out.modules.add(obj, keys, path)}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if k is not None and type(k) not in (bool, int, float, str, bytes):
                raise UnsupportedType(f"{path}: unsupported dict key type {type(k).__name__}")
            sub = _key_repr(k)
            items.append(
                [
                    _flatten(k, path + sub, keys, out, depth + 1),
                    _flatten(v, path + sub, (*keys, str(k)), out, depth + 1),
                ]
            )
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        tag = "list" if isinstance(obj, list) else "tuple"
        return {
            tag: [_flatten(v, f"{path}[{i}]", (*keys, str(i)), out, depth + 1) for i, v in enumerate(obj)]
        }
    if isinstance(obj, (bool, int, float, str, bytes)):  # subclasses: enums, numpy-free scalars and the like
        raise UnsupportedType(
            f"{path}: unsupported type {type(obj).__name__} (a subclass of {type(obj).__mro__[1].__name__})"
        )
    raise UnsupportedType(f"{path}: unsupported type {type(obj).__name__}")


def rebuild(root: Node, tensors: Sequence[torch.Tensor], modules: ModuleBuilder) -> Any:
    """Turn a validated tree back into Python objects: tensors taken by index, modules rebuilt."""
    return to_python(root, tensors.__getitem__, modules.rebuild)
