"""The reference implementation behind the conformance protocol (PROTOCOL.md): `python -m
tmodel.conformance.reference_impl` answers hello / read / write / bye on stdin and stdout."""

from __future__ import annotations

import base64
import json
import sys
from collections import Counter, OrderedDict
from typing import Any

import torch

import tmodel
from tmodel.errors import TModelError
from tmodel.manifest.nodes import MetaBody
from tmodel.migrations import CURRENT, OLDEST
from tmodel.tensors.dtypes import TORCH_DTYPES, VALUE_TORCH_DTYPES
from tmodel.tensors.values import meta_tensor

from .describe import describe, reader_options
from .freeze import register_layers


def _tensor(entry: dict[str, Any], data: str) -> torch.Tensor:
    raw = bytearray(base64.b64decode(data))
    dtype = TORCH_DTYPES[entry["dtype"]]
    flat = torch.frombuffer(raw, dtype=torch.uint8).clone() if raw else torch.empty(0, dtype=torch.uint8)
    return flat.view(dtype).reshape(entry["shape"])


def _value(v: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(v, dict):
        ((tag, inner),) = v.items()
        if tag == "$list":
            return [_value(x, tensors) for x in inner]
        if tag == "$tuple":
            return tuple(_value(x, tensors) for x in inner)
        if tag == "$dict":
            return {_value(k, tensors): _value(x, tensors) for k, x in inner}
        if tag == "$tensor":
            return tensors[inner]
        if tag == "$bytes":
            return bytes.fromhex(inner)
        if tag == "$float":
            return float(inner)
        if tag == "$dtype":
            return VALUE_TORCH_DTYPES[inner]
        if tag == "$ordered_dict":
            out: OrderedDict[Any, Any] = OrderedDict(
                (_value(k, tensors), _value(x, tensors)) for k, x in inner["items"]
            )
            for meta in inner["metadata"]:
                out._metadata = _value(meta, tensors)  # type: ignore[attr-defined]
            return out
        if tag == "$counter":
            counter: Counter[Any] = Counter()
            dict.update(counter, ((_value(k, tensors), _value(x, tensors)) for k, x in inner))
            return counter
        if tag == "$set":
            return {_value(x, tensors) for x in inner}
        if tag == "$bytearray":
            return bytearray.fromhex(inner)
        if tag == "$complex":
            return complex(_value(inner[0], tensors), _value(inner[1], tensors))
        if tag == "$size":
            return torch.Size(inner)
        if tag == "$device":
            return torch.device(inner)
        if tag == "$parameter":
            return torch.nn.Parameter(tensors[inner[0]], requires_grad=inner[1])
        if tag == "$requires_grad":
            return tensors[inner].requires_grad_(True)
        if tag in ("$ndarray", "$numpy_scalar"):
            import numpy

            flat = numpy.frombuffer(bytes.fromhex(inner["hex"]), dtype=numpy.dtype(inner["dtype"]))
            return flat.reshape(inner["shape"]).copy() if tag == "$ndarray" else flat[0]
        if tag in ("$layout", "$qscheme"):
            return getattr(torch, inner)
        if tag == "$meta_tensor":
            return meta_tensor(MetaBody.model_validate(inner))
        if tag == "$tensor_attrs":
            t = _value(inner["of"], tensors)
            for name, x in inner["attrs"]:
                t.__dict__[name] = _value(x, tensors)
            return t
        raise ValueError(f"unknown tag {tag}")
    return v


def _write(req: dict[str, Any]) -> dict[str, Any]:
    desc = req["description"]
    if desc.get("modules"):
        return {"ok": False, "error": "UNSUPPORTED"}
    tensors = {t["name"]: _tensor(t, req["data"][t["name"]]) for t in desc["tensors"]}
    tmodel.save(_value(desc["root"], tensors), req["path"], metadata=_value(desc["metadata"], tensors))
    return {"ok": True}


def handle(req: dict[str, Any]) -> dict[str, Any]:
    """One protocol request -> its response."""
    op = req.get("op")
    try:
        if op == "hello":
            return {
                "ok": True,
                "name": "tmodel-reference",
                "version": tmodel.__version__,
                "capabilities": ["read", "write", "modules", "encryption", "signatures"],
                "schema_versions": list(range(OLDEST, CURRENT + 1)),
            }
        if op == "read":
            options = reader_options(req)
            description = describe(req["path"], **options)
            if description.get("modules"):  # rebuilding is part of reading a model (SPEC.md §5.7)
                tmodel.load(req["path"], key=options.get("key"))
            return {"ok": True, "description": description}
        if op == "write":
            return _write(req)
        if op == "bye":
            return {"ok": True}
        return {"ok": False, "error": "UNSUPPORTED"}
    except TModelError as exc:
        return {"ok": False, "error": exc.code}


def main() -> None:
    register_layers()  # the golden `configs` case's own layer types
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.write(json.dumps(handle(req)) + "\n")
        sys.stdout.flush()
        if req.get("op") == "bye":
            return


if __name__ == "__main__":
    main()
