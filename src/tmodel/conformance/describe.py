"""The canonical description of a .tmodel file: what any conforming reader must decode from it, as JSON.

Rules: `schema_version` is the version the file was written as (older files are read through the chain);
tensors are listed in file order with name, dtype, shape and the sha256 of their elements' bytes (C order,
little-endian); `root`, `metadata` and module configs are tagged JSON: {"$list": [...]}, {"$tuple": [...]},
{"$dict": [[key, value], ...]}, {"$tensor": name}, {"$module": index}, {"$dtype": name}, {"$bytes": hex},
{"$float": "nan"|"inf"|"-inf"}; from schema 3 {"$ordered_dict": {"items": [[key, value], ...], "metadata":
[value] or []}}, {"$counter": [[key, value], ...]}, {"$set": [key, ...]} (in file order), {"$bytearray": hex},
{"$complex": [re, im]}, {"$size": [...]}, {"$device": name}, {"$parameter": [name, requires_grad]},
{"$requires_grad": name}, {"$ndarray": {"dtype", "shape", "hex"}}, {"$numpy_scalar": {"dtype", "hex"}}; from
schema 4 {"$layout": name}, {"$qscheme": name}, {"$meta_tensor": {...}}, {"$tensor_attrs": {"of", "attrs"}};
from schema 5 (configs) {"$ref": name}, {"$partial": {"ref", "args", "kwargs"}}, {"$object": {"type",
"data"}}; from schema 6 {"$optimizer": {"class", "groups": [value, ...], "params": [{"group", "module",
"name", "state"}, ...]}} and {"$stateful": {"kind", "class", "state"}}.
Plain JSON scalars stand for themselves. Every map whose keys could be a user's is tagged, so no user key can
be mistaken for a tag. `modules` is present when the file holds modules, `checkpoint` ({"type", "version"})
when the file records a checkpoint version (schema 6; a nil one is left out, as in every older file).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch

import tmodel
from tmodel.errors import InvalidArgument, SignatureRequired
from tmodel.manifest.nodes import (
    Build,
    BytearrayNode,
    ComplexNode,
    DeviceNode,
    DtypeNode,
    GradTensorRef,
    LayoutNode,
    MetaTensorNode,
    ModuleRef,
    NdarrayNode,
    NumpyScalarNode,
    ObjectNode,
    OptimizerNode,
    ParameterRef,
    PartialNode,
    QschemeNode,
    RefNode,
    SetNode,
    SizeNode,
    StatefulNode,
    TensorRef,
    fold,
)
from tmodel.manifest.schema import Manifest, ModuleRecord
from tmodel.tensors.memory import host_view


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


def _pairs(items: list[tuple[Any, Any]]) -> list[list[Any]]:
    return [[k, v] for k, v in items]


_TAGGED: Build[Any] = Build(
    lambda xs: {"$list": xs},
    lambda xs: {"$tuple": xs},
    lambda items: {"$dict": _pairs(items)},
    lambda items, meta: {"$ordered_dict": {"items": _pairs(items), "metadata": meta}},
    lambda items: {"$counter": _pairs(items)},
    lambda of, attrs: {"$tensor_attrs": {"of": of, "attrs": _pairs(attrs)}},
)


def _node(n: Any, m: Manifest) -> Any:
    def leaf(x: Any) -> Any:
        kind = type(x)
        if kind is TensorRef:
            return {"$tensor": m.tensors[x.tensor].name}
        if kind is ModuleRef:
            return {"$module": x.module}
        if kind is DtypeNode:
            return {"$dtype": x.dtype}
        if kind is ParameterRef:
            return {"$parameter": [m.tensors[x.value.tensor].name, x.value.requires_grad]}
        if kind is GradTensorRef:
            return {"$requires_grad": m.tensors[x.tensor].name}
        if kind is SetNode:
            return {"$set": [fold(k, leaf, _TAGGED) for k in x.items]}
        if kind is LayoutNode:
            return {"$layout": x.value}
        if kind is QschemeNode:
            return {"$qscheme": x.value}
        if kind is MetaTensorNode:
            return {"$meta_tensor": x.value.model_dump()}
        if kind is BytearrayNode:
            return {"$bytearray": x.value.hex()}
        if kind is ComplexNode:
            return {"$complex": [_value(p) for p in x.value]}
        if kind is SizeNode:
            return {"$size": list(x.value)}
        if kind is DeviceNode:
            return {"$device": x.value}
        if kind is NdarrayNode:
            return {
                "$ndarray": {"dtype": x.value.dtype, "shape": list(x.value.shape), "hex": x.value.data.hex()}
            }
        if kind is NumpyScalarNode:
            return {"$numpy_scalar": {"dtype": x.value.dtype, "hex": x.value.data.hex()}}
        if kind is RefNode:
            return {"$ref": x.ref}
        if kind is PartialNode:
            return {
                "$partial": {
                    "ref": x.value.ref,
                    "args": [fold(a, leaf, _TAGGED) for a in x.value.args],
                    "kwargs": [[k, fold(v, leaf, _TAGGED)] for k, v in x.value.kwargs],
                }
            }
        if kind is ObjectNode:
            return {"$object": {"type": x.value.type, "data": fold(x.value.data, leaf, _TAGGED)}}
        if kind is OptimizerNode:
            params = [
                {"group": p.group, "module": p.module, "name": p.name, "state": fold(p.state, leaf, _TAGGED)}
                for p in x.value.params
            ]
            groups = [fold(g, leaf, _TAGGED) for g in x.value.groups]
            return {"$optimizer": {"class": x.value.cls, "groups": groups, "params": params}}
        if kind is StatefulNode:
            state = fold(x.value.state, leaf, _TAGGED)
            return {"$stateful": {"kind": x.value.kind, "class": x.value.cls, "state": state}}
        return _value(x)

    return fold(n, leaf, _TAGGED)


def tensor_sha256(t: torch.Tensor) -> str:
    """sha256 of the elements' bytes in C order (this machine is little-endian, as the format is)."""
    flat = t.contiguous()
    return hashlib.sha256(host_view(flat)).hexdigest()


def reader_options(read_with: dict[str, Any]) -> dict[str, Any]:
    """`describe`'s keyword arguments for what a read request gives the reader (PROTOCOL.md): `key` as
    {"hex": 64 hex digits} (a raw key) or {"passphrase": str}, `trusted_keys` (hex key ids) and
    `require_signature` [INVALID_ARGUMENT when malformed]."""
    out: dict[str, Any] = {}
    key = read_with.get("key")
    if key is not None:
        if isinstance(key, dict) and set(key) == {"passphrase"} and isinstance(key["passphrase"], str):
            out["key"] = key["passphrase"]
        elif isinstance(key, dict) and set(key) == {"hex"} and isinstance(key["hex"], str):
            try:
                out["key"] = bytes.fromhex(key["hex"])
            except ValueError:
                raise InvalidArgument("key hex is not hex digits") from None
        else:
            raise InvalidArgument('key is {"hex": str} or {"passphrase": str}')
    trusted = read_with.get("trusted_keys")
    if trusted is not None:
        if not isinstance(trusted, list) or not all(isinstance(k, str) for k in trusted):
            raise InvalidArgument("trusted_keys is a list of hex key ids")
        out["trusted_keys"] = [k.lower() for k in trusted]
    required = read_with.get("require_signature", False)
    if not isinstance(required, bool):
        raise InvalidArgument("require_signature is a bool")
    if required:
        out["require_signature"] = True
    return out


def describe(
    path: str, key: Any = None, trusted_keys: list[str] | None = None, require_signature: bool = False
) -> dict[str, Any]:
    """Decode a file with the reference reader and describe it canonically. `key` opens an encrypted
    file; with `require_signature`, a signature by one of `trusted_keys` (hex key ids, SPEC.md §3.4) is
    required once the file is open, before any tensor is read [SIGNATURE_REQUIRED]."""
    with tmodel.open(path, key=key) as f:
        if require_signature:
            if trusted_keys is None:
                raise InvalidArgument("require_signature needs trusted_keys: anyone can sign a file")
            if not any(s.key_id in trusted_keys for s in f.reader.signatures):
                raise SignatureRequired("no signature by a trusted key")
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
        out: dict[str, Any] = {
            "schema_version": f.reader.source_schema_version,
            "tensors": tensors,
            "root": _node(m.root, m),
            "metadata": _value(dict(m.metadata)),
        }
        if m.modules:
            out["modules"] = [_module(r, m) for r in m.modules]
        if m.checkpoint is not None:
            out["checkpoint"] = {"type": m.checkpoint.type, "version": m.checkpoint.version}
        return out


def _module(r: ModuleRecord, m: Manifest) -> dict[str, Any]:
    name = {i: t.name for i, t in enumerate(m.tensors)}
    return {
        "type": r.type,
        "version": r.version,
        "config": {"$dict": [[k, _node(v, m)] for k, v in r.config.items()]},
        "parameters": {
            k: None if p is None else [name[p.tensor], p.requires_grad] for k, p in r.parameters.items()
        },
        "buffers": {k: None if b is None else name[b] for k, b in r.buffers.items()},
        "children": dict(r.children),
        "training": r.training,
    }
