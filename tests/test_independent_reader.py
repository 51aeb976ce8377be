"""The independent reader (conformance/independent_reader.py, written from SPEC.md alone) agrees with the
reference: same canonical description for golden and freshly written files, same error code for damaged ones,
and it speaks the conformance protocol."""

from __future__ import annotations

import collections
import copy
import importlib.util
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from test_costs import _doubling_records

import tmodel
from tmodel.conformance import runner
from tmodel.conformance.describe import describe

ROOT = Path(__file__).resolve().parent.parent
READER = ROOT / "conformance" / "independent_reader.py"
GOLDEN = sorted((ROOT / "conformance" / "golden").glob("v*/*.tmodel"))

DTYPES = [
    torch.float64,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float8_e4m3fn,
    torch.float8_e4m3fnuz,
    torch.float8_e5m2,
    torch.float8_e5m2fnuz,
    torch.complex64,
    torch.complex128,
    torch.bool,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.uint16,
    torch.uint32,
    torch.uint64,
    torch.float8_e8m0fnu,
    torch.float4_e2m1fn_x2,
    torch.complex32,
    torch.bits8,
    torch.bits16,
    torch.bits1x8,
    torch.bits2x4,
    torch.bits4x2,
]


def _load_reader() -> ModuleType:
    spec = importlib.util.spec_from_file_location("independent_reader", READER)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ir = _load_reader()


def _json(x: Any) -> Any:
    return json.loads(json.dumps(x))


def _random_bits(dtype: torch.dtype, n: int, g: torch.Generator) -> torch.Tensor:
    if dtype == torch.bool:
        return torch.randint(0, 2, (n,), generator=g).bool()
    itemsize = torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (n * itemsize,), dtype=torch.uint8, generator=g)
    return raw.view(dtype)


def _all_dtypes() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {str(d).removeprefix("torch."): _random_bits(d, 37, g) for d in DTYPES}


def Net() -> torch.nn.Module:
    """Built-in layers only: a shared child, an unset bias, buffers (BatchNorm), nesting."""
    shared = torch.nn.Linear(4, 4)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 4),
        shared,
        torch.nn.ReLU(),
        shared,
        torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), torch.nn.BatchNorm1d(3)),
    )


def _torch_types() -> dict[str, Any]:
    """Every kind schema version 3 added (SPEC.md §5.4), as torch.save users have them."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    return {
        "state": model.state_dict(),
        "keep_vars": model.state_dict(keep_vars=True),
        "plain": collections.OrderedDict(a=1),
        "counter": collections.Counter("abracadabra"),
        "set": {3, "x", 1.5, None, b"k", False, float("nan")},
        "bytearray": bytearray(b"\x00ab"),
        "complex": [1.5 - 2j, complex(float("inf"), float("nan"))],
        "size": torch.Size([2, 0, -1]),
        "device": (torch.device("cpu"), torch.device("cuda", 1), torch.device("meta")),
        "dtypes": [torch.uint4, torch.int7, torch.qint8, torch.float8_e8m0fnu],
        "grad": torch.ones(3, requires_grad=True),
        "rng": np.random.RandomState(5).get_state(),
        "arrays": [
            np.arange(6, dtype=np.int16).reshape(2, 3),
            np.array(True),
            np.zeros((0, 2), np.complex64),
        ],
        "scalars": [np.float16(1.5), np.int64(-3), np.bool_(True), np.complex128(1j), np.uint8(7)],
    }


def _training() -> dict[str, Any]:
    """Schema version 6's training state (SPEC.md §5.4): a model, an AdamW of two parameter groups after a
    step (one layer without a bias: a nil parameter slot), an LR scheduler, a CPU gradient scaler and the
    random generators' states."""
    torch.manual_seed(4)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2, bias=False))
    groups = [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.01}]
    opt = torch.optim.AdamW(groups, lr=0.1, betas=(0.8, 0.9))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    model(torch.randn(5, 3)).square().sum().backward()
    opt.step()
    sched.step()
    from tmodel.training import rng_state

    return {
        "model": model,
        "optim": opt,
        "sched": sched,
        "scaler": torch.amp.GradScaler("cpu"),
        "off": torch.amp.GradScaler("cpu", enabled=False),
        "rng": rng_state(),
        "epoch": 1,
    }


def _objects() -> dict[str, tuple[Any, dict[str, Any]]]:
    g = torch.Generator().manual_seed(2)
    w = torch.randn(6, 8, generator=g)
    nested = {
        "w": w,
        "w_tied": w,
        "w_t": w.t(),
        "rows": w[1:5:2],
        "col": w[:, 3],
        "scalar": torch.tensor(2.5),
        "empty": torch.empty(0, 4),
        "tree": {3: (1.5, None, b"\x00\x01"), "nan": float("nan"), "flags": [True, False], 2.5: "x"},
        "big": [2**63 - 1, -(2**63), 2**64 - 1],
        "dtype": torch.bfloat16,
    }
    torch.manual_seed(3)
    return {
        "nested": (
            nested,
            {"metadata": {"step": 10, "tags": ["a", "b"], "blob": b"\xff", "inf": float("inf")}},
        ),
        "module": ({"model": Net(), "step": 3}, {}),
        "module_root": (Net().eval(), {}),
        "raw": (_all_dtypes(), {"codec": "raw"}),
        "zstd": (_all_dtypes(), {"codec": "zstd", "chunk_size": 64}),
        "bytegroup": (_all_dtypes(), {"codec": "bytegroup-zstd", "chunk_size": 48}),
        "auto_small_chunks": (_all_dtypes(), {"chunk_size": 16}),
        "compressible": ({"z": torch.zeros(3000), "a": torch.arange(5000)}, {"chunk_size": 1024}),
        "sha256": ({"x": torch.arange(100, dtype=torch.float32)}, {"checksum": "sha256", "chunk_size": 64}),
        "torch_types": (_torch_types(), {}),
        "training": (_training(), {}),
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("indep")
    out = {}
    for name, (obj, kw) in _objects().items():
        path = d / f"{name}.tmodel"
        tmodel.save(obj, path, **kw)
        out[name] = path
    return out


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    expected = json.loads(path.with_suffix(".json").read_text())
    assert _json(ir.read_description(str(path))) == expected


def test_reference_written(written: dict[str, Path]) -> None:
    for name, path in written.items():
        assert _json(ir.read_description(str(path))) == _json(describe(str(path))), name


def _code_of_reference(path: Path) -> str | None:
    try:
        tmodel.load(path)
    except tmodel.TModelError as e:
        return str(e.code)
    return None


def _code_of_reader(path: Path) -> str | None:
    try:
        ir.read_description(str(path))
    except ir.ReaderError as e:
        return str(e.code)
    return None


def _corruptions(data: bytes) -> dict[str, bytes]:
    m_off, m_len = struct.unpack_from("<QQ", data, len(data) - 64)

    def flip(at: int) -> bytes:
        b = bytearray(data)
        b[at] ^= 0x40
        return bytes(b)

    return {
        "bad_magic": flip(1),
        "empty": b"",
        "truncated_tail": data[:-10],
        "truncated_half": data[: len(data) // 2],
        "truncated_header": data[:5],
        "blob_byte": flip(64 + 5),
        "manifest_byte": flip(m_off + m_len // 2),
        "header_reserved": flip(20),
        "header_version": flip(8),
        "trailer_reserved": flip(len(data) - 64 + 20),
        "trailer_digest": flip(len(data) - 64 + 24),
        "end_magic": flip(len(data) - 2),
        "padding": flip(m_off - 1) if data[m_off - 1] == 0 else data,
        "trailing_bytes": data + b"\0" * 64,
    }


@pytest.mark.parametrize(
    "case", ["nested", "module", "zstd", "bytegroup", "sha256", "torch_types", "training"]
)
def test_corrupted_same_code(written: dict[str, Path], tmp_path: Path, case: str) -> None:
    data = written[case].read_bytes()
    for what, bad in _corruptions(data).items():
        path = tmp_path / f"{what}.tmodel"
        path.write_bytes(bad)
        ref = _code_of_reference(path)
        assert ref is not None or bad == data, what
        assert _code_of_reader(path) == ref, what


def test_not_regular_file(tmp_path: Path) -> None:
    assert _code_of_reader(tmp_path) == "NOT_REGULAR_FILE"
    fifo = tmp_path / "fifo.tmodel"
    os.mkfifo(fifo)
    assert _code_of_reader(fifo) == "NOT_REGULAR_FILE"  # without blocking on the FIFO
    assert _code_of_reader(tmp_path / "missing.tmodel") == "IO_ERROR"


def test_reader_imports_nothing_forbidden() -> None:
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('r', {str(READER)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in ('tmodel', 'torch', 'pydantic')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


def test_protocol(written: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.tmodel"
    bad.write_bytes(b"not a tmodel file at all" * 10)
    paths = [*GOLDEN, *written.values()]
    requests: list[dict[str, Any]] = [{"op": "hello"}]
    requests += [{"op": "read", "path": str(p)} for p in paths]
    requests += [
        {"op": "read", "path": str(bad)},
        {"op": "read", "path": str(tmp_path / "missing.tmodel")},
        {"op": "write", "path": str(tmp_path / "w.tmodel"), "description": {}, "data": {}},
        {"op": "frobnicate"},
        {"op": "bye"},
    ]
    stdin = "".join(json.dumps(r) + "\n" for r in requests) + "this line is never read\n"
    proc = subprocess.run(
        [sys.executable, str(READER)], input=stdin, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(requests), proc.stdout
    responses = [json.loads(line) for line in lines]
    hello = responses[0]
    assert (
        hello["ok"]
        and hello["capabilities"] == ["read"]
        and hello["schema_versions"] == [1, 2, 3, 4, 5, 6, 7]
    )
    for p, resp in zip(paths, responses[1 : 1 + len(paths)], strict=True):
        assert resp["ok"], (p, resp)
        if p.suffix == ".tmodel" and p.with_suffix(".json").exists():
            assert resp["description"] == json.loads(p.with_suffix(".json").read_text())
        else:
            assert resp["description"] == _json(describe(str(p)))
    tail = responses[1 + len(paths) :]
    assert tail[0] == {"ok": False, "error": "BAD_MAGIC"}
    assert tail[1] == {"ok": False, "error": "IO_ERROR"}
    assert tail[2] == {"ok": False, "error": "UNSUPPORTED"}
    assert tail[3] == {"ok": False, "error": "UNSUPPORTED"}
    assert tail[4] == {"ok": True}


def _resign(data: bytes, mutate: Any, *, raw_manifest: bytes | None = None) -> bytes:
    """Re-encode the manifest after `mutate(wire)` (or replace it by `raw_manifest`), digest recomputed."""
    import hashlib

    import msgpack
    import xxhash

    m_off, m_len, digest_id = struct.unpack_from("<QQH", data, len(data) - 64)
    if raw_manifest is None:
        wire = msgpack.unpackb(data[m_off : m_off + m_len], raw=False, strict_map_key=False)
        mutate(wire)
        raw_manifest = msgpack.packb(wire, use_bin_type=True)
    head = data[:64]
    t0 = struct.pack("<QQH", m_off, len(raw_manifest), digest_id) + bytes(6)
    body = head + raw_manifest + t0
    digest = xxhash.xxh3_64_digest(body) if digest_id == 1 else hashlib.sha256(body).digest()
    trailer = t0 + digest.ljust(32, b"\0") + b"TMODEND\n"
    return data[:m_off] + raw_manifest + trailer


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def mutate(w: Any) -> None:
        for p in path[:-1]:
            w = w[p]
        w[path[-1]] = value

    return mutate


def _as_v(w: dict[str, Any], version: int, **changes: Any) -> None:
    """Make a current manifest one of an older schema version: renumbered, without the keys versions 6 and 7
    added (`checkpoint` and `shards`, nil and empty in every file the tests write), with `changes` applied."""
    if version < 7:
        del w["shards"]
    if version < 6:
        del w["checkpoint"]
    w.update(schema_version=version, **changes)


def _delete(path: tuple[Any, ...]) -> Any:
    def mutate(w: Any) -> None:
        for p in path[:-1]:
            w = w[p]
        del w[path[-1]]

    return mutate


MANIFEST_EDITS: dict[str, Any] = {
    "schema_8": _set(("schema_version",), 8),
    "schema_0": _set(("schema_version",), 0),
    "schema_bool": _set(("schema_version",), True),
    "schema_float": _set(("schema_version",), 2.0),
    "required_feature": _set(("required_features",), ["org.example.x"]),
    "extra_key": _set(("surprise",), 1),
    "missing_metadata": _delete(("metadata",)),
    "checksum_md5": _set(("checksum",), "md5"),
    "codec_lz4": _set(("blobs", 0, "codec"), "lz4"),
    "blob_offset": _set(("blobs", 0, "offset"), 128),
    "blob_length": _set(("blobs", 0, "length"), 1),
    "blob_nbytes_float": _set(("blobs", 0, "nbytes"), 4.0),
    "chunk_size_zero": _set(("blobs", 0, "chunk_size"), 0),
    "chunk_size_huge": _set(("blobs", 0, "chunk_size"), 1 << 40),
    "width_3": _set(("blobs", 0, "width"), 3),
    "digest_short": _set(("blobs", 0, "chunks", 0, "digest"), b"\0"),
    "digest_str": _set(("blobs", 0, "chunks", 0, "digest"), "00000000"),
    "dtype_float128": _set(("tensors", 0, "dtype"), "float128"),
    "name_slash": _set(("tensors", 0, "name"), "a/b"),
    "name_dotdot": _set(("tensors", 0, "name"), "a..b"),
    "name_empty": _set(("tensors", 0, "name"), ""),
    "name_control": _set(("tensors", 0, "name"), "a\x01"),
    "name_long": _set(("tensors", 0, "name"), "x" * 1025),
    "name_dup": lambda w: w["tensors"][1].__setitem__("name", w["tensors"][0]["name"]),
    "shape_beyond": _set(("tensors", 0, "shape"), [10**6]),
    "shape_negative": _set(("tensors", 0, "shape"), [-1]),
    "strides_count": _set(("tensors", 0, "strides"), [1, 1, 1, 1, 1]),
    "rank_65": lambda w: w["tensors"][0].update(shape=[1] * 65, strides=[0] * 65),
    "offset_odd": _set(("tensors", 0, "offset"), 1),
    "blob_none": _set(("tensors", 0, "blob"), None),
    "blob_out_of_range": _set(("tensors", 0, "blob"), 99),
    "overflow": lambda w: w["tensors"][0].update(shape=[2**32, 2**32], strides=[0, 0]),
    "root_bad_tag": _set(("root",), {"class": "os.system"}),
    "root_two_keys": _set(("root",), {"list": [], "tuple": []}),
    "root_bare_array": _set(("root",), [1, 2]),
    "root_tensor_range": _set(("root",), {"tensor": 999}),
    "root_module_range": _set(("root",), {"module": 999}),
    "root_dtype_unknown": _set(("root",), {"dtype": "float128"}),
    "root_dict_dup_keys": _set(("root",), {"dict": [["a", 1], ["a", 2]]}),
    "root_dict_triple": _set(("root",), {"dict": [["a", 1, 2]]}),
    "root_dict_key_list": _set(("root",), {"dict": [[[1], 1]]}),
    "metadata_not_map": _set(("metadata",), [1]),
    "nbytes_0": _set(("blobs", 0, "nbytes"), 0),
    "width_0": _set(("blobs", 0, "width"), 0),
    "width_17": _set(("blobs", 0, "width"), 17),
    "blob_offset_negative": _set(("blobs", 0, "offset"), -64),
    "blob_length_plus_1": lambda w: w["blobs"][0].__setitem__("length", w["blobs"][0]["length"] + 1),
    "strides_negative": _set(("tensors", 0, "strides"), [-1, 1]),
    "tensor_offset_negative": _set(("tensors", 0, "offset"), -4),
    "tensor_blob_negative": _set(("tensors", 0, "blob"), -1),
    "segment_0": _set(("blobs", 0, "chunks", 0, "segments"), [0]),
    "segment_negative": _set(("blobs", 0, "chunks", 0, "segments"), [-1]),
    "chunk_extra": lambda w: w["blobs"][0]["chunks"].append(w["blobs"][0]["chunks"][0]),
    "root_tensor_negative": _set(("root",), {"tensor": -1}),
    "root_keys_true_1": _set(("root",), {"dict": [[1, 1], [True, 2]]}),
    "root_keys_1_1.0": _set(("root",), {"dict": [[1, 1], [1.0, 2]]}),
    "required_features_str": _set(("required_features",), "x"),
}

# SPEC.md §5.4, schema version 3's nodes: what each must be, edited into a file with two tensors
V3_NODE_EDITS: dict[str, Any] = {
    "ordered_dict_extra_key": {"ordered_dict": {"items": [], "metadata": [], "x": []}},
    "ordered_dict_missing_metadata": {"ordered_dict": {"items": []}},
    "ordered_dict_two_metadata": {"ordered_dict": {"items": [], "metadata": [1, 2]}},
    "ordered_dict_items_map": {"ordered_dict": {"items": {"a": 1}, "metadata": []}},
    "ordered_dict_dup_keys": {"ordered_dict": {"items": [["a", 1], ["a", 2]], "metadata": []}},
    "ordered_dict_key_list": {"ordered_dict": {"items": [[[1], 1]], "metadata": []}},
    "ordered_dict_metadata_tensor_range": {"ordered_dict": {"items": [], "metadata": [{"tensor": 99}]}},
    "counter_triple": {"counter": [["a", 1, 2]]},
    "counter_keys_1_true": {"counter": [[1, 1], [True, 2]]},
    "set_not_array": {"set": "abc"},
    "set_list_element": {"set": [[1]]},
    "set_node_element": {"set": [{"tensor": 0}]},
    "set_duplicates": {"set": [1, 1]},
    "set_nan_duplicates": {"set": [float("nan"), float("nan")]},
    "set_1_and_1.0": {"set": [1, 1.0]},
    "bytearray_str": {"bytearray": "ab"},
    "complex_ints": {"complex": [1, 2]},
    "complex_one_part": {"complex": [1.0]},
    "complex_three_parts": {"complex": [1.0, 2.0, 3.0]},
    "size_float": {"size": [2.0]},
    "size_bool": {"size": [True]},
    "size_uint64": {"size": [2**63]},
    "device_upper": {"device": "CUDA"},
    "device_leading_zero": {"device": "cuda:01"},
    "device_path": {"device": "../cpu"},
    "device_long": {"device": "a" * 65},
    "device_newline": {"device": "cpu\n"},
    "parameter_range": {"parameter": {"tensor": 99, "requires_grad": True}},
    "parameter_grad_int": {"parameter": {"tensor": 0, "requires_grad": 1}},
    "parameter_bare_int": {"parameter": 0},
    "parameter_extra_key": {"parameter": {"tensor": 0, "requires_grad": True, "x": 1}},
    "requires_grad_range": {"requires_grad": 99},
    "requires_grad_bool": {"requires_grad": True},
    "ndarray_dtype_bfloat16": {"ndarray": {"dtype": "bfloat16", "shape": [1], "data": b"\0\0"}},
    "ndarray_dtype_unknown": {"ndarray": {"dtype": "float128", "shape": [1], "data": bytes(16)}},
    "ndarray_short_data": {"ndarray": {"dtype": "uint32", "shape": [2], "data": bytes(7)}},
    "ndarray_long_data": {"ndarray": {"dtype": "uint8", "shape": [], "data": bytes(2)}},
    "ndarray_bool_2": {"ndarray": {"dtype": "bool", "shape": [2], "data": b"\x01\x02"}},
    "ndarray_rank_65": {"ndarray": {"dtype": "uint8", "shape": [1] * 65, "data": b"\0"}},
    "ndarray_overflow": {"ndarray": {"dtype": "uint8", "shape": [2**32, 2**32, 0], "data": b""}},
    "ndarray_negative_dim": {"ndarray": {"dtype": "uint8", "shape": [-1], "data": b""}},
    "ndarray_missing_shape": {"ndarray": {"dtype": "uint8", "data": b""}},
    "numpy_scalar_short": {"numpy_scalar": {"dtype": "float64", "data": bytes(4)}},
    "numpy_scalar_bool_2": {"numpy_scalar": {"dtype": "bool", "data": b"\x02"}},
    "numpy_scalar_dtype_complex32": {"numpy_scalar": {"dtype": "complex32", "data": bytes(4)}},
    "numpy_scalar_shape": {"numpy_scalar": {"dtype": "uint8", "shape": [], "data": b"\0"}},
    "dtype_value_only_ok_but_as_tensor": None,  # see test_value_only_dtype_is_not_a_tensor_dtype
}
V3_VALID_NODES: dict[str, Any] = {
    "ordered_dict_metadata": {"ordered_dict": {"items": [["a", {"tensor": 0}]], "metadata": [{"dict": []}]}},
    "counter": {"counter": [["a", 3], [None, {"list": []}]]},
    "set_mixed": {"set": [None, False, 1, 2.5, "", b""]},
    "set_nans_differ": {"set": [float("nan"), struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]]},
    "complex_nan": {"complex": [float("nan"), float("-inf")]},
    "size_extremes": {"size": [-(2**63), 2**63 - 1, 0]},
    "device_index": {"device": "privateuseone:9"},
    "parameter": {"parameter": {"tensor": 1, "requires_grad": False}},
    "requires_grad": {"requires_grad": 0},
    "ndarray_empty": {"ndarray": {"dtype": "float64", "shape": [0, 5], "data": b""}},
    "ndarray_0d_bool": {"ndarray": {"dtype": "bool", "shape": [], "data": b"\x01"}},
    "numpy_scalar": {"numpy_scalar": {"dtype": "complex64", "data": bytes(8)}},
    "dtype_value_only": {"dtype": "quint4x2"},
}
V3_NODE_EDITS.pop("dtype_value_only_ok_but_as_tensor")


@pytest.mark.parametrize("edit", sorted(V3_NODE_EDITS))
def test_v3_node_edits_same_code(written: dict[str, Path], tmp_path: Path, edit: str) -> None:
    path = tmp_path / "edited.tmodel"
    root = {"dict": [["x", {"list": [V3_NODE_EDITS[edit]]}]]}
    path.write_bytes(_resign(written["sha256"].read_bytes(), _set(("root",), root)))
    ref = _code_of_reference(path)
    assert ref is not None
    assert _code_of_reader(path) == ref


@pytest.mark.parametrize("node", sorted(V3_VALID_NODES))
def test_v3_nodes_same_description(written: dict[str, Path], tmp_path: Path, node: str) -> None:
    path = tmp_path / "edited.tmodel"
    data = _resign(written["nested"].read_bytes(), _set(("root",), {"tuple": [V3_VALID_NODES[node]]}))
    path.write_bytes(data)
    assert _code_of_reference(path) is None
    assert _json(ir.read_description(str(path))) == _json(describe(str(path)))


def _meta(**change: Any) -> Any:
    body = {"dtype": "float32", "shape": [2, 3], "strides": [3, 1], "offset": 0, "parameter": False}
    return {"meta_tensor": {**body, "requires_grad": False, **change}}


# SPEC.md §5.4, schema version 4's nodes and keys
V4_NODE_EDITS: dict[str, Any] = {
    "dict_dup_tuple_keys": {"dict": [[{"tuple": [1, "a"]}, 0], [{"tuple": [1, "a"]}, 1]]},
    "dict_tuple_keys_1_true": {"dict": [[{"tuple": [1]}, 0], [{"tuple": [True]}, 1]]},
    "dict_key_holds_tensor": {"dict": [[{"tuple": [{"tensor": 0}]}, 0]]},
    "dict_key_list": {"dict": [[{"list": []}, 0]]},
    "dict_key_set": {"dict": [[{"set": []}, 0]]},
    "dict_key_bytearray": {"dict": [[{"bytearray": b""}, 0]]},
    "dict_key_bad_device": {"dict": [[{"device": "CPU"}, 0]]},
    "dict_key_unknown_dtype": {"dict": [[{"dtype": "float99"}, 0]]},
    "counter_dup_dtype_keys": {"counter": [[{"dtype": "int8"}, 0], [{"dtype": "int8"}, 1]]},
    "set_dup_complex": {"set": [{"complex": [1.0, 2.0]}, {"complex": [1.0, 2.0]}]},
    "set_meta_element": {"set": [_meta()]},
    "layout_upper": {"layout": "Strided"},
    "layout_path": {"layout": "../strided"},
    "layout_int": {"layout": 1},
    "layout_long": {"layout": "a" * 65},
    "qscheme_empty": {"qscheme": ""},
    "meta_unknown_dtype": _meta(dtype="float99"),
    "meta_value_only_dtype": _meta(dtype="uint4"),
    "meta_strides_rank": _meta(strides=[1]),
    "meta_negative_dim": _meta(shape=[-1, 3]),
    "meta_rank_65": _meta(shape=[1] * 65, strides=[1] * 65),
    "meta_overflow": _meta(shape=[2**32, 2**32], strides=[0, 0]),
    "meta_offset_overflow": _meta(offset=2**62),
    "meta_flag_int": _meta(parameter=0),
    "meta_missing_offset": {"meta_tensor": {"dtype": "float32", "shape": [], "strides": []}},
    "attrs_of_int": {"tensor_attrs": {"of": 0, "attrs": []}},
    "attrs_of_list": {"tensor_attrs": {"of": {"list": []}, "attrs": []}},
    "attrs_of_range": {"tensor_attrs": {"of": {"tensor": 99}, "attrs": []}},
    "attrs_dup_name": {"tensor_attrs": {"of": {"tensor": 0}, "attrs": [["a", 1], ["a", 2]]}},
    "attrs_int_name": {"tensor_attrs": {"of": {"tensor": 0}, "attrs": [[1, 1]]}},
    "attrs_triple": {"tensor_attrs": {"of": {"tensor": 0}, "attrs": [["a", 1, 2]]}},
    "attrs_module": {"tensor_attrs": {"of": {"tensor": 0}, "attrs": [["m", {"list": [{"module": 0}]}]]}},
    "attrs_extra_key": {"tensor_attrs": {"of": {"tensor": 0}, "attrs": [], "x": 1}},
}
V4_VALID_NODES: dict[str, Any] = {
    "tuple_keys": {"dict": [[{"tuple": [1, {"tuple": ["a", b"b"]}]}, 0], [{"tuple": []}, 1]]},
    "value_keys": {
        "ordered_dict": {
            "items": [
                [{"dtype": "int8"}, 0],
                [{"device": "cpu"}, 1],
                [{"complex": [0.0, 1.0]}, 2],
                [{"size": [2]}, 3],
                [{"numpy_scalar": {"dtype": "uint8", "data": b"\1"}}, 4],
                [{"layout": "strided"}, 5],
                [{"qscheme": "per_tensor_affine"}, 6],
            ],
            "metadata": [],
        }
    },
    "set_of_tuples": {"set": [1, {"tuple": [1]}, {"tuple": [2, "x"]}]},
    "layouts": {"list": [{"layout": "sparse_csr"}, {"layout": "_mkldnn"}, {"qscheme": "per_channel_affine"}]},
    "meta": _meta(offset=5, requires_grad=True),
    "meta_parameter": _meta(parameter=True, shape=[0, 3]),
    "attrs": {
        "tensor_attrs": {"of": {"parameter": {"tensor": 1, "requires_grad": True}}, "attrs": [["a", 1]]}
    },
    "attrs_meta": {"tensor_attrs": {"of": _meta(), "attrs": [["t", {"tensor": 0}], ["b", {"set": [1]}]]}},
}


@pytest.mark.parametrize("edit", sorted(V4_NODE_EDITS))
def test_v4_node_edits_same_code(written: dict[str, Path], tmp_path: Path, edit: str) -> None:
    path = tmp_path / "edited.tmodel"
    root = {"dict": [["x", {"list": [V4_NODE_EDITS[edit]]}]]}
    path.write_bytes(_resign(written["sha256"].read_bytes(), _set(("root",), root)))
    ref = _code_of_reference(path)
    assert ref is not None
    assert _code_of_reader(path) == ref


@pytest.mark.parametrize("node", sorted(V4_VALID_NODES))
def test_v4_nodes_same_description(written: dict[str, Path], tmp_path: Path, node: str) -> None:
    path = tmp_path / "edited.tmodel"
    data = _resign(written["nested"].read_bytes(), _set(("root",), {"tuple": [V4_VALID_NODES[node]]}))
    path.write_bytes(data)
    assert _code_of_reference(path) is None
    assert _json(ir.read_description(str(path))) == _json(describe(str(path)))


# §12: version 4's nodes and keys are not version 3's
V3_EDITS: dict[str, Any] = {
    "v3_with_layout": {"layout": "strided"},
    "v3_with_qscheme": {"qscheme": "per_tensor_affine"},
    "v3_with_meta_tensor": _meta(),
    "v3_with_tensor_attrs": {"tensor_attrs": {"of": {"tensor": 0}, "attrs": []}},
    "v3_with_tuple_key": {"dict": [[{"tuple": [1]}, 0]]},
    "v3_with_dtype_set_element": {"set": [{"dtype": "int8"}]},
}


@pytest.mark.parametrize("edit", sorted(V3_EDITS))
def test_v3_manifests_hold_no_v4_content(written: dict[str, Path], tmp_path: Path, edit: str) -> None:
    path = tmp_path / "edited.tmodel"
    mutate = lambda w: _as_v(w, 3, root={"list": [V3_EDITS[edit]]})  # noqa: E731
    path.write_bytes(_resign(written["sha256"].read_bytes(), mutate))
    assert _code_of_reader(path) == "MANIFEST_SCHEMA"
    assert _code_of_reference(path) == "MANIFEST_SCHEMA"


@pytest.mark.parametrize("name", ["uint4", "int1", "qint8", "float128"])
def test_value_only_dtype_is_not_a_tensor_dtype(written: dict[str, Path], tmp_path: Path, name: str) -> None:
    path = tmp_path / "edited.tmodel"
    path.write_bytes(_resign(written["sha256"].read_bytes(), _set(("tensors", 0, "dtype"), name)))
    assert _code_of_reference(path) == _code_of_reader(path) == "UNKNOWN_DTYPE"


MODULE_EDITS: dict[str, Any] = {
    "version_0": _set(("modules", 1, "version"), 0),
    "type_empty_part": _set(("modules", 1, "type"), "torch..nn"),
    "type_long": _set(("modules", 1, "type"), "a" * 257),
    "child_out_of_range": _set(("modules", 0, "children", "0"), 99),
    "child_negative": _set(("modules", 0, "children", "0"), -1),
    "child_dotted_name": lambda w: w["modules"][0]["children"].__setitem__("a.b", 1),
    "cycle": lambda w: w["modules"][1]["children"].__setitem__("loop", 0),
    "self_cycle": lambda w: w["modules"][0]["children"].__setitem__("loop", 0),
    "config_module_cycle": lambda w: w["modules"][1]["config"].__setitem__("t", {"module": 0}),
    "param_extra_key": lambda w: w["modules"][1]["parameters"]["weight"].__setitem__("x", 1),
    "param_out_of_range": lambda w: w["modules"][1]["parameters"]["weight"].__setitem__("tensor", 99),
    "training_int": _set(("modules", 1, "training"), 1),
    "buffer_out_of_range": lambda w: w["modules"][1]["buffers"].__setitem__("b", 99),
    "missing_modules": lambda w: w.pop("modules"),
}


@pytest.mark.parametrize("edit", sorted(MANIFEST_EDITS))
def test_manifest_edits_same_code(written: dict[str, Path], tmp_path: Path, edit: str) -> None:
    path = tmp_path / "edited.tmodel"
    path.write_bytes(_resign(written["nested"].read_bytes(), MANIFEST_EDITS[edit]))
    ref = _code_of_reference(path)
    assert ref is not None
    assert _code_of_reader(path) == ref


@pytest.mark.parametrize("edit", sorted(MODULE_EDITS))
def test_module_edits_same_code(written: dict[str, Path], tmp_path: Path, edit: str) -> None:
    path = tmp_path / "edited.tmodel"
    path.write_bytes(_resign(written["module"].read_bytes(), MODULE_EDITS[edit]))
    ref = _code_of_reference(path)
    assert ref is not None
    assert _code_of_reader(path) == ref


def _one_blob_file(stored: bytes, edit: Any, *, base: bytes) -> bytes:
    """`base` (a one-blob, one-chunk file) with the blob's stored bytes replaced by `stored` (one segment,
    chunk digest, length and layout recomputed) and `edit(wire)` applied."""
    import msgpack
    import xxhash

    m_off, m_len = struct.unpack_from("<QQ", base, len(base) - 64)
    wire = msgpack.unpackb(base[m_off : m_off + m_len], raw=False, strict_map_key=False)
    blob = wire["blobs"][0]
    blob["length"] = len(stored)
    blob["chunks"][0] = {"digest": xxhash.xxh3_64_digest(stored), "segments": [len(stored)]}
    edit(wire)
    region = base[:64] + stored
    region += bytes(-len(region) % 64)
    fake = region + bytes(64)  # a stand-in for the manifest region and trailer, replaced by _resign
    fake += struct.pack("<QQH", len(region), 0, 1) + bytes(38) + b"TMODEND\n"
    return _resign(fake, lambda w: None, raw_manifest=msgpack.packb(wire, use_bin_type=True))


def _frame(data: bytes, **kw: Any) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(**{"write_checksum": True, **kw}).compress(data)


def _payload_cases() -> dict[str, tuple[str, bytes, Any, str | None]]:
    import zstandard

    zeros = bytes(4096)
    good = _frame(zeros)
    no_size = zstandard.ZstdCompressor(write_content_size=False, write_checksum=True).compress(zeros)
    assert good[4] & 0x20 and not good[4] & 0x03  # single segment, no dictionary id field
    with_dict = good[:4] + bytes([good[4] | 0x01, 7]) + good[5:]  # a 1-byte dictionary id 7
    skippable = b"\x50\x2a\x4d\x18" + struct.pack("<I", 4) + b"abcd"
    wrong_size = _frame(bytes(2048))
    big_window = bytearray(good)
    # clear single-segment (bit 5) and set a 2 GiB window descriptor right after the descriptor byte
    fhd = big_window[4]
    assert fhd & 0x20
    fcs_flag = fhd >> 6
    header = bytes([fhd & ~0x20 & 0xFF]) + bytes([(31 - 10) << 3])
    if fcs_flag == 0:  # single-segment implied a 1-byte size; without it the size needs flag 1 (2 bytes)
        header = bytes([(fhd & ~0x20 & 0x3F) | 0x40]) + bytes([(31 - 10) << 3])
        size_field = struct.pack("<H", 4096 - 256)
        rest = good[6:]
    else:
        size_field = b""
        rest = good[5:]
    big_window = good[:4] + header + size_field + rest
    nothing = lambda w: None  # noqa: E731
    return {
        "good_frame": ("zeros", good, nothing, None),
        "stored_raw": ("zeros", zeros, nothing, None),
        "no_content_size": ("zeros", no_size, nothing, "BAD_COMPRESSED_DATA"),
        "dictionary": ("zeros", with_dict, nothing, "BAD_COMPRESSED_DATA"),
        "skippable": ("zeros", skippable, nothing, "BAD_COMPRESSED_DATA"),
        "trailing_after_frame": ("zeros", good + b"\0", nothing, "BAD_COMPRESSED_DATA"),
        "two_frames": ("zeros", _frame(bytes(2048)) * 2, nothing, "BAD_COMPRESSED_DATA"),
        "wrong_content_size": ("zeros", wrong_size, nothing, "BAD_COMPRESSED_DATA"),
        "big_window": ("zeros", big_window, nothing, "BAD_COMPRESSED_DATA"),
        "garbage_frame": ("zeros", good[:4] + b"\xff" * 20, nothing, "BAD_COMPRESSED_DATA"),
        "truncated_frame": ("zeros", good[:-3], nothing, "BAD_COMPRESSED_DATA"),
        "segment_too_long": ("zeros", zeros + b"\0", nothing, "BAD_TENSOR"),
        "bool_2": ("bools", bytes([0, 1, 2, 1]), nothing, "BAD_VALUE"),
        "bool_ok": ("bools", bytes([0, 1, 1, 1]), nothing, None),
    }


PAYLOAD_CASES = _payload_cases()


@pytest.mark.parametrize("case", sorted(PAYLOAD_CASES))
def test_payload_edits_same_code(tmp_path: Path, case: str) -> None:
    kind, stored, edit, expected = PAYLOAD_CASES[case]
    base = tmp_path / "base.tmodel"
    if kind == "zeros":
        tmodel.save({"z": torch.zeros(4096, dtype=torch.uint8)}, base, codec="zstd", chunk_size=1 << 20)
    else:
        tmodel.save({"b": torch.tensor([False, True, True, True])}, base, codec="raw")
    path = tmp_path / "edited.tmodel"
    path.write_bytes(_one_blob_file(stored, edit, base=base.read_bytes()))
    ref = _code_of_reference(path)
    assert ref == expected
    assert _code_of_reader(path) == ref
    if ref is None:
        assert _json(ir.read_description(str(path))) == _json(describe(str(path)))


def _with_raw_metadata(data: bytes, raw_metadata: bytes) -> bytes:
    import msgpack

    m_off, m_len = struct.unpack_from("<QQ", data, len(data) - 64)
    wire = msgpack.unpackb(data[m_off : m_off + m_len], raw=False)
    parts = [bytes([0x80 | len(wire)])]
    for k, v in wire.items():
        parts.append(msgpack.packb(k))
        parts.append(raw_metadata if k == "metadata" else msgpack.packb(v, use_bin_type=True))
    return _resign(data, None, raw_manifest=b"".join(parts))


MSGPACK_CASES: dict[str, bytes] = {
    "ext_type": b"\x81\xa1e\xd4\x05\x00",
    "timestamp": b"\x81\xa1t\xd6\xff\x00\x00\x00\x00",
    "int_key": b"\x81\x01\xc0",
    "duplicate_key": b"\x82\xa1a\xc0\xa1a\xc0",
    "bad_utf8": b"\x81\xa1a\xa2\xc3\x28",
    "surrogate_utf8": b"\x81\xa1a\xa3\xed\xa0\x80",
    "never_used_c1": b"\x81\xa1a\xc1",
    "array32_count_huge": b"\x81\xa1a\xdd\xff\xff\xff\xff\xc0",
    "map32_count_huge": b"\x81\xa1a\xdf\xff\xff\xff\xff\xc0",
    "float32_value": b"\x81\xa1a\xca\x3f\x80\x00\x00",
    "depth_128_leaf": b"\x81\xa1a" + b"\x91" * 125 + b"\xc0",
    "depth_129_leaf": b"\x81\xa1a" + b"\x91" * 126 + b"\xc0",
    "depth_128_empty": b"\x81\xa1a" + b"\x91" * 125 + b"\x90",
    "depth_129_empty": b"\x81\xa1a" + b"\x91" * 126 + b"\x90",
}
# Rules the reference once departed from: both readers now report SPEC.md's code.
SPEC_OVER_REFERENCE = {
    # §4: "map keys that are not str" MUST be rejected [MANIFEST_DECODE], by both readers.
    "bin_key": (b"\x81\xc4\x01a\xc0", "MANIFEST_DECODE"),
}


@pytest.mark.parametrize("case", sorted(MSGPACK_CASES))
def test_msgpack_strictness_same_code(written: dict[str, Path], tmp_path: Path, case: str) -> None:
    path = tmp_path / "edited.tmodel"
    path.write_bytes(_with_raw_metadata(written["sha256"].read_bytes(), MSGPACK_CASES[case]))
    assert _code_of_reader(path) == _code_of_reference(path)


@pytest.mark.parametrize("case", sorted(SPEC_OVER_REFERENCE))
def test_msgpack_spec_over_reference(written: dict[str, Path], tmp_path: Path, case: str) -> None:
    raw, code = SPEC_OVER_REFERENCE[case]
    path = tmp_path / "edited.tmodel"
    path.write_bytes(_with_raw_metadata(written["sha256"].read_bytes(), raw))
    assert _code_of_reader(path) == code
    assert _code_of_reference(path) == code


def test_trailing_and_incomplete_manifest(written: dict[str, Path], tmp_path: Path) -> None:
    data = written["nested"].read_bytes()
    m_off, m_len = struct.unpack_from("<QQ", data, len(data) - 64)
    manifest = data[m_off : m_off + m_len]
    for what, raw in {
        "trailing": manifest + b"\xc0",
        "incomplete": manifest[:-1],
        "not_a_map": b"\x91\x01",
    }.items():
        path = tmp_path / f"{what}.tmodel"
        path.write_bytes(_resign(data, None, raw_manifest=raw))
        assert _code_of_reader(path) == _code_of_reference(path), what


V1_EDITS: dict[str, Any] = {
    # §12: version 2 adds `modules` and the module/dtype nodes, so a version 1 manifest holding them is not a
    # version 1 manifest: both readers reject them [MANIFEST_SCHEMA].
    "v1_with_modules_key": lambda w: _as_v(w, 1, modules=[]),
    "v1_with_dtype_node": lambda w: (_as_v(w, 1, root={"dtype": "float32"}), w.pop("modules")),
}
# §12: version 3's nodes and dtypes are not version 2's: MANIFEST_SCHEMA for a node, UNKNOWN_DTYPE for a dtype
V2_EDITS: dict[str, tuple[Any, str]] = {
    **{
        f"v2_with_{tag}": (
            lambda w, n=node: _as_v(w, 2, root={"list": [n]}),
            "MANIFEST_SCHEMA",
        )
        for tag, node in [
            ("ordered_dict", {"ordered_dict": {"items": [], "metadata": []}}),
            ("counter", {"counter": []}),
            ("set", {"set": []}),
            ("bytearray", {"bytearray": b""}),
            ("complex", {"complex": [0.0, 0.0]}),
            ("size", {"size": []}),
            ("device", {"device": "cpu"}),
            ("parameter", {"parameter": {"tensor": 0, "requires_grad": False}}),
            ("requires_grad", {"requires_grad": 0}),
            ("ndarray", {"ndarray": {"dtype": "uint8", "shape": [0], "data": b""}}),
            ("numpy_scalar", {"numpy_scalar": {"dtype": "uint8", "data": b"\0"}}),
        ]
    },
    "v2_with_e8m0_tensor": (
        lambda w: (_as_v(w, 2), w["tensors"][0].update(dtype="float8_e8m0fnu")),
        "UNKNOWN_DTYPE",
    ),
    "v2_with_value_only_dtype": (
        lambda w: _as_v(w, 2, root={"dtype": "uint4"}),
        "UNKNOWN_DTYPE",
    ),
    "v2_with_complex32_dtype": (
        lambda w: _as_v(w, 2, root={"dtype": "complex32"}),
        "UNKNOWN_DTYPE",
    ),
}


@pytest.mark.parametrize("edit", sorted(V2_EDITS))
def test_v2_manifests_hold_no_v3_content(written: dict[str, Path], tmp_path: Path, edit: str) -> None:
    mutate, code = V2_EDITS[edit]
    path = tmp_path / "edited.tmodel"
    path.write_bytes(_resign(written["sha256"].read_bytes(), mutate))
    assert _code_of_reader(path) == code
    assert _code_of_reference(path) == code


def test_v2_manifest_of_v2_content_reads(written: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "v2.tmodel"
    path.write_bytes(_resign(written["nested"].read_bytes(), lambda w: _as_v(w, 2)))
    got = _json(ir.read_description(str(path)))
    assert got == _json(describe(str(path)))
    assert got["schema_version"] == 2


@pytest.mark.parametrize("edit", sorted(V1_EDITS))
def test_v1_manifests_hold_no_v2_content(written: dict[str, Path], tmp_path: Path, edit: str) -> None:
    path = tmp_path / "edited.tmodel"
    path.write_bytes(_resign(written["nested"].read_bytes(), V1_EDITS[edit]))
    assert _code_of_reader(path) == "MANIFEST_SCHEMA"
    assert _code_of_reference(path) == "MANIFEST_SCHEMA"


def test_v1_upgrade(written: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "v1.tmodel"
    path.write_bytes(_resign(written["sha256"].read_bytes(), lambda w: (w.pop("modules"), _as_v(w, 1))))
    got = _json(ir.read_description(str(path)))
    assert got == _json(describe(str(path)))
    assert got["schema_version"] == 1 and "modules" not in got


CASES = sorted((ROOT / "conformance" / "cases").glob("*/*.json"))


@pytest.mark.skipif(not CASES, reason="no conformance case corpus")
def test_case_corpus() -> None:
    """Every case of conformance/cases/ as the runner plans it for this reader's one capability, `read`:
    valid ones give their description, hostile ones an allowed code; cases needing `modules` or
    `signatures` are skipped, encrypted ones expect what a reader without `encryption` answers."""
    report = runner.Report()
    planned = runner.plan(runner.collect(ROOT / "conformance"), {"read"}, report)
    assert any(not own for _, own in planned) and report.skipped
    failures = []
    for case, _ in planned:
        try:
            got: Any = _json(ir.read_description(str(case.path)))
        except ir.ReaderError as e:
            got = e.code
        if "error" in case.expect:
            if got not in case.expect["error"]["codes"]:
                failures.append((case.id, got if isinstance(got, str) else "ok"))
        elif got != case.expect["description"]:
            failures.append((case.id, got if isinstance(got, str) else "description differs"))
    assert not failures


def test_module_paths_are_bounded_by_max_module_paths(tmp_path: Path) -> None:
    """Records that each reach the next twice: 2**60 paths, refused from the record count alone."""
    with pytest.raises(ir.ReaderError) as exc:
        ir.read_description(str(_doubling_records(tmp_path / "dag.tmodel", 60)))
    assert exc.value.code == "LIMIT_EXCEEDED"
    assert ir.read_description(str(_doubling_records(tmp_path / "ok.tmodel", 3)))["modules"]


# SPEC.md §5.4 and §5, schema version 6: training-state nodes and the checkpoint version, edited into the
# "training" file (root: model, optim, sched, scaler, off, rng, epoch; records 0 Sequential, 1 Linear(3, 4),
# 2 Tanh, 3 Linear(4, 2, bias=False); the optimizer's params: 1.weight, 1.bias (group 0), 3.weight (group 1))
def _entry(w: dict[str, Any], key: str) -> Any:
    return next(v for k, v in w["root"]["dict"] if k == key)


def _opt(w: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = _entry(w, "optim")["optimizer"]
    return body


def _sched(w: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = _entry(w, "sched")["stateful"]
    return body


def _param(i: int, **change: Any) -> Any:
    return lambda w: _opt(w)["params"][i].update(change)


def _state_entry(value: Any) -> Any:
    return lambda w: _opt(w)["params"][0]["state"]["dict"].append(["extra", value])


def _group_entry(key: Any, value: Any = 1) -> Any:
    return lambda w: _opt(w)["groups"][0]["dict"].append([key, value])


def _new_root_entry(value: Any) -> Any:
    return lambda w: w["root"]["dict"].append(["new", value])


def _a_stateful(state: Any = None) -> dict[str, Any]:
    return {"stateful": {"kind": "lr_scheduler", "class": "acme.Sched", "state": {"dict": [["x", state]]}}}


def _an_optimizer(w: dict[str, Any]) -> dict[str, Any]:
    return {"optimizer": copy.deepcopy(_opt(w))}


def _nest_optimizer(w: dict[str, Any]) -> None:
    _opt(w)["params"][0]["state"]["dict"].append(["inner", _an_optimizer(w)])


def _optimizer_in_config(w: dict[str, Any]) -> None:
    w["modules"][1]["config"]["opt"] = _an_optimizer(w)


def _param_twice(w: dict[str, Any]) -> None:
    _opt(w)["params"].insert(1, copy.deepcopy(_opt(w)["params"][0]))


def _groups_decrease(w: dict[str, Any]) -> None:
    params = _opt(w)["params"]
    params[0], params[2] = params[2], params[0]


V6_NODE_EDITS: dict[str, tuple[Any, str]] = {
    # optimizer parameters: references (BAD_TENSOR), then the map's shape, order and distinctness
    "param_module_out_of_range": (_param(0, module=99), "BAD_TENSOR"),
    "param_name_not_a_parameter": (_param(0, name="running_mean"), "BAD_TENSOR"),
    "param_name_nil_slot": (_param(2, name="bias"), "BAD_TENSOR"),
    "param_name_of_a_child": (_param(0, module=0, name="0"), "BAD_TENSOR"),
    "param_duplicate": (_param_twice, "MANIFEST_SCHEMA"),
    "param_group_out_of_range": (_param(2, group=2), "MANIFEST_SCHEMA"),
    "param_group_decreasing": (_groups_decrease, "MANIFEST_SCHEMA"),
    "param_group_negative": (_param(0, group=-1), "MANIFEST_SCHEMA"),
    "param_group_bool": (_param(0, group=False), "MANIFEST_SCHEMA"),
    "param_module_float": (_param(0, module=1.0), "MANIFEST_SCHEMA"),
    "param_name_bytes": (_param(0, name=b"weight"), "MANIFEST_SCHEMA"),
    "param_extra_key": (_param(0, tensor=0), "MANIFEST_SCHEMA"),
    "param_missing_state": (lambda w: _opt(w)["params"][0].pop("state"), "MANIFEST_SCHEMA"),
    "param_state_list": (_param(0, state={"list": []}), "MANIFEST_SCHEMA"),
    "param_state_ordered_dict": (
        _param(0, state={"ordered_dict": {"items": [], "metadata": []}}),
        "MANIFEST_SCHEMA",
    ),
    "param_state_int_key": (
        lambda w: _opt(w)["params"][0]["state"]["dict"].append([1, 2]),
        "MANIFEST_SCHEMA",
    ),
    "param_state_tensor_out_of_range": (_state_entry({"tensor": 999}), "BAD_TENSOR"),
    "param_state_module": (_state_entry({"list": [{"module": 0}]}), "MANIFEST_SCHEMA"),
    "param_state_optimizer": (_nest_optimizer, "MANIFEST_SCHEMA"),
    "param_state_stateful": (_state_entry(_a_stateful()), "MANIFEST_SCHEMA"),
    "param_state_ref": (_state_entry({"ref": "torch.nn.ReLU"}), "MANIFEST_SCHEMA"),
    # groups: dict nodes of string keys, never listing their parameters
    "group_params_key": (_group_entry("params", {"list": [0, 1]}), "MANIFEST_SCHEMA"),
    "group_param_names_key": (_group_entry("param_names", {"list": []}), "MANIFEST_SCHEMA"),
    "group_int_key": (_group_entry(3), "MANIFEST_SCHEMA"),
    "group_tuple_key": (_group_entry({"tuple": ["lr"]}), "MANIFEST_SCHEMA"),
    "group_not_dict": (lambda w: _opt(w)["groups"].__setitem__(0, {"list": []}), "MANIFEST_SCHEMA"),
    "group_counter": (lambda w: _opt(w)["groups"].__setitem__(0, {"counter": []}), "MANIFEST_SCHEMA"),
    "group_module": (_group_entry("m", {"module": 1}), "MANIFEST_SCHEMA"),
    "group_stateful": (_group_entry("s", _a_stateful()), "MANIFEST_SCHEMA"),
    # the optimizer node itself
    "optimizer_class_path": (lambda w: _opt(w).update({"class": "../torch/optim/AdamW"}), "BAD_NAME"),
    "optimizer_class_long": (lambda w: _opt(w).update({"class": "a." * 512 + "b"}), "BAD_NAME"),
    "optimizer_class_empty": (lambda w: _opt(w).update({"class": ""}), "BAD_NAME"),
    "optimizer_class_int": (lambda w: _opt(w).update({"class": 1}), "MANIFEST_SCHEMA"),
    "optimizer_extra_key": (lambda w: _opt(w).update(state={"dict": []}), "MANIFEST_SCHEMA"),
    "optimizer_missing_groups": (lambda w: _opt(w).pop("groups"), "MANIFEST_SCHEMA"),
    "optimizer_params_map": (lambda w: _opt(w).update(params={}), "MANIFEST_SCHEMA"),
    "optimizer_body_list": (lambda w: _entry(w, "optim").update(optimizer=[]), "MANIFEST_SCHEMA"),
    # stateful nodes
    "stateful_kind_unknown": (lambda w: _sched(w).update(kind="optimizer"), "MANIFEST_SCHEMA"),
    "stateful_kind_bytes": (lambda w: _sched(w).update(kind=b"rng"), "MANIFEST_SCHEMA"),
    "stateful_class_path": (lambda w: _sched(w).update({"class": "torch/optim/StepLR"}), "BAD_NAME"),
    "stateful_class_dots": (lambda w: _sched(w).update({"class": "torch..StepLR"}), "BAD_NAME"),
    "stateful_extra_key": (lambda w: _sched(w).update(version=1), "MANIFEST_SCHEMA"),
    "stateful_missing_state": (lambda w: _sched(w).pop("state"), "MANIFEST_SCHEMA"),
    "stateful_module": (lambda w: _sched(w).update(state={"module": 0}), "MANIFEST_SCHEMA"),
    "stateful_stateful": (lambda w: _sched(w).update(state=_a_stateful()), "MANIFEST_SCHEMA"),
    "stateful_optimizer": (lambda w: _sched(w).update(state={"list": [_an_optimizer(w)]}), "MANIFEST_SCHEMA"),
    "stateful_tensor_out_of_range": (lambda w: _sched(w).update(state={"tensor": 999}), "BAD_TENSOR"),
    # where training state may not be: configs, tensor attributes, keys, set elements
    "optimizer_in_config": (_optimizer_in_config, "MANIFEST_SCHEMA"),
    "stateful_in_config": (lambda w: w["modules"][2]["config"].update(s=_a_stateful()), "MANIFEST_SCHEMA"),
    "stateful_in_attrs": (
        _new_root_entry({"tensor_attrs": {"of": {"tensor": 0}, "attrs": [["s", _a_stateful()]]}}),
        "MANIFEST_SCHEMA",
    ),
    "stateful_as_key": (_new_root_entry({"dict": [[_a_stateful(), 1]]}), "MANIFEST_SCHEMA"),
    "stateful_in_tuple_key": (
        _new_root_entry({"dict": [[{"tuple": [_a_stateful()]}, 1]]}),
        "MANIFEST_SCHEMA",
    ),
    "stateful_set_element": (_new_root_entry({"set": [_a_stateful()]}), "MANIFEST_SCHEMA"),
    # the manifest's checkpoint version
    "checkpoint_type_path": (_set(("checkpoint",), {"type": "../acme", "version": 1}), "BAD_NAME"),
    "checkpoint_type_locals": (_set(("checkpoint",), {"type": "acme.<locals>.T", "version": 1}), "BAD_NAME"),
    "checkpoint_type_long": (_set(("checkpoint",), {"type": "a" * 257, "version": 1}), "BAD_NAME"),
    "checkpoint_type_int": (_set(("checkpoint",), {"type": 1, "version": 1}), "MANIFEST_SCHEMA"),
    "checkpoint_version_0": (
        _set(("checkpoint",), {"type": "acme.Trainer", "version": 0}),
        "MANIFEST_SCHEMA",
    ),
    "checkpoint_version_2_63": (
        _set(("checkpoint",), {"type": "acme.Trainer", "version": 2**63}),
        "MANIFEST_SCHEMA",
    ),
    "checkpoint_version_bool": (
        _set(("checkpoint",), {"type": "acme.T", "version": True}),
        "MANIFEST_SCHEMA",
    ),
    "checkpoint_version_float": (
        _set(("checkpoint",), {"type": "acme.T", "version": 1.0}),
        "MANIFEST_SCHEMA",
    ),
    "checkpoint_version_nil": (_set(("checkpoint",), {"type": "acme.T", "version": None}), "MANIFEST_SCHEMA"),
    "checkpoint_extra_key": (
        _set(("checkpoint",), {"type": "acme.T", "version": 1, "steps": []}),
        "MANIFEST_SCHEMA",
    ),
    "checkpoint_missing_version": (_set(("checkpoint",), {"type": "acme.T"}), "MANIFEST_SCHEMA"),
    "checkpoint_string": (_set(("checkpoint",), "acme.T"), "MANIFEST_SCHEMA"),
    "checkpoint_missing": (_delete(("checkpoint",)), "MANIFEST_SCHEMA"),
    # §5.9, §12: a version-5 manifest has neither the key nor the nodes
    "v5_with_checkpoint_nil": (_set(("schema_version",), 5), "MANIFEST_SCHEMA"),
    "v5_with_checkpoint": (
        lambda w: w.update(schema_version=5, checkpoint={"type": "acme.T", "version": 1}),
        "MANIFEST_SCHEMA",
    ),
    "v5_with_optimizer": (lambda w: _as_v(w, 5), "MANIFEST_SCHEMA"),
    "v5_with_stateful_only": (
        lambda w: (_as_v(w, 5), w["root"]["dict"].__setitem__(1, ["optim", None])),
        "MANIFEST_SCHEMA",
    ),
    "v5_with_stateful_in_config": (
        lambda w: (_as_v(w, 5, root={"module": 0}), w["modules"][2]["config"].update(s=_a_stateful())),
        "MANIFEST_SCHEMA",
    ),
    "v4_with_optimizer": (lambda w: _as_v(w, 4), "MANIFEST_SCHEMA"),
}


@pytest.mark.parametrize("edit", sorted(V6_NODE_EDITS))
def test_v6_edits_same_code(written: dict[str, Path], tmp_path: Path, edit: str) -> None:
    mutate, code = V6_NODE_EDITS[edit]
    path = tmp_path / "edited.tmodel"
    path.write_bytes(_resign(written["training"].read_bytes(), mutate))
    assert _code_of_reader(path) == code
    assert _code_of_reference(path) == code


def _only_training_state(w: dict[str, Any]) -> None:
    """Everything but the model, optimizer and scheduler dropped: v5 content after a downgrade."""
    w["root"]["dict"] = [e for e in w["root"]["dict"] if e[0] in ("model", "epoch")]


V6_VALID_EDITS: dict[str, Any] = {
    "checkpoint_version": _set(("checkpoint",), {"type": "acme.Trainer", "version": 3}),
    "checkpoint_version_max": _set(("checkpoint",), {"type": "a" * 256, "version": 2**63 - 1}),
    "class_locals": lambda w: (
        _opt(w).update({"class": "train.<locals>.Opt"}),
        _sched(w).update({"class": "<locals>"}),
    ),
    "class_1024_bytes": lambda w: _opt(w).update({"class": "a" * 1024}),
    "optimizer_empty": lambda w: _opt(w).update(groups=[], params=[]),
    "optimizer_groups_without_params": lambda w: _opt(w).update(groups=[{"dict": []}] * 3, params=[]),
    "param_state_empty": _param(1, state={"dict": []}),
    "param_group_skips": lambda w: (_opt(w)["groups"].append({"dict": []}), _param(2, group=2)(w)),
    "group_values": _group_entry("nested", {"list": [{"tuple": [1.5, None]}, {"dtype": "float16"}]}),
    "state_holds_shared_tensor": _state_entry({"tensor": 0}),
    "stateful_kinds": _new_root_entry(
        {
            "list": [
                {"stateful": {"kind": "grad_scaler", "class": "torch.amp.GradScaler", "state": {"dict": []}}},
                {"stateful": {"kind": "lr_scheduler", "class": "x", "state": None}},
            ]
        }
    ),
    "training_state_in_metadata_of_ordered_dict": _new_root_entry(
        {"ordered_dict": {"items": [], "metadata": [_a_stateful(1)]}}
    ),
    "lookalikes_in_metadata": lambda w: w["metadata"].update(
        optimizer={"optimizer": {"class": "../x"}}, stateful={"stateful": 1}, checkpoint={"type": "../x"}
    ),
    "v5_after_downgrade": lambda w: (_only_training_state(w), _as_v(w, 5)),
}


@pytest.mark.parametrize("edit", sorted(V6_VALID_EDITS))
def test_v6_valid_edits_same_description(written: dict[str, Path], tmp_path: Path, edit: str) -> None:
    path = tmp_path / "edited.tmodel"
    path.write_bytes(_resign(written["training"].read_bytes(), V6_VALID_EDITS[edit]))
    assert _code_of_reference(path) is None
    got = _json(ir.read_description(str(path)))
    assert got == _json(describe(str(path)))
    assert ("checkpoint" in got) == edit.startswith("checkpoint_version")


def test_training_state_description(written: dict[str, Path]) -> None:
    """The optimizer and stateful nodes as the description shows them (describe.py's tags)."""
    got = _json(ir.read_description(str(written["training"])))
    root = dict(got["root"]["$dict"])
    opt = root["optim"]["$optimizer"]
    assert opt["class"] == "torch.optim.adamw.AdamW" and len(opt["groups"]) == 2
    assert [(p["group"], p["module"], p["name"]) for p in opt["params"]] == [
        (0, 1, "weight"),
        (0, 1, "bias"),
        (1, 3, "weight"),
    ]
    assert [k for k, _ in opt["params"][0]["state"]["$dict"]] == ["step", "exp_avg", "exp_avg_sq"]
    kinds = {
        k: (v["$stateful"]["kind"], v["$stateful"]["class"])
        for k, v in root.items()
        if isinstance(v, dict) and "$stateful" in v
    }
    assert kinds == {
        "sched": ("lr_scheduler", "torch.optim.lr_scheduler.StepLR"),
        "scaler": ("grad_scaler", "torch.amp.grad_scaler.GradScaler"),
        "off": ("grad_scaler", "torch.amp.grad_scaler.GradScaler"),
        "rng": ("rng", "tmodel.RNGState"),
    }
    assert root["off"]["$stateful"]["state"] == {"$dict": []}
    assert [k for k, _ in root["rng"]["$stateful"]["state"]["$dict"]][:2] == ["torch", "python"]
    assert got["schema_version"] == 7 and "checkpoint" not in got
