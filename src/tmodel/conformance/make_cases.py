"""Write the conformance case corpus: `python -m tmodel.conformance.make_cases [FOLDER]`.

Rules: the corpus is data. `cases/valid/NAME.tmodel` is written by the reference writer and `NAME.json` holds
its canonical description (`describe.py`); `cases/hostile/NAME.tmodel` is a valid sibling with exactly ONE
documented change, and `NAME.json` lists every error code SPEC.md allows for it. Manifest-content
attacks re-encode the manifest with the trailer digest recomputed; payload attacks recompute the chunk
digests; framing and checksum attacks edit raw bytes. The output depends on nothing but this file and the
reference writer: running it twice gives byte-identical files (no time, no randomness without a seed).
"""

from __future__ import annotations

import collections
import hashlib
import json
import shutil
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import torch
import zstandard
from torch import nn

import tmodel
from tmodel.container.digests import ALGORITHMS, BY_ID
from tmodel.container.framing import HEADER_SIZE, TRAILER_SIZE, align, pack_trailer
from tmodel.manifest.encoding import pack_manifest
from tmodel.tensors.dtypes import VALUE_TORCH_DTYPES

from .describe import describe
from .freeze import all_dtypes
from .suite import SUITE

CASES = SUITE / "cases"
MiB = 1 << 20

#: ATTACKS.md line -> (attack class, real-world motivation), quoted from the conformance issue's list.
ATTACKS: dict[int, tuple[str, str]] = {
    1: ("malformed container", 'WebAssembly "magic header not detected"'),
    2: ("truncation", "torn writes"),
    3: ("version confusion", "Keras silently took an unsafe legacy path"),
    4: ("allocation DoS", "safetensors 100 MB header cap; GGUF CVEs"),
    5: ("smuggling", "msgpack ExtraData"),
    6: ("parser differential", "safetensors accepts duplicates (last wins), a published trick"),
    7: ("type confusion", "msgpack accepts ext silently"),
    8: ("stack exhaustion", "parquet over-deep nesting test file"),
    9: ("OOM / hang", "a 43-byte GGUF file hangs gguf-py"),
    10: ("table index out of bounds", "ggml unchecked type enum"),
    11: ("integer overflow", "GGUF CVE-2024-25664..25668"),
    12: ("out-of-bounds read", "safetensors TensorInvalidInfo"),
    13: ("out-of-bounds read", "GGML_PAD bypass"),
    14: ("aliasing / polyglot", "Trail of Bits safetensors audit"),
    15: ("DoS / mmap fault", "ggml unbounded alignment"),
    16: ("allocation bomb", "a 34-byte frame makes python-zstandard allocate 2 GiB"),
    17: ("decompression bomb", "256 MiB of zeros is 8 KB of zstd"),
    18: ("smuggling", "allow_extra_data=True is the default"),
    19: ("memory DoS", "max_window_size"),
    20: ("integrity", "Parquet corrupt-page test file; tensorizer hashes that skip the shape"),
    21: ("path traversal downstream", "Keras layer names became file paths"),
    22: ("read/write outside the archive", "ONNX external-data traversal, fixed three times"),
    23: ("code execution", "torch CVE-2025-32434"),
    24: ("code execution", "Keras CVE-2025-1550; GGUF chat-template injection"),
    25: ("silent downgrade", "(ATTACKS.md names none: an old reader must refuse, not misread)"),
    26: ("type coercion", "validate strictly"),
    27: ("scanner confusion", "picklescan bypasses"),
    28: ("DoS", "a safetensors header with 100,000 entries"),
    29: ("TOCTOU", "ONNX hardlink bypass"),
    30: ("crash mid-write", "the reason for atomic writes"),
    31: ("registry rules", "the registry's own rules"),
}

#: ATTACKS.md lines that no file can express, and where they are tested instead.
NOT_A_FILE: dict[int, str] = {
    29: "tests/test_corruption.py::test_fifo_is_refused_without_hanging (a FIFO path: NOT_REGULAR_FILE); "
    "a file changing while read is an API property (open once, read through one descriptor)",
}

PHASE = {
    "BAD_MAGIC": "container",
    "UNSUPPORTED_VERSION": "container",
    "UNKNOWN_FEATURE": "container",
    "TRUNCATED": "container",
    "BAD_LAYOUT": "container",
    "LIMIT_EXCEEDED": "container",
    "MANIFEST_DECODE": "manifest",
    "MANIFEST_SCHEMA": "manifest",
    "BAD_NAME": "manifest",
    "UNKNOWN_DTYPE": "manifest",
    "UNKNOWN_CODEC": "manifest",
    "UNKNOWN_CHECKSUM": "manifest",
    "BAD_TENSOR": "manifest",
    "CHECKSUM_MISMATCH": "data",
    "BAD_COMPRESSED_DATA": "data",
    "BAD_VALUE": "data",
    "UNREGISTERED_TYPE": "model",
    "LAYER_VERSION": "model",
    "BAD_CONFIG": "model",
    "STATE_MISMATCH": "model",
    "MIGRATION": "model",
}


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
}


# -- byte surgery --------------------------------------------------------------------------------------------
def split(data: bytes) -> tuple[bytes, bytes, dict[str, Any], str]:
    """(header, blob region incl. padding, decoded manifest, trailer digest name) of a valid file."""
    offset, length, algo = struct.unpack_from("<QQH", data, len(data) - TRAILER_SIZE)
    wire = msgpack.unpackb(data[offset : offset + length], raw=False, strict_map_key=False)
    return data[:HEADER_SIZE], data[HEADER_SIZE:offset], wire, BY_ID[algo]


def build(header: bytes, region: bytes, manifest: dict[str, Any] | bytes, digest_name: str) -> bytes:
    """header + blob region (zero-padded to 64) + manifest + a trailer whose digest is correct."""
    raw = manifest if isinstance(manifest, bytes) else pack_manifest(manifest)
    region += bytes(align(HEADER_SIZE + len(region)) - HEADER_SIZE - len(region))
    return header + region + raw + pack_trailer(HEADER_SIZE + len(region), raw, digest_name, header)


def header(version: int = 1, flags: int = 0, reserved: bytes = bytes(48)) -> bytes:
    return struct.pack("<8sII48s", b"\x89TMODEL\n", version, flags, reserved)


def packed_map(items: list[tuple[str, bytes]]) -> bytes:
    """A msgpack map from already-encoded values (for encodings msgpack.packb refuses to produce)."""
    return bytes([0x80 | len(items)]) + b"".join(msgpack.packb(k) + v for k, v in items)


def with_raw(wire: dict[str, Any], key: str, raw_value: bytes) -> bytes:
    return packed_map([(k, raw_value if k == key else pack_manifest(v)) for k, v in wire.items()])


Edit = Callable[[bytes], bytes]


def manifest(mutate: Callable[[dict[str, Any]], None]) -> Edit:
    """Change the decoded manifest, re-encode it, recompute the trailer digest."""

    def edit(data: bytes) -> bytes:
        h, region, wire, algo = split(data)
        mutate(wire)
        return build(h, region, wire, algo)

    return edit


def manifest_bytes(encode: Callable[[dict[str, Any]], bytes]) -> Edit:
    """Replace the manifest bytes by hand-encoded msgpack, recompute the trailer digest."""

    def edit(data: bytes) -> bytes:
        h, region, wire, algo = split(data)
        return build(h, region, encode(wire), algo)

    return edit


def with_header(new: bytes) -> Edit:
    def edit(data: bytes) -> bytes:
        _, region, wire, algo = split(data)
        return build(new, region, wire, algo)

    return edit


def region_edit(change: Callable[[bytes, dict[str, Any]], bytes]) -> Edit:
    """Change the blob region (and the manifest's blob records in place), recompute the trailer digest."""

    def edit(data: bytes) -> bytes:
        h, region, wire, algo = split(data)
        return build(h, change(region, wire), wire, algo)

    return edit


def segment(seg: bytes, blob: int = 0) -> Edit:
    """Make `seg` the only segment of the blob's only chunk, with its chunk digest recomputed."""

    def edit(data: bytes) -> bytes:
        h, _, wire, algo = split(data)
        b = wire["blobs"][blob]
        assert len(b["chunks"]) == 1 and len(wire["blobs"]) == 1
        b["length"] = len(seg)
        b["chunks"][0] = {"digest": ALGORITHMS[wire["checksum"]][2](seg), "segments": [len(seg)]}
        return build(h, seg, wire, algo)

    return edit


def raw(change: Callable[[bytearray], bytes | bytearray]) -> Edit:
    return lambda data: bytes(change(bytearray(data)))


def _xor(pos: int, mask: int = 0x01) -> Callable[[bytearray], bytearray]:
    def change(b: bytearray) -> bytearray:
        b[pos if pos >= 0 else len(b) + pos] ^= mask
        return b

    return change


def _trailer_field(fmt: str, at: int, value: int) -> Callable[[bytearray], bytearray]:
    def change(b: bytearray) -> bytearray:
        struct.pack_into(fmt, b, len(b) - TRAILER_SIZE + at, value)
        return b

    return change


def _frame(data: bytes, **kwargs: Any) -> bytes:
    return bytes(zstandard.ZstdCompressor(level=3, **kwargs).compress(data))


def _big_window(frame: bytes) -> bytes:
    """The frame with its single-segment flag cleared and a window descriptor of 2 GiB inserted."""
    fhd = frame[4]
    assert fhd & 0x20 and not fhd & 0x03 and fhd >> 6 == 1  # single segment, 2-byte content size
    return frame[:4] + bytes([fhd & ~0x20, 21 << 3]) + frame[5:]


def _bomb(data: bytes) -> bytes:
    """zeros_zstd declaring 256 MiB of decoded bytes, stored as an 8 KB frame of zeros."""
    h, _, wire, algo = split(data)
    n = 256 * MiB
    seg = zstandard.ZstdCompressor(level=1).compress(bytes(n))
    b = wire["blobs"][0]
    b.update(nbytes=n, chunk_size=n, length=len(seg))
    b["chunks"][0] = {"digest": ALGORITHMS[wire["checksum"]][2](seg), "segments": [len(seg)]}
    wire["tensors"][0]["shape"] = [n]
    return build(h, seg, wire, algo)


def _t(i: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda w: w["tensors"][i].__setitem__(key, value)


def _b(i: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda w: w["blobs"][i].__setitem__(key, value)


def _top(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda w: w.__setitem__(key, value)


def _mod(i: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda w: w["modules"][i].__setitem__(key, value)


def _rank65(w: dict[str, Any]) -> None:
    w["tensors"][0]["shape"] = [1] * 65
    w["tensors"][0]["strides"] = [1] * 65


def _overflow(w: dict[str, Any]) -> None:
    w["tensors"][0]["shape"] = [1 << 32, 1 << 32]
    w["tensors"][0]["strides"] = [0, 0]


def _empty_overflow(w: dict[str, Any]) -> None:
    w["tensors"][0]["shape"] = [0, 1 << 32, 1 << 32]
    w["tensors"][0]["strides"] = [0, 0, 0]


def _many_tensors_dup(w: dict[str, Any]) -> None:
    empty = {"dtype": "uint8", "shape": [0], "strides": [1], "blob": None, "offset": 0}
    w["tensors"] += [{"name": f"e{i}", **empty} for i in range(9_999)] + [{"name": "e0", **empty}]


def _huge_metadata_dup(wire: dict[str, Any]) -> bytes:
    items = b"".join(msgpack.packb(f"k{i:05d}") + msgpack.packb(i) for i in range(10_000))
    meta = b"\xdf" + struct.pack(">I", 10_001) + items + msgpack.packb("k00000") + b"\x00"
    return with_raw(wire, "metadata", meta)


def _hole(region: bytes, wire: dict[str, Any]) -> bytes:
    """Insert 64 zero bytes before blob 1 and move blobs 1.. by 64."""
    at = wire["blobs"][1]["offset"] - HEADER_SIZE
    for b in wire["blobs"][1:]:
        b["offset"] += 64
    return region[:at] + bytes(64) + region[at:]


def _misaligned(region: bytes, wire: dict[str, Any]) -> bytes:
    """Store the raw blob 8 bytes later (offset 72)."""
    wire["blobs"][0]["offset"] += 8
    return bytes(8) + region


def _gap_before_manifest(region: bytes, wire: dict[str, Any]) -> bytes:
    return region + bytes(64)


def _padding(region: bytes, wire: dict[str, Any]) -> bytes:
    """The first padding byte after the first blob that has padding -> 0x01."""
    ends = [b["offset"] + b["length"] for b in wire["blobs"]]
    end = next(e for e in ends if align(e) > e) - HEADER_SIZE
    return region[:end] + b"\x01" + region[end + 1 :]


def _bool_two(data: bytes) -> bytes:
    """Replace the bool blob's values by ones with one byte 2, chunk digest recomputed."""
    h, region, wire, algo = split(data)
    b = wire["blobs"][2]
    values = bytearray([1, 0] * 8)
    values[5] = 2
    seg = _frame(bytes(values))
    if len(seg) >= len(values):
        seg = bytes(values)
    start = b["offset"] - HEADER_SIZE
    region = region[:start] + seg
    b["length"] = len(seg)
    b["chunks"][0] = {"digest": ALGORITHMS[wire["checksum"]][2](seg), "segments": [len(seg)]}
    return build(h, region, wire, algo)


def _zip() -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        info = zipfile.ZipInfo("data.pkl", date_time=(1980, 1, 1, 0, 0, 0))
        z.writestr(info, b"\x80\x04K\x01.")
    return out.getvalue()


def _ext(wire: dict[str, Any]) -> bytes:
    return with_raw(wire, "metadata", packed_map([("e", msgpack.packb(msgpack.ExtType(5, b"xy")))]))


def _timestamp(wire: dict[str, Any]) -> bytes:
    return with_raw(wire, "extensions", packed_map([("t", msgpack.packb(msgpack.Timestamp(1, 0)))]))


def _dup_top(wire: dict[str, Any]) -> bytes:
    items = [(k, pack_manifest(v)) for k, v in wire.items()]
    return bytes([0x80 | (len(items) + 1)]) + b"".join(
        msgpack.packb(k) + v for k, v in [*items, ("extensions", b"\x80")]
    )


def _v2_with_v3_dtype(w: dict[str, Any]) -> None:
    w["schema_version"] = 2
    w["tensors"][0]["dtype"] = "float8_e8m0fnu"


def _module_cycle(w: dict[str, Any]) -> None:
    w["modules"][1]["children"] = {"loop": 0}


# -- hostile cases -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hostile:
    sibling: str
    line: int
    edit: Edit
    change: str
    codes: tuple[str, ...]
    spec: str
    description: str
    tier: str = "MUST"


H = Hostile
TS = TRAILER_SIZE
HOSTILE: dict[str, Hostile] = {
    # 1 -- magic
    "bad_magic": H(
        "base",
        1,
        raw(lambda b: b"\x89TMODEX\n" + b[8:]),
        "magic byte 6 'L' -> 'X'",
        ("BAD_MAGIC",),
        "§3.1",
        "the first 8 bytes are not the magic",
    ),
    "bom_before_magic": H(
        "base",
        1,
        raw(lambda b: b"\xef\xbb\xbf" + b),
        "3 bytes EF BB BF (a UTF-8 BOM) prepended",
        ("BAD_MAGIC",),
        "§3.1",
        "a byte-order mark before the magic",
    ),
    # 2 -- truncation
    "truncated_header": H(
        "base",
        2,
        raw(lambda b: b[:40]),
        "cut to its first 40 bytes",
        ("TRUNCATED",),
        "§3.1, §3.2",
        "the file ends inside the fixed header",
    ),
    "truncated_blob": H(
        "base",
        2,
        raw(lambda b: b[:100]),
        "cut to its first 100 bytes (inside blob 0)",
        ("TRUNCATED",),
        "§3.2",
        "the file ends inside a blob",
    ),
    "truncated_manifest": H(
        "base",
        2,
        raw(lambda b: b[: len(b) - TS - 20]),
        "the trailer and the last 20 manifest bytes cut off",
        ("TRUNCATED",),
        "§3.2",
        "the file ends inside the manifest",
    ),
    "truncated_trailer": H(
        "base",
        2,
        raw(lambda b: b[:-1]),
        "the last byte cut off",
        ("TRUNCATED",),
        "§3.2",
        "the file ends inside the trailer",
    ),
    # 3 -- versions
    "container_version_0": H(
        "base",
        3,
        with_header(header(version=0)),
        "header container_version 1 -> 0 (manifest digest recomputed)",
        ("UNSUPPORTED_VERSION",),
        "§3.1",
        "container version 0",
    ),
    "container_version_2": H(
        "base",
        3,
        with_header(header(version=2)),
        "header container_version 1 -> 2 (manifest digest recomputed)",
        ("UNSUPPORTED_VERSION",),
        "§3.1, §12",
        "a container version newer than implemented",
    ),
    "schema_version_0": H(
        "base",
        3,
        manifest(_top("schema_version", 0)),
        "manifest schema_version 3 -> 0",
        ("UNSUPPORTED_VERSION",),
        "§5, §12",
        "schema version 0",
    ),
    "schema_version_4": H(
        "base",
        3,
        manifest(_top("schema_version", 4)),
        "manifest schema_version 3 -> 4",
        ("UNSUPPORTED_VERSION",),
        "§5, §12",
        "a schema version newer than implemented",
    ),
    # 4 -- manifest length
    "manifest_length_max": H(
        "base",
        4,
        raw(_trailer_field("<Q", 8, 2**64 - 1)),
        "trailer manifest_length -> 2^64-1 (raw edit)",
        ("LIMIT_EXCEEDED", "BAD_LAYOUT"),
        "§3.2, §8",
        "a manifest length of 2^64-1: nothing may be allocated for it",
    ),
    "manifest_length_past_eof": H(
        "base",
        4,
        raw(lambda b: _trailer_field("<Q", 8, len(b))(b)),
        "trailer manifest_length -> the file's size (raw edit)",
        ("BAD_LAYOUT",),
        "§3.2",
        "a manifest length larger than the file, below the limit",
    ),
    # 5 -- extra bytes in the manifest region
    "manifest_extra_byte": H(
        "base",
        5,
        manifest_bytes(lambda w: pack_manifest(w) + b"\xc0"),
        "one msgpack nil byte appended to the manifest",
        ("MANIFEST_DECODE",),
        "§4",
        "bytes left in the manifest region after the object",
    ),
    "manifest_twice": H(
        "base",
        5,
        manifest_bytes(lambda w: pack_manifest(w) * 2),
        "the manifest object encoded twice in the region",
        ("MANIFEST_DECODE",),
        "§4",
        "a second msgpack object after the manifest",
    ),
    # 6 -- duplicates
    "duplicate_top_level_key": H(
        "base",
        6,
        manifest_bytes(_dup_top),
        "a second 'extensions' key appended to the top-level map",
        ("MANIFEST_DECODE",),
        "§4",
        "a duplicate map key",
    ),
    "duplicate_metadata_key": H(
        "base",
        6,
        manifest_bytes(lambda w: with_raw(w, "metadata", packed_map([("a", b"\x01"), ("a", b"\x02")]))),
        "metadata -> a map with key 'a' twice",
        ("MANIFEST_DECODE",),
        "§4",
        "a duplicate key in a nested map (last-wins parsers differ)",
    ),
    "duplicate_tensor_name": H(
        "base",
        6,
        manifest(lambda w: w["tensors"][1].__setitem__("name", w["tensors"][0]["name"])),
        "tensor 1 renamed to tensor 0's name",
        ("BAD_NAME",),
        "§5.2",
        "two tensors with one name",
    ),
    "set_duplicate_elements": H(
        "base",
        6,
        manifest(_top("root", {"list": [{"set": [1, 2, 1]}]})),
        "root -> [{'set': [1, 2, 1]}]",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 3) a set node listing an element twice",
    ),
    # 7 -- type confusion in msgpack
    "int_map_key": H(
        "base",
        7,
        manifest_bytes(lambda w: with_raw(w, "metadata", b"\x81\x01\xc0")),
        "metadata -> {1: nil} (an int key)",
        ("MANIFEST_DECODE",),
        "§4",
        "a non-string map key",
    ),
    "ext_type": H(
        "base",
        7,
        manifest_bytes(_ext),
        "metadata -> {'e': ext type 5}",
        ("MANIFEST_DECODE",),
        "§4",
        "a msgpack extension type",
    ),
    "timestamp_ext": H(
        "base",
        7,
        manifest_bytes(_timestamp),
        "extensions -> {'t': timestamp ext -1}",
        ("MANIFEST_DECODE",),
        "§4",
        "the msgpack timestamp extension",
    ),
    "invalid_utf8": H(
        "base",
        7,
        manifest_bytes(lambda w: with_raw(w, "metadata", b"\x81\xa1a\xa2\xff\xfe")),
        "metadata -> {'a': str of bytes FF FE}",
        ("MANIFEST_DECODE",),
        "§4",
        "a str that is not UTF-8",
    ),
    "dtype_as_bin": H(
        "base",
        7,
        manifest(_t(0, "dtype", b"float32")),
        "tensor 0 dtype as bin b'float32'",
        ("MANIFEST_SCHEMA",),
        "§4",
        "bin where a string is required",
    ),
    "name_as_int": H(
        "base",
        7,
        manifest(_t(0, "name", 5)),
        "tensor 0 name -> the integer 5",
        ("MANIFEST_SCHEMA",),
        "§4",
        "an integer where a string is required",
    ),
    "complex_int_parts": H(
        "base",
        7,
        manifest(_top("root", {"list": [{"complex": [1, 2]}]})),
        "root -> [{'complex': [1, 2]}]",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 3) a complex node whose parts are ints, not floats",
    ),
    "bytearray_as_str": H(
        "base",
        7,
        manifest(_top("root", {"list": [{"bytearray": "ab"}]})),
        "root -> [{'bytearray': 'ab'}]",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 3) a bytearray node holding a str",
    ),
    # 8 -- nesting
    "nested_10000": H(
        "base",
        8,
        manifest_bytes(lambda w: with_raw(w, "metadata", b"\x81\xa1x" + b"\x91" * 10_000 + b"\xc0")),
        "metadata -> {'x': 10,000 nested one-element arrays}",
        ("LIMIT_EXCEEDED", "MANIFEST_DECODE"),
        "§4, §8",
        "nesting far deeper than max_depth",
    ),
    "nested_129": H(
        "base",
        8,
        manifest_bytes(lambda w: with_raw(w, "metadata", b"\x81\xa1x" + b"\x91" * 126 + b"\xc0")),
        "metadata -> {'x': 126 nested arrays} (manifest depth 129)",
        ("LIMIT_EXCEEDED", "MANIFEST_DECODE"),
        "§4, §8",
        "nesting one level deeper than max_depth 128",
    ),
    # 9 -- counts
    "array32_count_huge": H(
        "base",
        9,
        manifest_bytes(lambda w: with_raw(w, "metadata", b"\x81\xa1x\xdd\xff\xff\xff\xff\xc0\xc0")),
        "metadata -> {'x': array32 header of 2^32-1 elements, 2 present}",
        ("MANIFEST_DECODE",),
        "§4",
        "an array count the remaining bytes cannot justify",
    ),
    "map32_count_huge": H(
        "base",
        9,
        manifest_bytes(lambda w: b"\xdf\xff\xff\xff\xff\xa1a\xc0"),
        "manifest -> a map32 header of 2^32-1 entries with one present",
        ("MANIFEST_DECODE",),
        "§4",
        "a map count the remaining bytes cannot justify",
    ),
    "str32_length_huge": H(
        "base",
        9,
        manifest_bytes(lambda w: with_raw(w, "metadata", b"\x81\xa1x\xdb\xff\xff\xff\xff\x00")),
        "metadata -> {'x': str32 header of 2^32-1 bytes, 1 present}",
        ("MANIFEST_DECODE",),
        "§4",
        "a string length the remaining bytes cannot justify",
    ),
    "nbytes_huge": H(
        "base",
        9,
        manifest(_b(0, "nbytes", 1 << 40)),
        "blob 0 nbytes 64 -> 2^40",
        ("LIMIT_EXCEEDED", "BAD_TENSOR"),
        "§5.1, §8",
        "a decoded size of 1 TiB declared by a tiny file (also: chunk count mismatch)",
    ),
    # 10 -- dtypes
    "dtype_unknown": H(
        "base",
        10,
        manifest(_t(0, "dtype", "float128")),
        "tensor 0 dtype -> 'float128'",
        ("UNKNOWN_DTYPE",),
        "§5.3",
        "a dtype not in the table",
    ),
    "dtype_negative": H(
        "base",
        10,
        manifest(_t(0, "dtype", -1)),
        "tensor 0 dtype -> the integer -1",
        ("MANIFEST_SCHEMA",),
        "§4, §5.3",
        "a negative dtype enum (the format names dtypes)",
    ),
    "dtype_node_unknown": H(
        "base",
        10,
        manifest(_top("root", {"dtype": "float128"})),
        "root -> {'dtype': 'float128'}",
        ("UNKNOWN_DTYPE",),
        "§5.4",
        "an unknown dtype as an object-tree value",
    ),
    "parameter_out_of_range": H(
        "base",
        10,
        manifest(_top("root", {"list": [{"parameter": {"tensor": 99, "requires_grad": True}}]})),
        "root -> [{'parameter': {'tensor': 99, 'requires_grad': True}}]",
        ("BAD_TENSOR",),
        "§5.4",
        "(schema 3) a parameter node referring to a tensor beyond the table",
    ),
    "ndarray_dtype_unknown": H(
        "base",
        10,
        manifest(
            _top("root", {"list": [{"ndarray": {"dtype": "bfloat16", "shape": [1], "data": bytes(2)}}]})
        ),
        "root -> [{'ndarray': {'dtype': 'bfloat16', 'shape': [1], 'data': bytes(2)}}]",
        ("UNKNOWN_DTYPE",),
        "§5.3, §5.4",
        "(schema 3) an ndarray node of a dtype numpy does not have",
    ),
    "value_only_dtype_tensor": H(
        "base",
        10,
        manifest(_t(0, "dtype", "uint4")),
        "tensor 0 dtype -> 'uint4' (a value-only dtype name)",
        ("UNKNOWN_DTYPE",),
        "§5.3",
        "(schema 3) a tensor of a dtype that may only be a value",
    ),
    # 11 -- rank and dimensions
    "rank_65": H(
        "base",
        11,
        manifest(_rank65),
        "tensor 0 shape and strides -> 65 ones",
        ("LIMIT_EXCEEDED",),
        "§5.2, §8",
        "rank above max_rank",
    ),
    "negative_dim": H(
        "base",
        11,
        manifest(_t(0, "shape", [-16])),
        "tensor 0 shape [16] -> [-16]",
        ("MANIFEST_SCHEMA", "BAD_TENSOR"),
        "§5.2",
        "a negative dimension",
    ),
    "dim_product_overflow": H(
        "base",
        11,
        manifest(_overflow),
        "tensor 0 shape -> [2^32, 2^32], strides [0, 0]",
        ("BAD_TENSOR",),
        "§5.2",
        "numel * itemsize above 2^63-1 (the extent stays small)",
    ),
    "fuzz_empty_dims_overflow": H(
        "base",
        11,
        manifest(_empty_overflow),
        "tensor 0 shape -> [0, 2^32, 2^32], strides [0, 0, 0]",
        ("BAD_TENSOR",),
        "§5.2",
        "fuzz regression (campaign of 2026-11-28, minimized): an empty tensor whose non-zero dimensions "
        "multiply past 2^63-1 (the reference reader's torch layer raised RuntimeError)",
    ),
    "ndarray_shape_overflow": H(
        "base",
        11,
        manifest(
            _top("root", {"list": [{"ndarray": {"dtype": "uint8", "shape": [2**32, 2**32, 0], "data": b""}}]})
        ),
        "root -> [{'ndarray': {'dtype': 'uint8', 'shape': [2**32, 2**32, 0], 'data': b''}}]",
        ("BAD_TENSOR",),
        "§5.4",
        "(schema 3) an ndarray node whose dimensions overflow 64 bits",
    ),
    "size_beyond_int64": H(
        "base",
        11,
        manifest(_top("root", {"list": [{"size": [2**63]}]})),
        "root -> [{'size': [2**63]}]",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 3) a size node element beyond int64",
    ),
    # 12 -- size vs shape
    "shape_beyond_blob": H(
        "base",
        12,
        manifest(_t(0, "shape", [17])),
        "tensor 0 shape [16] -> [17]",
        ("BAD_TENSOR",),
        "§5.2",
        "a view larger than its blob's decoded bytes",
    ),
    "strides_beyond_blob": H(
        "base",
        12,
        manifest(_t(0, "strides", [2])),
        "tensor 0 strides [1] -> [2]",
        ("BAD_TENSOR",),
        "§5.2",
        "strides that reach past the blob",
    ),
    "nbytes_not_chunked": H(
        "base",
        12,
        manifest(_b(0, "nbytes", 68)),
        "blob 0 nbytes 64 -> 68",
        ("BAD_TENSOR",),
        "§5.1",
        "decoded size inconsistent with its chunks",
    ),
    "ndarray_data_short": H(
        "base",
        12,
        manifest(_top("root", {"list": [{"ndarray": {"dtype": "uint32", "shape": [4], "data": bytes(15)}}]})),
        "root -> [{'ndarray': {'dtype': 'uint32', 'shape': [4], 'data': bytes(15)}}]",
        ("BAD_TENSOR",),
        "§5.4",
        "(schema 3) an ndarray node with fewer bytes than its shape needs",
    ),
    # 13 -- offsets
    "tensor_offset_overflow": H(
        "base",
        13,
        manifest(_t(0, "offset", 2**64 - 4)),
        "tensor 0 offset 0 -> 2^64-4",
        ("BAD_TENSOR", "MANIFEST_SCHEMA"),
        "§5.2",
        "offset + extent overflows 64 bits (the JSON Schema caps sizes at 2^63-1)",
    ),
    "tensor_offset_int64_max": H(
        "base",
        13,
        manifest(_t(0, "offset", 2**63 - 4)),
        "tensor 0 offset 0 -> 2^63-4",
        ("BAD_TENSOR",),
        "§5.2",
        "offset + extent overflows a signed 64-bit sum",
    ),
    "blob_offset_past_eof": H(
        "base",
        13,
        manifest(_b(2, "offset", 1 << 40)),
        "blob 2 offset -> 2^40",
        ("BAD_LAYOUT",),
        "§3.3",
        "a blob past the end of the file",
    ),
    "blob_offset_into_header": H(
        "base",
        13,
        manifest(_b(0, "offset", 0)),
        "blob 0 offset 64 -> 0",
        ("BAD_LAYOUT",),
        "§3.3",
        "a blob pointing into the header",
    ),
    "blob_into_manifest": H(
        "base",
        13,
        manifest(lambda w: w["blobs"][2].__setitem__("offset", w["blobs"][2]["offset"] + 64)),
        "blob 2 offset moved by +64 (onto the manifest)",
        ("BAD_LAYOUT",),
        "§3.3",
        "a blob pointing into the manifest",
    ),
    # 14 -- overlaps, holes, trailing bytes
    "blobs_overlap": H(
        "base",
        14,
        manifest(lambda w: w["blobs"][1].__setitem__("offset", w["blobs"][0]["offset"])),
        "blob 1 offset -> blob 0's offset",
        ("BAD_LAYOUT",),
        "§3.3",
        "two blob records over the same bytes",
    ),
    "hole_between_blobs": H(
        "base",
        14,
        region_edit(_hole),
        "64 zero bytes inserted before blob 1, later blobs moved by 64",
        ("BAD_LAYOUT",),
        "§3.3",
        "a hole in the blob region",
    ),
    "gap_before_manifest": H(
        "base",
        14,
        region_edit(_gap_before_manifest),
        "64 zero bytes inserted before the manifest (trailer offset moved)",
        ("BAD_LAYOUT",),
        "§3.3",
        "unreferenced bytes between the last blob and the manifest",
    ),
    "unreferenced_blob": H(
        "base",
        14,
        manifest(_t(1, "blob", 0)),
        "tensor 1 views blob 0: blob 1 unreferenced",
        ("BAD_LAYOUT",),
        "§5.2",
        "a blob no tensor references",
    ),
    "trailing_bytes": H(
        "base",
        14,
        raw(lambda b: b + b"x"),
        "one byte appended after the trailer",
        ("TRUNCATED", "BAD_LAYOUT"),
        "§3.2",
        "bytes after the trailer",
    ),
    "nonzero_padding": H(
        "base",
        14,
        region_edit(_padding),
        "the first padding byte (after the first blob that has padding) -> 0x01",
        ("BAD_LAYOUT",),
        "§3.3",
        "non-zero padding (chunk digests still valid)",
    ),
    "reserved_header_byte": H(
        "base",
        14,
        with_header(header(reserved=bytes(47) + b"\x01")),
        "header byte 63 -> 0x01 (manifest digest recomputed)",
        ("BAD_LAYOUT",),
        "§3.1",
        "non-zero reserved header bytes",
    ),
    # 15 -- alignment
    "raw_blob_misaligned": H(
        "raw_one_blob",
        15,
        region_edit(_misaligned),
        "the raw blob stored 8 bytes later, offset 64 -> 72",
        ("BAD_LAYOUT",),
        "§3.3",
        "a raw blob that is not 64-aligned",
    ),
    "chunk_size_huge": H(
        "base",
        15,
        manifest(_b(0, "chunk_size", 1 << 62)),
        "blob 0 chunk_size 32 -> 2^62",
        ("LIMIT_EXCEEDED", "BAD_TENSOR"),
        "§5.1, §8",
        "an absurd chunk size",
    ),
    "width_huge": H(
        "base",
        15,
        manifest(_b(0, "width", 1 << 32)),
        "blob 0 width 4 -> 2^32",
        ("MANIFEST_SCHEMA", "BAD_TENSOR"),
        "§5.1",
        "an absurd byte-group width",
    ),
    # 16 -- zstd content size
    "zstd_no_content_size": H(
        "zeros_zstd",
        16,
        segment(_frame(bytes(4096), write_content_size=False)),
        "the frame re-encoded without a content size (chunk digest recomputed)",
        ("BAD_COMPRESSED_DATA",),
        "§6.4",
        "a zstd frame without a content size",
    ),
    "zstd_other_content_size": H(
        "zeros_zstd",
        16,
        segment(_frame(bytes(4097))),
        "the frame replaced by one of 4097 zero bytes (chunk digest recomputed)",
        ("BAD_COMPRESSED_DATA",),
        "§6.4",
        "a content size other than the chunk's",
    ),
    # 17 -- decoded size
    "decompression_bomb": H(
        "zeros_zstd",
        17,
        _bomb,
        "nbytes, chunk_size and shape -> 256 MiB, the segment -> "
        "an 8 KB frame of 256 MiB zeros (chunk digest recomputed)",
        ("LIMIT_EXCEEDED",),
        "§8",
        "decoded size far above 1024 x file size + 64 MiB",
    ),
    # 18 -- data after a frame
    "zstd_extra_bytes": H(
        "zeros_zstd",
        18,
        segment(_frame(bytes(4096)) + b"\x00\x00\x00"),
        "3 zero bytes after the frame (chunk digest recomputed)",
        ("BAD_COMPRESSED_DATA",),
        "§6.4",
        "bytes after the zstd frame",
    ),
    "zstd_two_frames": H(
        "zeros_zstd",
        18,
        segment(_frame(bytes(4096)) + _frame(bytes(16))),
        "a second frame (16 zeros) after the frame (chunk digest recomputed)",
        ("BAD_COMPRESSED_DATA",),
        "§6.4",
        "a second frame",
    ),
    "zstd_skippable_after": H(
        "zeros_zstd",
        18,
        segment(_frame(bytes(4096)) + b"\x50\x2a\x4d\x18" + struct.pack("<I", 4) + b"abcd"),
        "a skippable frame after the frame (chunk digest recomputed)",
        ("BAD_COMPRESSED_DATA",),
        "§6.4",
        "smuggled bytes in a skippable frame",
    ),
    # 19 -- window
    "zstd_window_2gib": H(
        "zeros_zstd",
        19,
        segment(_big_window(_frame(bytes(4096)))),
        "frame header: single-segment flag cleared, window descriptor 2 GiB (chunk digest recomputed)",
        ("BAD_COMPRESSED_DATA",),
        "§6.4, §8",
        "a window above max_window_size",
    ),
    # 20 -- checksums
    "blob_checksum_mismatch": H(
        "base",
        20,
        raw(_xor(HEADER_SIZE + 2)),
        "byte 66 (inside blob 0) xor 0x01",
        ("CHECKSUM_MISMATCH",),
        "§7",
        "a changed blob byte",
    ),
    "manifest_checksum_mismatch": H(
        "base",
        20,
        raw(lambda b: _xor(struct.unpack_from("<Q", b, len(b) - TS)[0] + 3)(b)),
        "manifest byte 3 xor 0x01",
        ("CHECKSUM_MISMATCH",),
        "§3.2",
        "a changed manifest byte",
    ),
    "trailer_digest_mismatch": H(
        "base",
        20,
        raw(_xor(-TS + 24)),
        "trailer digest byte 0 xor 0x01",
        ("CHECKSUM_MISMATCH",),
        "§3.2",
        "a changed manifest digest",
    ),
    "chunk_digest_empty": H(
        "base",
        20,
        manifest(lambda w: w["blobs"][0]["chunks"][0].__setitem__("digest", b"")),
        "blob 0 chunk 0 digest -> b''",
        ("BAD_TENSOR",),
        "§5.1",
        "a required chunk digest missing",
    ),
    "digest_id_0": H(
        "base",
        20,
        raw(_trailer_field("<H", 16, 0)),
        "trailer digest_id 1 -> 0 (raw edit)",
        ("UNKNOWN_CHECKSUM",),
        "§3.2",
        "no manifest digest algorithm",
    ),
    "checksum_field_missing": H(
        "base",
        20,
        manifest(lambda w: w.pop("checksum")),
        "manifest key 'checksum' removed",
        ("MANIFEST_SCHEMA",),
        "§5",
        "the chunk digest algorithm missing",
    ),
    "sha256_blob_mismatch": H(
        "sha256_checksum",
        20,
        raw(_xor(HEADER_SIZE + 1)),
        "byte 65 (inside blob 0) xor 0x01",
        ("CHECKSUM_MISMATCH",),
        "§7",
        "a changed blob byte under sha256",
    ),
    # 21 -- names
    "name_slash": H(
        "base",
        21,
        manifest(_t(0, "name", "../w")),
        "tensor 0 name -> '../w'",
        ("BAD_NAME",),
        "§5.6",
        "a name with '/' and '..'",
    ),
    "name_backslash": H(
        "base",
        21,
        manifest(_t(0, "name", "a\\b")),
        "tensor 0 name -> 'a\\b'",
        ("BAD_NAME",),
        "§5.6",
        "a name with a backslash",
    ),
    "name_dotdot": H(
        "base",
        21,
        manifest(_t(0, "name", "a..b")),
        "tensor 0 name -> 'a..b'",
        ("BAD_NAME",),
        "§5.6",
        "a name with '..'",
    ),
    "name_nul": H(
        "base",
        21,
        manifest(_t(0, "name", "w\x00.txt")),
        "tensor 0 name -> 'w\\x00.txt'",
        ("BAD_NAME",),
        "§5.6",
        "a name with NUL",
    ),
    "name_control": H(
        "base",
        21,
        manifest(_t(0, "name", "w\n")),
        "tensor 0 name -> 'w\\n'",
        ("BAD_NAME",),
        "§5.6",
        "a name with a control character",
    ),
    "name_overlong": H(
        "base",
        21,
        manifest(_t(0, "name", "a" * 1025)),
        "tensor 0 name -> 1025 x 'a'",
        ("BAD_NAME",),
        "§5.6, §8",
        "a name above max_name_bytes",
    ),
    "name_empty": H(
        "base", 21, manifest(_t(0, "name", "")), "tensor 0 name -> ''", ("BAD_NAME",), "§5.6", "an empty name"
    ),
    "module_child_slash": H(
        "model_sequential",
        21,
        manifest(lambda w: w["modules"][0].__setitem__("children", {"../0": 1, "1": 2})),
        "Sequential child '0' renamed '../0'",
        ("BAD_NAME",),
        "§5.7",
        "a module local name with '/' and '..'",
    ),
    "module_type_path": H(
        "model_sequential",
        21,
        manifest(_mod(1, "type", "../torch/nn/Linear")),
        "module 1 type -> '../torch/nn/Linear'",
        ("BAD_NAME",),
        "§5.7",
        "a layer type that is a path",
    ),
    "device_path": H(
        "base",
        21,
        manifest(_top("root", {"list": [{"device": "../cuda:0"}]})),
        "root -> [{'device': '../cuda:0'}]",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 3) a device node that is not a device name",
    ),
    # 22 -- external references
    "blob_external_path": H(
        "base",
        22,
        manifest(_b(0, "path", "/etc/passwd")),
        "blob 0 gains a key 'path': '/etc/passwd'",
        ("MANIFEST_SCHEMA",),
        "§5.1",
        "a blob naming an external file",
    ),
    "tensor_external_url": H(
        "base",
        22,
        manifest(_t(0, "location", "https://example.com/w.bin")),
        "tensor 0 gains a key 'location': URL",
        ("MANIFEST_SCHEMA",),
        "§5.2",
        "a tensor naming a URL",
    ),
    "root_file_node": H(
        "base",
        22,
        manifest(_top("root", {"file": "../../etc/passwd"})),
        "root -> {'file': '../../etc/passwd'}",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "an object-tree node kind that names a file",
    ),
    # 23 -- codec and hash names
    "codec_pickle": H(
        "base",
        23,
        manifest(_b(0, "codec", "pickle")),
        "blob 0 codec -> 'pickle'",
        ("UNKNOWN_CODEC",),
        "§5.1",
        "a codec not on the list",
    ),
    "checksum_md5": H(
        "base",
        23,
        manifest(_top("checksum", "md5")),
        "manifest checksum -> 'md5'",
        ("UNKNOWN_CHECKSUM",),
        "§7",
        "a hash not on the list",
    ),
    "checksum_pickle": H(
        "base",
        23,
        manifest(_top("checksum", "pickle")),
        "manifest checksum -> 'pickle'",
        ("UNKNOWN_CHECKSUM",),
        "§7",
        "a code-execution name as hash",
    ),
    # 24 -- code lookalikes
    "module_type_os_system": H(
        "model_sequential",
        24,
        manifest(_mod(1, "type", "os.system")),
        "module 1 type 'torch.nn.Linear' -> 'os.system'",
        ("UNREGISTERED_TYPE",),
        "§5.7",
        "a layer type naming an importable function: never imported",
    ),
    "root_class_node": H(
        "base",
        24,
        manifest(_top("root", {"class": "builtins.eval"})),
        "root -> {'class': 'builtins.eval'}",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "an object-tree node naming a class",
    ),
    "config_code_string": H(
        "model_sequential",
        24,
        manifest(
            lambda w: w["modules"][1]["config"].__setitem__("in_features", "__import__('os').system('true')")
        ),
        "Linear config in_features 4 -> a code string",
        ("BAD_CONFIG",),
        "§5.7",
        "a layer config holding code: it stays data and fails construction",
    ),
    # 25 -- required features
    "required_flag": H(
        "base",
        25,
        with_header(header(flags=1)),
        "header required_flags 0 -> 1 (manifest digest recomputed)",
        ("UNKNOWN_FEATURE",),
        "§3.1",
        "an unknown required container flag",
    ),
    "required_feature": H(
        "base",
        25,
        manifest(_top("required_features", ["org.example.sparse"])),
        "required_features [] -> ['org.example.sparse']",
        ("UNKNOWN_FEATURE",),
        "§5",
        "an unknown required manifest feature",
    ),
    "unknown_top_level_field": H(
        "base",
        25,
        manifest(_top("org.example.new", 1)),
        "manifest gains a key 'org.example.new' outside 'extensions'",
        ("MANIFEST_SCHEMA",),
        "§5, §12",
        "optional data outside 'extensions'",
    ),
    "v2_with_set_node": H(
        "base",
        25,
        manifest(lambda w: w.update(schema_version=2, root={"set": [1]})),
        "schema_version 3 -> 2, root -> {'set': [1]} (a version-3 node)",
        ("MANIFEST_SCHEMA",),
        "§12",
        "a version-2 manifest holding a node kind version 3 added",
    ),
    "v2_with_v3_dtype": H(
        "base",
        25,
        manifest(_v2_with_v3_dtype),
        "schema_version 3 -> 2, tensor 0 dtype -> 'float8_e8m0fnu' (a version-3 dtype)",
        ("UNKNOWN_DTYPE",),
        "§12",
        "a version-2 manifest naming a dtype version 3 added",
    ),
    # 26 -- strict integers
    "float_dim": H(
        "base",
        26,
        manifest(_t(0, "shape", [16.0])),
        "tensor 0 shape [16] -> [16.0]",
        ("MANIFEST_SCHEMA",),
        "§4",
        "a float dimension",
    ),
    "bool_offset": H(
        "base",
        26,
        manifest(_t(0, "offset", False)),
        "tensor 0 offset 0 -> false",
        ("MANIFEST_SCHEMA",),
        "§4",
        "a bool offset",
    ),
    "str_chunk_size": H(
        "base",
        26,
        manifest(_b(0, "chunk_size", "32")),
        "blob 0 chunk_size 32 -> '32'",
        ("MANIFEST_SCHEMA",),
        "§4",
        "a string chunk size",
    ),
    "nan_nbytes": H(
        "base",
        26,
        manifest(_b(0, "nbytes", float("nan"))),
        "blob 0 nbytes 64 -> NaN",
        ("MANIFEST_SCHEMA",),
        "§4",
        "NaN where an integer is required",
    ),
    "inf_blob_length": H(
        "base",
        26,
        manifest(_b(0, "length", float("inf"))),
        "blob 0 length -> +inf",
        ("MANIFEST_SCHEMA",),
        "§4",
        "Inf where an integer is required",
    ),
    "bool_byte_2": H(
        "base",
        26,
        _bool_two,
        "the bool blob's byte 5 -> 2 (chunk digest recomputed)",
        ("BAD_VALUE",),
        "§5.3",
        "a bool byte other than 0 or 1",
    ),
    "ndarray_bool_byte_2": H(
        "base",
        26,
        manifest(
            _top("root", {"list": [{"ndarray": {"dtype": "bool", "shape": [2], "data": bytes([1, 2])}}]})
        ),
        "root -> [{'ndarray': {'dtype': 'bool', 'shape': [2], 'data': bytes([1, 2])}}]",
        ("BAD_VALUE",),
        "§5.4",
        "(schema 3) a bool ndarray node holding a byte other than 0 or 1",
    ),
    # 27 -- polyglots
    "zip_appended": H(
        "base",
        27,
        raw(lambda b: b + _zip()),
        "a ZIP archive appended after the trailer",
        ("TRUNCATED", "BAD_LAYOUT"),
        "§3.2, §13",
        "a file that is also a ZIP",
    ),
    "pickle_prepended": H(
        "base",
        27,
        raw(lambda b: b"\x80\x04K\x01." + b),
        "a pickle prepended",
        ("BAD_MAGIC",),
        "§3.1, §13",
        "a file that starts as a pickle",
    ),
    "zip_prepended": H(
        "base",
        27,
        raw(lambda b: _zip() + b),
        "a ZIP archive prepended",
        ("BAD_MAGIC",),
        "§3.1, §13",
        "a file that starts as a ZIP",
    ),
    # 28 -- huge but within limits
    "many_tensors_duplicate_last": H(
        "base",
        28,
        manifest(_many_tensors_dup),
        "10,000 empty tensors appended, the last named like the first",
        ("BAD_NAME",),
        "§5.2, §8",
        "a long tensor table whose last entry is invalid",
    ),
    "huge_metadata_duplicate_last": H(
        "base",
        28,
        manifest_bytes(_huge_metadata_dup),
        "metadata -> a map of 10,000 entries whose last key repeats the first",
        ("MANIFEST_DECODE",),
        "§4, §8",
        "a large metadata map with a late duplicate key",
    ),
    # 30 -- torn writes
    "torn_after_blobs": H(
        "base",
        30,
        raw(lambda b: b[: struct.unpack_from("<Q", b, len(b) - TS)[0]]),
        "cut at the manifest offset (blobs written, manifest and trailer missing)",
        ("TRUNCATED",),
        "§3.2, §11",
        "a torn write after the blobs",
    ),
    "torn_zero_trailer": H(
        "base",
        30,
        raw(lambda b: b[:-TS] + bytes(TS)),
        "the trailer -> 64 zero bytes",
        ("TRUNCATED",),
        "§3.2, §11",
        "a preallocated file whose trailer was never written",
    ),
    "torn_half": H(
        "model_sequential",
        30,
        raw(lambda b: b[: len(b) // 2]),
        "cut to its first half",
        ("TRUNCATED",),
        "§3.2, §11",
        "a torn model file",
    ),
    # 31 -- registry
    "module_unregistered": H(
        "model_sequential",
        31,
        manifest(_mod(1, "type", "example.NotRegistered")),
        "module 1 type 'torch.nn.Linear' -> 'example.NotRegistered'",
        ("UNREGISTERED_TYPE",),
        "§5.7",
        "a layer type no program registers",
    ),
    "module_version_99": H(
        "model_sequential",
        31,
        manifest(_mod(1, "version", 99)),
        "module 1 (torch.nn.Linear) version 1 -> 99",
        ("LAYER_VERSION", "MIGRATION"),
        "§5.7, §5.8",
        "a layer version newer than the code",
    ),
    "module_config_fails": H(
        "model_sequential",
        31,
        manifest(lambda w: w["modules"][1]["config"].pop("in_features")),
        "Linear config: key 'in_features' removed",
        ("BAD_CONFIG",),
        "§5.7",
        "a layer config that fails construction",
    ),
    "module_parameter_missing": H(
        "model_sequential",
        31,
        manifest(lambda w: w["modules"][1]["parameters"].pop("bias")),
        "Linear record: parameter 'bias' removed (config still says bias=True)",
        ("STATE_MISMATCH",),
        "§5.7",
        "a record whose parameters differ from the constructed layer's",
    ),
    "module_cycle": H(
        "model_sequential",
        31,
        manifest(_module_cycle),
        "module 1 gains child 'loop' -> module 0",
        ("BAD_LAYOUT",),
        "§5.7",
        "a cycle in the module graph",
    ),
}


# -- writing -------------------------------------------------------------------------------------------------
def _json(obj: Any) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def category(codes: tuple[str, ...]) -> str:
    """The phase of the first allowed code (the one the order of SPEC.md §9 reaches first)."""
    return PHASE[codes[0]]


def write(out: Path) -> list[Path]:
    """Write the whole corpus into `out/valid` and `out/hostile` (both emptied first)."""
    written: list[Path] = []
    for sub in ("valid", "hostile"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
        (out / sub).mkdir(parents=True)
    for name, v in VALID.items():
        path = out / "valid" / f"{name}.tmodel"
        tmodel.save(v.make(), path, metadata=v.metadata, **v.options)
        case = {
            "id": f"valid/{name}",
            "file": path.name,
            "tier": v.tier,
            "category": "valid",
            "spec": v.spec,
            "description": v.description,
            "expect": {"description": describe(str(path))},
        }
        (out / "valid" / f"{name}.json").write_text(_json(case), encoding="utf-8")
        written += [path, out / "valid" / f"{name}.json"]
    for name, h in HOSTILE.items():
        sibling = (out / "valid" / f"{h.sibling}.tmodel").read_bytes()
        data = h.edit(sibling)
        assert data != sibling, name
        path = out / "hostile" / f"{name}.tmodel"
        path.write_bytes(data)
        cls, motivation = ATTACKS[h.line]
        case = {
            "id": f"hostile/{name}",
            "file": path.name,
            "tier": h.tier,
            "category": category(h.codes),
            "spec": h.spec,
            "description": h.description,
            "sibling": f"valid/{h.sibling}.tmodel",
            "change": h.change,
            "attack": {"line": h.line, "class": cls, "motivation": motivation},
            "expect": {"error": {"phase": category(h.codes), "codes": list(h.codes)}},
        }
        (out / "hostile" / f"{name}.json").write_text(_json(case), encoding="utf-8")
        written += [path, out / "hostile" / f"{name}.json"]
    return written


def table() -> str:
    """The README table: every ATTACKS.md line and the hostile cases that cover it."""
    rows = ["| line | attack class | hostile cases |", "|---|---|---|"]
    for line, (cls, _) in ATTACKS.items():
        names = [f"`{n}`" for n, h in HOSTILE.items() if h.line == line]
        where = ", ".join(names) if names else ""
        if line in NOT_A_FILE:
            where = (where + "; " if where else "") + "no file: " + NOT_A_FILE[line]
        rows.append(f"| {line} | {cls} | {where} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str]) -> None:
    if argv[:1] == ["--table"]:
        sys.stdout.write(table())
        return
    out = Path(argv[0]) if argv else CASES
    for p in write(out):
        print(hashlib.sha256(p.read_bytes()).hexdigest()[:16], p, file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
