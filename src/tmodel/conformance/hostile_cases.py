"""The hostile cases of the container, manifest, data and model rules: each a valid sibling with ONE
documented change (make_cases.py states the rules of the corpus)."""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from tmodel.container.digests import ALGORITHMS
from tmodel.container.framing import HEADER_SIZE, TRAILER_SIZE, align
from tmodel.manifest.encoding import pack_manifest
from tmodel.manifest.schema import SCHEMA_VERSION

from .surgery import (
    Edit,
    as_older,
    big_window,
    blob_set,
    bomb,
    build,
    flip_signature,
    header,
    manifest,
    manifest_bytes,
    packed_map,
    raw,
    region_edit,
    segment,
    signature_block,
    split,
    tensor_set,
    trailer_field,
    with_header,
    with_raw,
    xor_at,
    zstd_frame,
)


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
    seg = zstd_frame(bytes(values))
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


def _older_with_root(version: int, root: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(w: dict[str, Any]) -> None:
        as_older(w, version)
        w["root"] = root

    return mutate


def _v2_with_v3_dtype(w: dict[str, Any]) -> None:
    as_older(w, 2)
    w["tensors"][0]["dtype"] = "float8_e8m0fnu"


def _optim(w: dict[str, Any]) -> dict[str, Any]:
    """The optimizer node's body in training_state's root (params: record 1 weight and bias in group 0,
    record 3 weight in group 1; record 3 has a nil bias)."""
    body: dict[str, Any] = next(v for k, v in w["root"]["dict"] if k == "optim")["optimizer"]
    return body


def _stateful(w: dict[str, Any], key: str) -> dict[str, Any]:
    body: dict[str, Any] = next(v for k, v in w["root"]["dict"] if k == key)["stateful"]
    return body


def _opt_param(i: int, **change: Any) -> Callable[[dict[str, Any]], None]:
    return lambda w: _optim(w)["params"][i].update(change)


def _opt_param_twice(w: dict[str, Any]) -> None:
    params = _optim(w)["params"]
    params[1] = copy.deepcopy(params[0])


def _opt_param_tied(w: dict[str, Any]) -> None:
    """Record 3's weight made the tensor of record 1's: one tensor, two optimizer parameters."""
    w["modules"][3]["parameters"]["weight"]["tensor"] = w["modules"][1]["parameters"]["weight"]["tensor"]


def _optimizer_in_config(w: dict[str, Any]) -> None:
    w["modules"][1]["config"]["optim"] = {"optimizer": copy.deepcopy(_optim(w))}


def _v5_with_optimizer(w: dict[str, Any]) -> None:
    as_older(w, 5)
    w["root"]["dict"] = [e for e in w["root"]["dict"] if e[0] in ("model", "optim")]


def _module_cycle(w: dict[str, Any]) -> None:
    w["modules"][1]["children"] = {"loop": 0}


def _module_chain(w: dict[str, Any]) -> None:
    """129 Sequential records, each the only child of the one before: a path of more than max_depth."""
    first = len(w["modules"])
    for k in range(129):
        child = {"0": first + k + 1} if k < 128 else {}
        w["modules"].append(
            {
                "type": "torch.nn.Sequential",
                "version": 1,
                "config": {},
                "parameters": {},
                "buffers": {},
                "children": child,
                "training": False,
            }
        )
    w["modules"][0]["children"]["deep"] = first


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
    #: what the read request gives the reader (PROTOCOL.md); None: what the sibling's gives
    read_with: dict[str, Any] | None = None
    #: capabilities (PROTOCOL.md) the case needs besides those `write` derives from the file
    requires: tuple[str, ...] = ()


H = Hostile
TS = TRAILER_SIZE


def _meta_float32(shape: list[int], strides: list[int]) -> dict[str, Any]:
    """A plain float32 meta_tensor node (schema 4) of `shape` and `strides`, at offset 0."""
    body = {"dtype": "float32", "shape": shape, "strides": strides, "offset": 0}
    return {"meta_tensor": {**body, "parameter": False, "requires_grad": False}}


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
    f"schema_version_{SCHEMA_VERSION + 1}": H(
        "base",
        3,
        manifest(_top("schema_version", SCHEMA_VERSION + 1)),
        f"manifest schema_version {SCHEMA_VERSION} -> {SCHEMA_VERSION + 1}",
        ("UNSUPPORTED_VERSION",),
        "§5, §12",
        "a schema version newer than implemented",
    ),
    # 4 -- manifest length
    "manifest_length_max": H(
        "base",
        4,
        raw(trailer_field("<Q", 8, 2**64 - 1)),
        "trailer manifest_length -> 2^64-1 (raw edit)",
        ("LIMIT_EXCEEDED", "BAD_LAYOUT"),
        "§3.2, §8",
        "a manifest length of 2^64-1: nothing may be allocated for it",
    ),
    "manifest_length_past_eof": H(
        "base",
        4,
        raw(lambda b: trailer_field("<Q", 8, len(b))(b)),
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
    "duplicate_tuple_keys": H(
        "base",
        6,
        manifest(_top("root", {"dict": [[{"tuple": [1, "a"]}, 0], [{"tuple": [1, "a"]}, 1]]})),
        "root -> a dict with the key (1, 'a') twice",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 4) two tuple keys with one identity",
    ),
    "tensor_attrs_duplicate_name": H(
        "base",
        6,
        manifest(_top("root", {"tensor_attrs": {"of": {"tensor": 0}, "attrs": [["a", 1], ["a", 2]]}})),
        "root -> tensor 0 with the attribute 'a' twice",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 4) a tensor_attrs node naming an attribute twice",
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
        manifest(tensor_set(0, "dtype", b"float32")),
        "tensor 0 dtype as bin b'float32'",
        ("MANIFEST_SCHEMA",),
        "§4",
        "bin where a string is required",
    ),
    "name_as_int": H(
        "base",
        7,
        manifest(tensor_set(0, "name", 5)),
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
        manifest(blob_set(0, "nbytes", 1 << 40)),
        "blob 0 nbytes 64 -> 2^40",
        ("LIMIT_EXCEEDED", "BAD_TENSOR"),
        "§5.1, §8",
        "a decoded size of 1 TiB declared by a tiny file (also: chunk count mismatch)",
    ),
    # 10 -- dtypes
    "dtype_unknown": H(
        "base",
        10,
        manifest(tensor_set(0, "dtype", "float128")),
        "tensor 0 dtype -> 'float128'",
        ("UNKNOWN_DTYPE",),
        "§5.3",
        "a dtype not in the table",
    ),
    "dtype_negative": H(
        "base",
        10,
        manifest(tensor_set(0, "dtype", -1)),
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
        manifest(tensor_set(0, "dtype", "uint4")),
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
        manifest(tensor_set(0, "shape", [-16])),
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
    "meta_tensor_overflow": H(
        "base",
        11,
        manifest(
            _top(
                "root",
                _meta_float32([2**32, 2**32], [0, 0]),
            )
        ),
        "root -> a float32 meta_tensor of shape [2^32, 2^32]",
        ("BAD_TENSOR",),
        "§5.4",
        "(schema 4) a meta tensor whose numel * itemsize is above 2^63-1",
    ),
    "meta_tensor_strides_rank": H(
        "base",
        11,
        manifest(
            _top(
                "root",
                _meta_float32([2, 3], [1]),
            )
        ),
        "root -> a meta_tensor of shape [2, 3] with one stride",
        ("BAD_TENSOR",),
        "§5.4",
        "(schema 4) a meta tensor with fewer strides than dimensions",
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
        manifest(tensor_set(0, "shape", [17])),
        "tensor 0 shape [16] -> [17]",
        ("BAD_TENSOR",),
        "§5.2",
        "a view larger than its blob's decoded bytes",
    ),
    "strides_beyond_blob": H(
        "base",
        12,
        manifest(tensor_set(0, "strides", [2])),
        "tensor 0 strides [1] -> [2]",
        ("BAD_TENSOR",),
        "§5.2",
        "strides that reach past the blob",
    ),
    "nbytes_not_chunked": H(
        "base",
        12,
        manifest(blob_set(0, "nbytes", 68)),
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
        manifest(tensor_set(0, "offset", 2**64 - 4)),
        "tensor 0 offset 0 -> 2^64-4",
        ("BAD_TENSOR", "MANIFEST_SCHEMA"),
        "§5.2",
        "offset + extent overflows 64 bits (the JSON Schema caps sizes at 2^63-1)",
    ),
    "tensor_offset_int64_max": H(
        "base",
        13,
        manifest(tensor_set(0, "offset", 2**63 - 4)),
        "tensor 0 offset 0 -> 2^63-4",
        ("BAD_TENSOR",),
        "§5.2",
        "offset + extent overflows a signed 64-bit sum",
    ),
    "blob_offset_past_eof": H(
        "base",
        13,
        manifest(blob_set(2, "offset", 1 << 40)),
        "blob 2 offset -> 2^40",
        ("BAD_LAYOUT",),
        "§3.3",
        "a blob past the end of the file",
    ),
    "blob_offset_into_header": H(
        "base",
        13,
        manifest(blob_set(0, "offset", 0)),
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
        manifest(tensor_set(1, "blob", 0)),
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
        manifest(blob_set(0, "chunk_size", 1 << 62)),
        "blob 0 chunk_size 32 -> 2^62",
        ("LIMIT_EXCEEDED", "BAD_TENSOR"),
        "§5.1, §8",
        "an absurd chunk size",
    ),
    "width_huge": H(
        "base",
        15,
        manifest(blob_set(0, "width", 1 << 32)),
        "blob 0 width 4 -> 2^32",
        ("MANIFEST_SCHEMA", "BAD_TENSOR"),
        "§5.1",
        "an absurd byte-group width",
    ),
    # 16 -- zstd content size
    "zstd_no_content_size": H(
        "zeros_zstd",
        16,
        segment(zstd_frame(bytes(4096), write_content_size=False)),
        "the frame re-encoded without a content size (chunk digest recomputed)",
        ("BAD_COMPRESSED_DATA",),
        "§6.4",
        "a zstd frame without a content size",
    ),
    "zstd_other_content_size": H(
        "zeros_zstd",
        16,
        segment(zstd_frame(bytes(4097))),
        "the frame replaced by one of 4097 zero bytes (chunk digest recomputed)",
        ("BAD_COMPRESSED_DATA",),
        "§6.4",
        "a content size other than the chunk's",
    ),
    # 17 -- decoded size
    "decompression_bomb": H(
        "zeros_zstd",
        17,
        bomb,
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
        segment(zstd_frame(bytes(4096)) + b"\x00\x00\x00"),
        "3 zero bytes after the frame (chunk digest recomputed)",
        ("BAD_COMPRESSED_DATA",),
        "§6.4",
        "bytes after the zstd frame",
    ),
    "zstd_two_frames": H(
        "zeros_zstd",
        18,
        segment(zstd_frame(bytes(4096)) + zstd_frame(bytes(16))),
        "a second frame (16 zeros) after the frame (chunk digest recomputed)",
        ("BAD_COMPRESSED_DATA",),
        "§6.4",
        "a second frame",
    ),
    "zstd_skippable_after": H(
        "zeros_zstd",
        18,
        segment(zstd_frame(bytes(4096)) + b"\x50\x2a\x4d\x18" + struct.pack("<I", 4) + b"abcd"),
        "a skippable frame after the frame (chunk digest recomputed)",
        ("BAD_COMPRESSED_DATA",),
        "§6.4",
        "smuggled bytes in a skippable frame",
    ),
    # 19 -- window
    "zstd_window_2gib": H(
        "zeros_zstd",
        19,
        segment(big_window(zstd_frame(bytes(4096)))),
        "frame header: single-segment flag cleared, window descriptor 2 GiB (chunk digest recomputed)",
        ("BAD_COMPRESSED_DATA",),
        "§6.4, §8",
        "a window above max_window_size",
    ),
    # 20 -- checksums
    "blob_checksum_mismatch": H(
        "base",
        20,
        raw(xor_at(HEADER_SIZE + 2)),
        "byte 66 (inside blob 0) xor 0x01",
        ("CHECKSUM_MISMATCH",),
        "§7",
        "a changed blob byte",
    ),
    "manifest_checksum_mismatch": H(
        "base",
        20,
        raw(lambda b: xor_at(struct.unpack_from("<Q", b, len(b) - TS)[0] + 3)(b)),
        "manifest byte 3 xor 0x01",
        ("CHECKSUM_MISMATCH",),
        "§3.2",
        "a changed manifest byte",
    ),
    "trailer_digest_mismatch": H(
        "base",
        20,
        raw(xor_at(-TS + 24)),
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
        raw(trailer_field("<H", 16, 0)),
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
        raw(xor_at(HEADER_SIZE + 1)),
        "byte 65 (inside blob 0) xor 0x01",
        ("CHECKSUM_MISMATCH",),
        "§7",
        "a changed blob byte under sha256",
    ),
    # 21 -- names
    "name_slash": H(
        "base",
        21,
        manifest(tensor_set(0, "name", "../w")),
        "tensor 0 name -> '../w'",
        ("BAD_NAME",),
        "§5.6",
        "a name with '/' and '..'",
    ),
    "name_backslash": H(
        "base",
        21,
        manifest(tensor_set(0, "name", "a\\b")),
        "tensor 0 name -> 'a\\b'",
        ("BAD_NAME",),
        "§5.6",
        "a name with a backslash",
    ),
    "name_dotdot": H(
        "base",
        21,
        manifest(tensor_set(0, "name", "a..b")),
        "tensor 0 name -> 'a..b'",
        ("BAD_NAME",),
        "§5.6",
        "a name with '..'",
    ),
    "name_nul": H(
        "base",
        21,
        manifest(tensor_set(0, "name", "w\x00.txt")),
        "tensor 0 name -> 'w\\x00.txt'",
        ("BAD_NAME",),
        "§5.6",
        "a name with NUL",
    ),
    "name_control": H(
        "base",
        21,
        manifest(tensor_set(0, "name", "w\n")),
        "tensor 0 name -> 'w\\n'",
        ("BAD_NAME",),
        "§5.6",
        "a name with a control character",
    ),
    "name_overlong": H(
        "base",
        21,
        manifest(tensor_set(0, "name", "a" * 1025)),
        "tensor 0 name -> 1025 x 'a'",
        ("BAD_NAME",),
        "§5.6, §8",
        "a name above max_name_bytes",
    ),
    "name_empty": H(
        "base",
        21,
        manifest(tensor_set(0, "name", "")),
        "tensor 0 name -> ''",
        ("BAD_NAME",),
        "§5.6",
        "an empty name",
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
    "layout_path": H(
        "base",
        21,
        manifest(_top("root", {"list": [{"layout": "../strided"}]})),
        "root -> [{'layout': '../strided'}]",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 4) a layout node that is not a layout name",
    ),
    # 22 -- external references
    "blob_external_path": H(
        "base",
        22,
        manifest(blob_set(0, "path", "/etc/passwd")),
        "blob 0 gains a key 'path': '/etc/passwd'",
        ("MANIFEST_SCHEMA",),
        "§5.1",
        "a blob naming an external file",
    ),
    "tensor_external_url": H(
        "base",
        22,
        manifest(tensor_set(0, "location", "https://example.com/w.bin")),
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
        manifest(blob_set(0, "codec", "pickle")),
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
    "key_holds_tensor": H(
        "base",
        24,
        manifest(_top("root", {"dict": [[{"tuple": [{"tensor": 0}]}, 1]]})),
        "root -> a dict keyed by a tuple holding tensor 0",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 4) a key that refers to a tensor (keys are values, never references)",
    ),
    "tensor_attrs_of_module": H(
        "model_sequential",
        24,
        manifest(_top("root", {"tensor_attrs": {"of": {"module": 0}, "attrs": []}})),
        "root -> attributes on module 0 instead of a tensor",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 4) a tensor_attrs node wrapping something that is not a tensor",
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
        with_header(header(flags=4)),
        "header required_flags 0 -> 4 (manifest digest recomputed; bit 0 is SIGNED, bit 1 ENCRYPTED, bit 2 "
        "unknown)",
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
        manifest(_older_with_root(2, {"set": [1]})),
        "schema_version 6 -> 2 (key 'checkpoint' removed), root -> {'set': [1]} (a version-3 node)",
        ("MANIFEST_SCHEMA",),
        "§12",
        "a version-2 manifest holding a node kind version 3 added",
    ),
    "v2_with_v3_dtype": H(
        "base",
        25,
        manifest(_v2_with_v3_dtype),
        "schema_version 6 -> 2 (key 'checkpoint' removed), tensor 0 dtype -> 'float8_e8m0fnu' (a version-3 "
        "dtype)",
        ("UNKNOWN_DTYPE",),
        "§12",
        "a version-2 manifest naming a dtype version 3 added",
    ),
    "v3_with_layout_node": H(
        "base",
        25,
        manifest(_older_with_root(3, {"layout": "strided"})),
        "schema_version 6 -> 3 (key 'checkpoint' removed), root -> {'layout': 'strided'} (a version-4 node)",
        ("MANIFEST_SCHEMA",),
        "§12",
        "a version-3 manifest holding a node kind version 4 added",
    ),
    "v3_with_tuple_key": H(
        "base",
        25,
        manifest(_older_with_root(3, {"dict": [[{"tuple": [1]}, 0]]})),
        "schema_version 6 -> 3 (key 'checkpoint' removed), root -> {(1,): 0} (a version-4 key)",
        ("MANIFEST_SCHEMA",),
        "§12",
        "a version-3 manifest holding a key that is not a scalar",
    ),
    # 26 -- strict integers
    "float_dim": H(
        "base",
        26,
        manifest(tensor_set(0, "shape", [16.0])),
        "tensor 0 shape [16] -> [16.0]",
        ("MANIFEST_SCHEMA",),
        "§4",
        "a float dimension",
    ),
    "bool_offset": H(
        "base",
        26,
        manifest(tensor_set(0, "offset", False)),
        "tensor 0 offset 0 -> false",
        ("MANIFEST_SCHEMA",),
        "§4",
        "a bool offset",
    ),
    "str_chunk_size": H(
        "base",
        26,
        manifest(blob_set(0, "chunk_size", "32")),
        "blob 0 chunk_size 32 -> '32'",
        ("MANIFEST_SCHEMA",),
        "§4",
        "a string chunk size",
    ),
    "nan_nbytes": H(
        "base",
        26,
        manifest(blob_set(0, "nbytes", float("nan"))),
        "blob 0 nbytes 64 -> NaN",
        ("MANIFEST_SCHEMA",),
        "§4",
        "NaN where an integer is required",
    ),
    "inf_blob_length": H(
        "base",
        26,
        manifest(blob_set(0, "length", float("inf"))),
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
    # schema 5: config references and records built by their parent
    "config_ref_in_root": H(
        "model_sequential",
        31,
        manifest(_top("root", {"list": [{"ref": "torch.nn.ReLU"}]})),
        "root -> [{'ref': 'torch.nn.ReLU'}]",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "a config-only reference in the object tree",
    ),
    "config_ref_path": H(
        "model_sequential",
        21,
        manifest(lambda w: w["modules"][1]["config"].__setitem__("act", {"ref": "../os/system"})),
        "Linear config gains act -> {'ref': '../os/system'}",
        ("BAD_NAME",),
        "§5.4",
        "a reference name that is a path",
    ),
    "config_partial_duplicate_keyword": H(
        "model_sequential",
        31,
        manifest(
            lambda w: w["modules"][1]["config"].__setitem__(
                "act",
                {
                    "partial": {
                        "ref": "torch.nn.LayerNorm",
                        "args": [],
                        "kwargs": [["eps", 1.0], ["eps", 2.0]],
                    }
                },
            )
        ),
        "Linear config gains act -> a partial with keyword 'eps' twice",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "a partial whose keyword is given twice",
    ),
    "config_object_extra_key": H(
        "model_sequential",
        31,
        manifest(
            lambda w: w["modules"][1]["config"].__setitem__(
                "act", {"object": {"type": "example.Options", "data": 1, "code": "x"}}
            )
        ),
        "Linear config gains act -> an object node with an extra key 'code'",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "an object node with a key the format does not define",
    ),
    "module_parent_built_with_config": H(
        "model_sequential",
        31,
        manifest(_mod(1, "version", None)),
        "module 1 (torch.nn.Linear) version 1 -> nil, its config kept",
        ("MANIFEST_SCHEMA",),
        "§5.7",
        "a record built by its parent that carries a config",
    ),
    "module_parent_built_path": H(
        "model_sequential",
        21,
        manifest(lambda w: w["modules"][1].update(version=None, config={}, type="../torch/nn/Linear")),
        "module 1 version -> nil, config -> {}, type -> '../torch/nn/Linear'",
        ("BAD_NAME",),
        "§5.7",
        "a class name that is a path",
    ),
    "module_chain_too_deep": H(
        "model_sequential",
        8,
        manifest(_module_chain),
        "module 0 gains child 'deep', the first of 129 nested Sequential records (130 on the path)",
        ("LIMIT_EXCEEDED",),
        "§5.7",
        "a path through more than max_depth module records",
    ),
    # schema 6: training state (optimizer and stateful nodes) and the checkpoint version
    "optimizer_param_module_out_of_range": H(
        "training_state",
        10,
        manifest(_opt_param(0, module=99)),
        "optimizer parameter 0 module 1 -> 99",
        ("BAD_TENSOR",),
        "§5.4",
        "(schema 6) an optimizer parameter of a module record beyond the table",
    ),
    "optimizer_param_not_a_parameter": H(
        "training_state",
        10,
        manifest(_opt_param(0, name="running_mean")),
        "optimizer parameter 0 name 'weight' -> 'running_mean' (no parameter of record 1, a Linear)",
        ("BAD_TENSOR",),
        "§5.4",
        "(schema 6) an optimizer parameter its module record does not hold",
    ),
    "optimizer_param_nil_slot": H(
        "training_state",
        10,
        manifest(_opt_param(2, name="bias")),
        "optimizer parameter 2 name 'weight' -> 'bias' (record 3's nil parameter slot)",
        ("BAD_TENSOR",),
        "§5.4",
        "(schema 6) an optimizer parameter naming an unset parameter slot (bias=False)",
    ),
    "optimizer_param_twice": H(
        "training_state",
        6,
        manifest(_opt_param_twice),
        "optimizer parameter 1 (record 1 'bias') -> a copy of parameter 0 (record 1 'weight')",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 6) one parameter's optimizer state given twice (readers keeping the first or last differ)",
    ),
    "optimizer_param_tied": H(
        "training_state",
        6,
        manifest(_opt_param_tied),
        "module 3 parameter 'weight' -> module 1's weight tensor (optimizer parameters 0 and 2 then name it)",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 6) a tied parameter given optimizer state twice (a state dict one parameter too long)",
    ),
    "optimizer_group_out_of_range": H(
        "training_state",
        10,
        manifest(_opt_param(2, group=2)),
        "optimizer parameter 2 group 1 -> 2 (the node has groups 0 and 1)",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 6) an optimizer parameter of a parameter group beyond the node's groups",
    ),
    "optimizer_groups_out_of_order": H(
        "training_state",
        6,
        manifest(_opt_param(0, group=1)),
        "optimizer parameter 0 group 0 -> 1 (groups along the params: 1, 0, 1)",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 6) optimizer parameters not in group order (positional readers would regroup them)",
    ),
    "optimizer_group_lists_params": H(
        "training_state",
        6,
        manifest(lambda w: _optim(w)["groups"][0]["dict"].append(["params", {"list": [0, 1]}])),
        "optimizer group 0 gains 'params' -> [0, 1]",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 6) a parameter group that lists parameters by position beside the node's params",
    ),
    "optimizer_state_int_key": H(
        "training_state",
        7,
        manifest(lambda w: _optim(w)["params"][0]["state"]["dict"].append([1, 0.5])),
        "optimizer parameter 0 state gains the int key 1 -> 0.5",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 6) an optimizer parameter's state that is not a dict of string keys",
    ),
    "optimizer_in_layer_config": H(
        "training_state",
        31,
        manifest(_optimizer_in_config),
        "module 1 (torch.nn.Linear) config gains 'optim' -> a copy of the optimizer node",
        ("MANIFEST_SCHEMA",),
        "§5.4, §5.7",
        "(schema 6) training state in a layer config (the object tree only holds it)",
    ),
    "optimizer_state_holds_module": H(
        "training_state",
        24,
        manifest(lambda w: _optim(w)["params"][0]["state"]["dict"].append(["m", {"module": 0}])),
        "optimizer parameter 0 state gains 'm' -> {'module': 0}",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 6) a module reference inside optimizer state (state is data; it never rebuilds a module)",
    ),
    "optimizer_class_path": H(
        "training_state",
        21,
        manifest(lambda w: _optim(w).update({"class": "../torch/optim/AdamW"})),
        "optimizer class 'torch.optim.adamw.AdamW' -> '../torch/optim/AdamW'",
        ("BAD_NAME",),
        "§5.4, §5.7",
        "(schema 6) an optimizer class name that is a path",
    ),
    "stateful_kind_unknown": H(
        "training_state",
        10,
        manifest(lambda w: _stateful(w, "sched").update(kind="callback")),
        "the scheduler's stateful kind 'lr_scheduler' -> 'callback'",
        ("MANIFEST_SCHEMA",),
        "§5.4",
        "(schema 6) a stateful node of a kind not on the format's list",
    ),
    "stateful_class_path": H(
        "training_state",
        21,
        manifest(lambda w: _stateful(w, "sched").update({"class": "torch/optim/lr_scheduler/StepLR"})),
        "the scheduler's class 'torch.optim.lr_scheduler.StepLR' -> 'torch/optim/lr_scheduler/StepLR'",
        ("BAD_NAME",),
        "§5.4, §5.7",
        "(schema 6) a stateful node's class name that is a path",
    ),
    "checkpoint_type_path": H(
        "training_state",
        21,
        manifest(_top("checkpoint", {"type": "../conformance/Trainer", "version": 2})),
        "checkpoint nil -> {'type': '../conformance/Trainer', 'version': 2}",
        ("BAD_NAME",),
        "§5",
        "(schema 6) a checkpoint type that is not a registered name",
    ),
    "checkpoint_version_0": H(
        "training_state",
        3,
        manifest(_top("checkpoint", {"type": "conformance.Trainer", "version": 0})),
        "checkpoint nil -> {'type': 'conformance.Trainer', 'version': 0}",
        ("MANIFEST_SCHEMA",),
        "§4, §5",
        "(schema 6) a checkpoint version 0 (versions start at 1)",
    ),
    "v5_with_optimizer_node": H(
        "training_state",
        25,
        manifest(_v5_with_optimizer),
        "schema_version 6 -> 5 (key 'checkpoint' removed), root entries but 'model' and 'optim' (the "
        "optimizer node) removed",
        ("MANIFEST_SCHEMA",),
        "§5.9, §12",
        "a version-5 manifest holding a node kind version 6 added",
    ),
    "v5_blake3_checksum": H(
        "blake3_checksum",
        3,
        manifest(lambda w: as_older(w, 5)),
        "schema_version 6 -> 5 (the key 'checkpoint' dropped), checksum blake3 kept",
        ("UNKNOWN_CHECKSUM",),
        "§7, §12",
        "a version-5 manifest naming the checksum version 6 added",
    ),
    "signature_flipped": H(
        "signed",
        20,
        signature_block(flip_signature),
        "first signature: bit 0 of its first byte flipped (trailer digest recomputed)",
        ("BAD_SIGNATURE",),
        "§3.4",
        "(schema 6) a signature that does not verify (a reader that verifies signatures refuses it)",
        tier="SHOULD",
        requires=("signatures",),
    ),
    "signature_key_id_wrong": H(
        "signed",
        20,
        signature_block(lambda e: e[0].update(key_id=bytes(32))),
        "first signature: key_id -> 32 zero bytes (not its public key's SHA-256)",
        ("BAD_SIGNATURE",),
        "§3.4",
        "(schema 6) a signature whose key id is not its key's",
    ),
    "signature_block_not_array": H(
        "signed",
        20,
        signature_block(lambda e: {"signatures": e}),
        "signature block: the array -> a map holding it",
        ("BAD_SIGNATURE",),
        "§3.4",
        "(schema 6) a signature block that is not an array of signatures",
    ),
    "v5_with_checkpoint_key": H(
        "base",
        25,
        manifest(_top("schema_version", 5)),
        "schema_version 6 -> 5, the key 'checkpoint' (nil) kept",
        ("MANIFEST_SCHEMA",),
        "§5.9, §12",
        "a version-5 manifest holding the key version 6 added",
    ),
}
