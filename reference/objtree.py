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

from .errors import BadName, ManifestSchemaError, UnsupportedType
from .limits import DEFAULT_LIMITS
from .manifest import DictNode, ListNode, Node, TensorRef, TupleNode, check_name
from .tensors import check_tensor

INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1
MAX_DEPTH = 40  # Python nesting levels; each takes up to three msgpack levels of the 128 allowed
ROOT = "checkpoint"


@dataclass
class Flattened:
    """The wire form of an object tree and the tensors it refers to, in order."""

    root: Any
    tensors: list[torch.Tensor] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def _key_repr(key: Any) -> str:
    if isinstance(key, str):
        return "[" + json.dumps(key, ensure_ascii=False) + "]"
    return f"[{key!r}]"


def flatten(obj: Any) -> Flattened:
    """Turn a checkpoint into its wire tree, collecting tensors and naming them."""
    out = Flattened(root=None)
    taken: set[str] = set()
    out.root = _flatten(obj, ROOT, (), out, taken, 0)
    return out


def _flatten(obj: Any, path: str, keys: tuple[str, ...], out: Flattened, taken: set[str], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise UnsupportedType(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if type(obj) is str:
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            raise UnsupportedType(f"{path}: string is not valid Unicode (a lone surrogate)") from None
        return obj
    if obj is None or type(obj) in (bool, bytes, float):
        return obj
    if type(obj) is int:
        if not INT_MIN <= obj <= INT_MAX:
            raise UnsupportedType(f"{path}: integer {obj} does not fit in 64 bits")
        return obj
    if isinstance(obj, torch.Tensor):
        check_tensor(obj, path)
        out.tensors.append(obj)
        out.names.append(_name(keys, len(out.names), taken))
        return {"tensor": len(out.tensors) - 1}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if k is not None and type(k) not in (bool, int, float, str, bytes):
                raise UnsupportedType(f"{path}: unsupported dict key type {type(k).__name__}")
            sub = _key_repr(k)
            items.append(
                [
                    _flatten(k, path + sub, keys, out, taken, depth + 1),
                    _flatten(v, path + sub, (*keys, str(k)), out, taken, depth + 1),
                ]
            )
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        tag = "list" if isinstance(obj, list) else "tuple"
        return {
            tag: [
                _flatten(v, f"{path}[{i}]", (*keys, str(i)), out, taken, depth + 1) for i, v in enumerate(obj)
            ]
        }
    if isinstance(obj, (bool, int, float, str, bytes)):  # subclasses: enums, numpy-free scalars and the like
        raise UnsupportedType(
            f"{path}: unsupported type {type(obj).__name__} (a subclass of {type(obj).__mro__[1].__name__})"
        )
    raise UnsupportedType(f"{path}: unsupported type {type(obj).__name__}")


def _name(keys: tuple[str, ...], index: int, taken: set[str]) -> str:
    candidate = ".".join(keys)
    try:
        check_name(candidate, DEFAULT_LIMITS)
        ok = candidate not in taken
    except BadName:
        ok = False
    if not ok:
        candidate = f"tensor.{index}"
        while candidate in taken:
            candidate += "_"
    taken.add(candidate)
    return candidate


def rebuild(root: Node, tensors: Sequence[torch.Tensor]) -> Any:
    """Turn a validated tree back into Python objects, tensors taken by index."""
    if isinstance(root, TensorRef):
        return tensors[root.tensor]
    if isinstance(root, ListNode):
        return [rebuild(v, tensors) for v in root.items]
    if isinstance(root, TupleNode):
        return tuple(rebuild(v, tensors) for v in root.items)
    if isinstance(root, DictNode):
        result = {k: rebuild(v, tensors) for k, v in root.items}
        if len(result) != len(root.items):
            raise ManifestSchemaError("dict node keys collide in Python (e.g. 1 and True)")
        return result
    return root
