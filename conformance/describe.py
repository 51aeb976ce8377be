"""The canonical description of a .tmodel file: what any conforming reader must decode from it, as JSON.

Rules: tensors are listed in file order with name, dtype, shape and the sha256 of their elements' bytes
(C order, little-endian); `root` and `metadata` are tagged JSON: {"$list": [...]}, {"$tuple": [...]},
{"$dict": [[key, value], ...]}, {"$tensor": name}, {"$bytes": hex}, {"$float": "nan"|"inf"|"-inf"}; plain JSON
scalars stand for themselves. Every map is tagged, so no user key can be mistaken for a tag.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch

import tmodel
from tmodel.manifest import DictNode, ListNode, Manifest, TensorRef, TupleNode
from tmodel.tensors import host_view


def _value(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"$bytes": v.hex()}
    if isinstance(v, float) and not math.isfinite(v):
        return {"$float": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
    if isinstance(v, list):
        return {"$list": [_value(x) for x in v]}
    if isinstance(v, dict):
        return {"$dict": [[k, _value(x)] for k, x in v.items()]}
    return v


def _node(n: Any, m: Manifest) -> Any:
    if isinstance(n, TensorRef):
        return {"$tensor": m.tensors[n.tensor].name}
    if isinstance(n, ListNode):
        return {"$list": [_node(x, m) for x in n.items]}
    if isinstance(n, TupleNode):
        return {"$tuple": [_node(x, m) for x in n.items]}
    if isinstance(n, DictNode):
        return {"$dict": [[_value(k), _node(v, m)] for k, v in n.items]}
    return _value(n)


def tensor_sha256(t: torch.Tensor) -> str:
    """sha256 of the elements' bytes in C order (this machine is little-endian, as the format is)."""
    flat = t.contiguous()
    return hashlib.sha256(host_view(flat)).hexdigest()


def describe(path: str) -> dict[str, Any]:
    """Decode a file with the reference reader and describe it canonically."""
    with tmodel.open(path) as f:
        m = f.manifest
        tensors = [
            {
                "name": t.name,
                "dtype": t.dtype,
                "shape": list(t.shape),
                "sha256": tensor_sha256(f.get_tensor(t.name)),
            }
            for t in m.tensors
        ]
        return {
            "schema_version": m.schema_version,
            "tensors": tensors,
            "root": _node(m.root, m),
            "metadata": _value(dict(m.metadata)),
        }
