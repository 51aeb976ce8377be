"""The valid cases: objects the reference writer saves, each with its options (make_cases.py writes them)."""

from __future__ import annotations

import collections
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from tmodel.tensors.dtypes import VALUE_TORCH_DTYPES
from tmodel.training import RNGState

from .freeze import all_dtypes


# -- valid cases ---------------------------------------------------------------------------------------------
def _base() -> dict[str, Any]:
    """blobs: 0 = w (float32, bytegroup-zstd, 2 chunks), 1 = v (float32, same), 2 = m (bool, zstd)."""
    return {
        "w": torch.arange(16, dtype=torch.float32),
        "v": torch.arange(16, dtype=torch.float32) * 2,
        "m": torch.tensor([True, False] * 8),
        "k": {1: "one", "s": (2.5, None)},
    }


def _views() -> dict[str, Any]:
    g = torch.Generator().manual_seed(3)
    w = torch.randn(6, 4, generator=g)
    return {"w": w, "w_tied": w, "w_t": w.t(), "rows": w[1:3], "col": w[:, 2], "diag": w.diagonal()}


def _large_metadata() -> dict[str, Any]:
    meta: dict[str, Any] = {f"k{i:05d}": i for i in range(10_000)}
    nested: Any = {"leaf": [1, "two", 3.0, None, b"\x04"]}
    for i in range(40):
        nested = {f"level{i}": nested, "n": i}
    meta["nested"] = nested
    meta["long"] = "x" * 100_000
    return meta


def _sequential() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    model.eval()
    return model


def _checkpoint_module() -> dict[str, Any]:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 2))
    return {"model": model, "step": 7, "optim": {"lr": 0.01, "momentum": [0.9, 0.99]}, "tag": "ckpt"}


def _torch_types() -> dict[str, Any]:
    """Schema version 3's kinds as a PyTorch checkpoint holds them: a state dict (an OrderedDict with
    _metadata) plain and with keep_vars, numpy RNG state, and every other type torch.load(weights_only=True)
    accepts."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    return {
        "state": model.state_dict(),
        "keep_vars": model.state_dict(keep_vars=True),
        "counter": collections.Counter("abracadabra"),
        "set": {3, "x", 1.5, None, b"k", False},
        "bytearray": bytearray(b"\x00ab"),
        "complex": [1.5 - 2j, complex(float("inf"), float("nan"))],
        "size": torch.Size([2, 0, 3]),
        "devices": (torch.device("cpu"), torch.device("cuda", 1)),
        "dtypes": [torch.float8_e8m0fnu, VALUE_TORCH_DTYPES["uint4"], torch.qint8],
        "requires_grad": torch.ones(2, requires_grad=True),
        "numpy_rng": np.random.RandomState(5).get_state(),
        "numpy": [np.arange(6, dtype=np.int16).reshape(2, 3), np.float32(1.5), np.bool_(True)],
    }


def _torch_types_v4() -> dict[str, Any]:
    """Schema version 4's kinds: keys beyond scalars, layouts, qschemes, meta tensors and a tensor's and a
    Parameter's Python attributes."""
    torch.manual_seed(3)
    t = torch.arange(4.0)
    t.note = {"unit": "m", "scale": 0.5}  # type: ignore[attr-defined]
    p = nn.Parameter(torch.ones(2))
    p.tags = [1, (2, torch.float16)]  # type: ignore[attr-defined]
    meta = torch.empty(4, 6, dtype=torch.bfloat16, device="meta").t()[1:]
    return {
        "keys": {(1, "a"): 1, ((1, 2), 3): 2, torch.float16: 3, torch.device("cpu"): 4, 1 - 2j: 5},
        "more_keys": collections.OrderedDict(
            {torch.Size([2]): 1, torch.strided: 2, torch.per_tensor_affine: 3}
        ),
        "counter": collections.Counter({(1,): 2}),
        "set": {(1, "x"), torch.int8, 2j, 3},
        "layouts": [torch.strided, torch.sparse_coo, torch.sparse_csr, torch.jagged],
        "qschemes": (torch.per_tensor_affine, torch.per_channel_symmetric),
        "meta": meta,
        "meta_parameter": nn.Parameter(torch.empty(2, 3, device="meta")),
        "attrs": t,
        "parameter_attrs": p,
    }


def _training_state() -> dict[str, Any]:
    """Schema version 6's training state: a model, an AdamW optimizer with one step's state and two parameter
    groups (the second over a layer without a bias), an LR scheduler, a gradient scaler and the random
    generators' states (seeded generators of their own, so the file depends on no global state), saved
    with the checkpoint layout version conformance.Trainer v2."""
    from tmodel.nn.checkpoint_steps import register_checkpoint

    register_checkpoint("conformance.Trainer", 2)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2, bias=False))
    groups: list[dict[str, Any]] = [
        {"params": model[0].parameters()},
        {"params": model[2].parameters(), "lr": 0.01},
    ]
    optim = torch.optim.AdamW(groups, lr=0.1, betas=(0.8, 0.9), weight_decay=0.05)
    sched = torch.optim.lr_scheduler.StepLR(optim, step_size=2, gamma=0.5)
    optim.step()  # no gradients: changes nothing, so the scheduler may step
    sched.step()
    # The state one AdamW step would leave, in exact binary fractions: a real step's float rounding
    # depends on the CPU's vector instructions, and the corpus must be the same bytes on every machine.
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            n = p.numel()
            p.copy_(((torch.arange(n) * 5 + i) % 17 - 8).reshape(p.shape) / 16)
            grad = ((torch.arange(n) * 3 + i) % 11 - 5).reshape(p.shape) / 32
            optim.state[p] = {"step": torch.tensor(1.0), "exp_avg": grad / 8, "exp_avg_sq": grad * grad / 16}
    rng = RNGState(
        torch.Generator().manual_seed(6).get_state(),
        random.Random(6).getstate(),
        np.random.RandomState(6).get_state(),
    )
    return {
        "model": model,
        "optim": optim,
        "sched": sched,
        "scaler": torch.amp.GradScaler("cpu"),
        "rng": rng,
        "epoch": 1,
    }


@dataclass(frozen=True)
class Valid:
    make: Callable[[], Any]
    spec: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    tier: str = "MUST"


VALID: dict[str, Valid] = {
    "base": Valid(
        _base,
        "§5.1, §6.3",
        "float32 blobs of two chunks (bytegroup-zstd), a bool blob (zstd), a small object tree",
        {"chunk_size": 32},
    ),
    "all_dtypes_raw": Valid(
        all_dtypes, "§5.3, §6.1", "every dtype, random bit patterns, codec raw", {"codec": "raw"}
    ),
    "all_dtypes_zstd": Valid(
        all_dtypes, "§5.3, §6.2", "every dtype, random bit patterns, codec zstd", {"codec": "zstd"}
    ),
    "all_dtypes_bytegroup": Valid(
        all_dtypes,
        "§5.3, §6.3",
        "every dtype, random bit patterns, codec bytegroup-zstd with the dtype's width",
        {"codec": "bytegroup-zstd"},
    ),
    "zeros_zstd": Valid(
        lambda: {"z": torch.zeros(4096, dtype=torch.uint8)},
        "§6.2, §6.4",
        "4096 zero bytes, codec zstd: one chunk holding one Zstandard frame",
        {"codec": "zstd"},
    ),
    "raw_one_blob": Valid(
        lambda: {"x": torch.arange(16, dtype=torch.float32)},
        "§3.3, §6.1",
        "one raw blob of 64 bytes at offset 64 (memory-mappable)",
        {"codec": "raw"},
    ),
    "chunk_edges": Valid(
        lambda: {
            "one_chunk": torch.arange(16, dtype=torch.int32),
            "one_byte_over": torch.arange(65, dtype=torch.uint8),
            "many": torch.arange(100, dtype=torch.float16),
        },
        "§5.1",
        "chunk size 64: a blob of exactly one chunk, one of one byte over (two chunks), one of many chunks",
        {"chunk_size": 64},
    ),
    "empty_and_scalar": Valid(
        lambda: {
            "scalar": torch.tensor(2.5),
            "scalar_int": torch.tensor(-3, dtype=torch.int64),
            "empty": torch.empty(0, 3),
            "empty_1d": torch.empty(0, dtype=torch.uint8),
            "empty_mid": torch.empty(2, 0, 4, dtype=torch.float16),
        },
        "§5.2",
        "0-d tensors and tensors with no elements (blob nil, offset 0)",
    ),
    "no_tensors": Valid(
        lambda: {"only": [1, "data", None]},
        "§3.3",
        "a file without blobs or tensors: the manifest starts at 64",
    ),
    "unicode_names": Valid(
        lambda: {
            "ключ": torch.ones(2),
            "名前.重み": torch.zeros(3, dtype=torch.int16),
            "emoji🙂": torch.ones(1, dtype=torch.uint8),
            "é": {"ü": torch.full((2,), 7, dtype=torch.int32)},
        },
        "§5.6",
        "non-ASCII tensor names and keys, names built from a nested key path",
        {},
        {"título": "ünï", "名": ["値", b"\xff"]},
    ),
    "large_metadata": Valid(
        lambda: {"x": torch.ones(1)},
        "§5.5, §8",
        "typed metadata of 10,000 entries, 40 levels of nesting and a 100,000-character string",
        {},
        _large_metadata(),
    ),
    "metadata_lookalikes": Valid(
        lambda: {"x": torch.ones(1)},
        "§5.5, §13",
        "metadata and object-tree strings that look like code, class paths, templates, URLs and paths: inert",
        {},
        {
            "class": "os.system",
            "code": "__import__('os').system('echo pwned')",
            "template": "{{ config.__class__.__init__.__globals__ }}",
            "url": "https://example.com/weights.bin",
            "path": "../../etc/passwd",
            "reduce": {"__reduce__": ["builtins.eval", "1+1"]},
            "tensor-like": {"tensor": 0},
        },
    ),
    "tied_and_views": Valid(
        _views,
        "§5.2, §11",
        "tied tensors and views of one storage (transpose, rows, column, diagonal) sharing one blob",
    ),
    "sha256_checksum": Valid(
        lambda: {"a": torch.arange(32, dtype=torch.float32), "b": torch.arange(5, dtype=torch.int64)},
        "§7",
        "sha256 for the manifest digest and the chunk digests",
        {"checksum": "sha256"},
    ),
    "blake3_checksum": Valid(
        lambda: {"a": torch.arange(32, dtype=torch.float32), "b": torch.arange(5, dtype=torch.int64)},
        "§7",
        "(schema 6) blake3 for the manifest digest and the chunk digests",
        {"checksum": "blake3"},
    ),
    "signed": Valid(
        lambda: {"a": torch.arange(32, dtype=torch.float32), "b": torch.arange(5, dtype=torch.int64)},
        "§3.4, §7",
        "(schema 6) two signatures (Ed25519 keys from fixed seeds: deterministic) over a blake3 file",
        {"checksum": "blake3", "sign_with": "conformance-key-1"},
    ),
    "model_sequential": Valid(
        _sequential,
        "§5.7",
        "an nn.Sequential of Linear and BatchNorm1d saved as a module (eval mode)",
    ),
    "checkpoint_module": Valid(
        _checkpoint_module,
        "§5.4, §5.7",
        "a checkpoint dict holding a module next to plain values",
    ),
    "torch_types": Valid(
        _torch_types,
        "§5.3, §5.4",
        "(schema 3) ordered_dict with _metadata, counter, set, bytearray, complex, size, device, parameter, "
        "requires_grad, ndarray and numpy_scalar nodes, value-only dtype names",
    ),
    "torch_types_v4": Valid(
        _torch_types_v4,
        "§5.4",
        "(schema 4) tuple, dtype, device, complex, size, layout and qscheme keys and set elements, layout, "
        "qscheme, meta_tensor and tensor_attrs nodes",
    ),
    "training_state": Valid(
        _training_state,
        "§5, §5.4",
        "(schema 6) an optimizer node (AdamW after a step, two parameter groups, a layer without a bias), "
        "stateful nodes of an LR scheduler, a gradient scaler and the random generators, and a checkpoint "
        "layout version (conformance.Trainer v2)",
        {"checkpoint": "conformance.Trainer"},
    ),
}
