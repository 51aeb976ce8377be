"""Freeze golden files of the current schema version: `python -m tmodel.conformance.freeze`.

Rules: run once per released schema version, before the version is bumped. It refuses to touch a version
whose folder exists: frozen files are never regenerated or edited, and SHA256SUMS only ever grows.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import random
import sys
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import tmodel
from tmodel.manifest.schema import SCHEMA_VERSION
from tmodel.tensors.dtypes import TORCH_DTYPES

from .describe import describe
from .suite import SUITE

GOLDEN = SUITE / "golden"
SUMS = GOLDEN / "SHA256SUMS"


def random_tensor(dtype: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Deterministic random bit patterns of any dtype (bool: 0 or 1)."""
    g = torch.Generator().manual_seed(seed)
    n = 1
    for d in shape:
        n *= d
    dt = TORCH_DTYPES[dtype]
    if dt == torch.bool:
        return (torch.randint(0, 2, (n,), generator=g) == 1).reshape(shape)
    raw = torch.randint(0, 256, (n * dt.itemsize,), generator=g, dtype=torch.uint8)
    return raw.view(dt).reshape(shape)


def all_dtypes() -> dict[str, torch.Tensor]:
    """One 3x5 tensor of every dtype."""
    return {name: random_tensor(name, (3, 5), i) for i, name in enumerate(TORCH_DTYPES)}


def _state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return {
        "embed.weight": torch.randn(64, 16, generator=g) * 0.02,
        "layers.0.weight": torch.randn(16, 16, generator=g).bfloat16(),
        "layers.0.bias": torch.zeros(16),
        "norm.num_batches_tracked": torch.tensor(12),
    }


def _checkpoint() -> dict[str, Any]:
    g = torch.Generator().manual_seed(3)
    w = torch.randn(6, 4, generator=g)
    return {
        "model": {
            "w": w,
            "w_tied": w,
            "w_t": w.t(),
            "rows": w[1:3],
            "scalar": torch.tensor(2.5),
            "empty": torch.empty(0, 3),
        },
        "optim": {
            "state": {0: {"step": 3, "exp_avg": torch.zeros(6, 4)}},
            "param_groups": [{"lr": 0.1, "params": [0]}],
        },
        "rng": (3, tuple(range(5)), None),
        "misc": [None, True, -(2**63), 2**64 - 1, 1.5, float("nan"), float("-inf"), "ünï", b"\x00\xff"],
        "ключ": {"": 1, 2.5: "float key", None: "none key", b"k": "bytes key"},
    }


def _model() -> dict[str, Any]:
    """Schema 2's content: module records (a tied weight, a child list, a buffer) and a dtype value."""
    g = torch.Generator().manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU())
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    model[1].eval()
    return {"model": model, "head": model[0], "dtype": torch.bfloat16, "step": 5}


def _torch_types() -> dict[str, Any]:
    """Schema 3's content: an OrderedDict with `_metadata`, Counter, set, bytearray, complex, Size, device,
    a Parameter and a tensor that requires grad."""
    g = torch.Generator().manual_seed(9)
    state: OrderedDict[str, Any] = OrderedDict(weight=torch.randn(3, 2, generator=g))
    state._metadata = OrderedDict({"": {"version": 1}})  # type: ignore[attr-defined]
    return {
        "state": state,
        "counts": Counter({"a": 2, 3: 1}),
        "set": {1, "x", 2.5, None},
        "bytearray": bytearray(b"\x00\x01"),
        "complex": complex(1.5, -2.0),
        "size": torch.Size([2, 3]),
        "device": torch.device("cpu"),
        "param": torch.nn.Parameter(torch.randn(2, generator=g)),
        "frozen": torch.nn.Parameter(torch.randn(2, generator=g), requires_grad=False),
        "grad": torch.randn(2, generator=g).requires_grad_(),
        "dtype": torch.complex32,
    }


def _torch_values() -> dict[str, Any]:
    """Schema 4's content: keys beyond scalars, a layout, a qscheme, a meta tensor and a tensor with
    Python attributes."""
    g = torch.Generator().manual_seed(11)
    tagged = torch.randn(3, generator=g)
    tagged.unit = "m"  # type: ignore[attr-defined]
    return {
        "keys": {(1, "a"): 1, torch.float16: "half", torch.device("cpu"): 2, complex(0.0, 1.0): 3},
        "tuple_set": {(1, 2), ("x",)},
        "layout": torch.sparse_coo,
        "qscheme": torch.per_channel_affine,
        "meta": torch.empty(4, 2, device="meta"),
        "tagged": tagged,
    }


@dataclasses.dataclass(frozen=True)
class _Widths:
    """A value type for the `configs` case (schema 5: a registered value type stored as data)."""

    inner: int
    outer: int


class _Inner(torch.nn.Module):
    """A child the parent's constructor builds: recorded by class name, version nil (schema 5)."""

    __module__ = "tmodel.conformance.freeze"  # the recorded name, however this file is run

    def __init__(self, n: int) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(n))


class _Block(torch.nn.Module):
    """Schema 5's content: a config holding a class reference, a partial of a function and a value type."""

    def __init__(self, widths: _Widths, norm: type, act: Any) -> None:
        super().__init__()
        self.widths, self.act_fn = widths, act
        self.proj = torch.nn.Linear(widths.inner, widths.outer)
        self.norm = norm(widths.outer)
        self.inner = _Inner(widths.outer)

    def get_config(self) -> dict[str, Any]:
        return {"widths": self.widths, "norm": type(self.norm), "act": self.act_fn}


def register_layers() -> None:
    """Register the layer and value types of the `configs` case, which a reader rebuilding its modules
    needs (the reference implementation calls this; PROTOCOL.md names them)."""
    from tmodel.nn import references, registry

    if not registry.known_name("conformance.Block"):
        tmodel.register("conformance.Block", version=2)(_Block)
        references.register_value_type(_Widths, "conformance.Widths")


def _configs() -> dict[str, Any]:
    register_layers()
    g = torch.Generator().manual_seed(13)
    act = functools.partial(torch.nn.functional.leaky_relu, negative_slope=0.25)
    block = _Block(_Widths(3, 2), torch.nn.LayerNorm, act)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return {"model": block}


def _metadata() -> dict[str, Any]:
    return {
        "str": "x",
        "int": -1,
        "uint": 2**64 - 1,
        "float": 0.1,
        "bool": False,
        "none": None,
        "bytes": b"\x01",
        "list": [1, "a", [2.0]],
        "map": {"nested": {"deep": [None]}},
    }


#: case name -> (object, save options, metadata)
CASES: dict[str, Callable[[], tuple[Any, dict[str, Any], dict[str, Any]]]] = {
    "state_dict_auto": lambda: (_state_dict(), {}, {"format": "state dict"}),
    "all_dtypes_raw": lambda: (all_dtypes(), {"codec": "raw"}, {}),
    "all_dtypes_zstd": lambda: (all_dtypes(), {"codec": "zstd"}, {}),
    "all_dtypes_bytegroup": lambda: (all_dtypes(), {"codec": "bytegroup-zstd"}, {}),
    "checkpoint_nested": lambda: (_checkpoint(), {}, _metadata()),
    "sha256_checksum": lambda: (_state_dict(), {"checksum": "sha256"}, {}),
    "chunk_edges": lambda: (
        {
            "one_chunk": torch.arange(16, dtype=torch.int32),
            "one_byte_over": torch.arange(17, dtype=torch.uint8),
            "many": torch.arange(100, dtype=torch.float16),
        },
        {"chunk_size": 64},
        {},
    ),
    "modules": lambda: (_model(), {}, {"format": "module"}),
    "torch_types": lambda: (_torch_types(), {}, {}),
    "torch_values": lambda: (_torch_values(), {}, {}),
    "configs": lambda: (_configs(), {}, {}),
}
#: cases whose content an older schema version cannot hold: the first version that freezes them
SINCE: dict[str, int] = {"torch_values": 4, "configs": 5}


def freeze(version: int = SCHEMA_VERSION) -> list[Path]:
    folder = GOLDEN / f"v{version}"
    if folder.exists():
        raise SystemExit(f"{folder} exists: golden files are frozen and never regenerated")
    folder.mkdir(parents=True)
    random.seed(0)
    written = []
    for name, make in CASES.items():
        if version < SINCE.get(name, 1):
            continue
        obj, options, metadata = make()
        path = folder / f"{name}.tmodel"
        tmodel.save(obj, path, metadata=metadata, **options)
        expect = folder / f"{name}.json"
        expect.write_text(json.dumps(describe(str(path)), indent=1, ensure_ascii=False) + "\n")
        written += [path, expect]
    with SUMS.open("a") as sums:
        for path in written:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            sums.write(f"{digest}  {path.relative_to(GOLDEN).as_posix()}\n")
    return written


if __name__ == "__main__":
    for p in freeze():
        print(p, file=sys.stderr)
