"""DCP's `Metadata` <-> plain data (dicts, lists, str, int, bool, None), so no pickle is ever written.

The plain form is what `.metadata.tmodel` holds as its object tree (SPEC.md Appendix B): `to_plain` builds it,
`from_plain` checks every field's type and every cross-reference before rebuilding DCP's classes, and
raises BAD_VALUE (naming the metadata file) for anything else.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch.distributed.checkpoint.metadata import (
    BytesStorageMetadata,
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorProperties,
    TensorStorageMetadata,
)

from ..errors import BadValue, UnsupportedType
from ..tensors.dtypes import DTYPE_NAMES, TORCH_DTYPES

FORMAT = "tmodel-dcp"
VERSION = 1
METADATA_FILE = ".metadata.tmodel"
#: a shard file's name: `__{rank}_{n}.tmodel`, never a path
SHARD_NAME = re.compile(r"__[0-9]{1,9}_[0-9]{1,9}\.tmodel")


def shard_name(prefix: str, n: int) -> str:
    return f"{prefix}{n}.tmodel"


def _dims(size: Any) -> list[int]:
    return [int(v) for v in size]


def _tensor_plain(md: TensorStorageMetadata) -> dict[str, Any]:
    p = md.properties
    if p.layout != torch.strided or p.dtype not in DTYPE_NAMES:
        raise UnsupportedType(
            f"DCP tensor metadata of layout {p.layout} and dtype {p.dtype} cannot be stored"
        )
    return {
        "kind": "tensor",
        "dtype": DTYPE_NAMES[p.dtype],
        "size": _dims(md.size),
        "requires_grad": bool(p.requires_grad),
        "pin_memory": bool(p.pin_memory),
        "chunks": [{"offsets": _dims(c.offsets), "sizes": _dims(c.sizes)} for c in md.chunks],
    }


def to_plain(metadata: Metadata, shards: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The plain form of `metadata` (its storage_data: MetadataIndex -> {"file", "tensor" | "value"})."""
    state: dict[str, Any] = {}
    for fqn, md in metadata.state_dict_metadata.items():
        state[fqn] = {"kind": "bytes"} if isinstance(md, BytesStorageMetadata) else _tensor_plain(md)
    planner = metadata.planner_data
    storage = [
        {
            "fqn": index.fqn,
            "offset": None if index.offset is None else _dims(index.offset),
            "index": index.index,
            **info,
        }
        for index, info in (metadata.storage_data or {}).items()
    ]
    meta = metadata.storage_meta
    return {
        "format": FORMAT,
        "version": VERSION,
        "dcp_version": metadata.version,
        "save_id": None if meta is None else meta.save_id,
        "modules": [] if meta is None else list(meta.modules),
        "state": state,
        "planner": None if planner is None else {k: list(v) for k, v in planner.items()},
        "storage": storage,
        "shards": shards,
    }


class _Check:
    """Field checks that raise BAD_VALUE naming the metadata file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, what: str) -> BadValue:
        return BadValue(f"DCP metadata: {what}", path=self.path)

    def get(self, d: Any, key: str, types: type | tuple[type, ...], where: str) -> Any:
        if not isinstance(d, dict) or key not in d:
            raise self.fail(f"{where} has no field {key!r}")
        value = d[key]
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise self.fail(f"{where}.{key} is a bool")
        if not isinstance(value, types):
            raise self.fail(f"{where}.{key} is a {type(value).__name__}")
        return value

    def ints(self, value: Any, where: str, n: int | None = None) -> list[int]:
        if not isinstance(value, list) or not all(type(v) is int and v >= 0 for v in value):
            raise self.fail(f"{where} is not a list of ints >= 0")
        if n is not None and len(value) != n:
            raise self.fail(f"{where} has {len(value)} dimensions, not {n}")
        return value

    def keys(self, d: Any, allowed: set[str], where: str) -> None:
        if not isinstance(d, dict):
            raise self.fail(f"{where} is not a map")
        extra = set(d) - allowed
        if extra:
            raise self.fail(f"{where} has unknown fields {sorted(extra)}")


def _tensor(c: _Check, d: Any, where: str) -> TensorStorageMetadata:
    c.keys(d, {"kind", "dtype", "size", "requires_grad", "pin_memory", "chunks"}, where)
    dtype = c.get(d, "dtype", str, where)
    if dtype not in TORCH_DTYPES:
        raise c.fail(f"{where}.dtype {dtype!r} is unknown")
    size = c.ints(c.get(d, "size", list, where), f"{where}.size")
    chunks = []
    for i, raw in enumerate(c.get(d, "chunks", list, where)):
        w = f"{where}.chunks[{i}]"
        c.keys(raw, {"offsets", "sizes"}, w)
        offsets = c.ints(c.get(raw, "offsets", list, w), f"{w}.offsets", len(size))
        sizes = c.ints(c.get(raw, "sizes", list, w), f"{w}.sizes", len(size))
        if any(o + s > n for o, s, n in zip(offsets, sizes, size, strict=True)):
            raise c.fail(f"{w} lies outside the tensor's size {size}")
        chunks.append(ChunkStorageMetadata(torch.Size(offsets), torch.Size(sizes)))
    props = TensorProperties(
        dtype=TORCH_DTYPES[dtype],
        requires_grad=c.get(d, "requires_grad", bool, where),
        pin_memory=c.get(d, "pin_memory", bool, where),
    )
    return TensorStorageMetadata(props, torch.Size(size), chunks)


def _planner(c: _Check, raw: Any) -> dict[str, tuple[str | int, ...]] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise c.fail("planner is not a map")
    out: dict[str, tuple[str | int, ...]] = {}
    for fqn, path in raw.items():
        if not isinstance(fqn, str) or not isinstance(path, list):
            raise c.fail(f"planner[{fqn!r}] is not a list")
        if not all(type(p) in (str, int) for p in path):
            raise c.fail(f"planner[{fqn!r}] holds what is neither a str nor an int")
        out[fqn] = tuple(path)
    return out


def _storage(c: _Check, raw: Any, shards: dict[str, Any]) -> dict[MetadataIndex, dict[str, Any]]:
    if not isinstance(raw, list):
        raise c.fail("storage is not a list")
    out: dict[MetadataIndex, dict[str, Any]] = {}
    for i, entry in enumerate(raw):
        w = f"storage[{i}]"
        kind = "tensor" if isinstance(entry, dict) and "tensor" in entry else "value"
        c.keys(entry, {"fqn", "offset", "index", "file", kind}, w)
        fqn = c.get(entry, "fqn", str, w)
        offset = c.get(entry, "offset", (list, type(None)), w)
        index = c.get(entry, "index", (int, type(None)), w)
        file = c.get(entry, "file", str, w)
        c.get(entry, kind, str, w)
        if file not in shards:
            raise c.fail(f"{w}.file {file!r} is not among the recorded shards")
        key = MetadataIndex(fqn, None if offset is None else c.ints(offset, f"{w}.offset"), index)
        out[key] = {"file": file, kind: entry[kind]}
    return out


def _shards(c: _Check, raw: Any) -> dict[str, dict[str, str]]:
    if not isinstance(raw, dict):
        raise c.fail("shards is not a map")
    for name, info in raw.items():
        w = f"shards[{name!r}]"
        if not isinstance(name, str) or not SHARD_NAME.fullmatch(name):
            raise c.fail(f"{w} is not a shard file name (__RANK_N.tmodel)")
        c.keys(info, {"checksum", "digest"}, w)
        c.get(info, "checksum", str, w)
        digest = c.get(info, "digest", str, w)
        if not re.fullmatch(r"[0-9a-f]{2,64}", digest):
            raise c.fail(f"{w}.digest is not lowercase hex")
    return raw


def from_plain(raw: Any, path: str) -> tuple[Metadata, dict[str, dict[str, str]]]:
    """DCP's Metadata and the shards' recorded digests (file -> {"checksum", "digest"}), every field
    checked; BAD_VALUE otherwise."""
    c = _Check(path)
    allowed = {"format", "version", "dcp_version", "save_id", "modules", "state", "planner", "storage"}
    c.keys(raw, allowed | {"shards"}, "metadata")
    if c.get(raw, "format", str, "metadata") != FORMAT:
        raise c.fail(f"format is not {FORMAT!r}")
    if c.get(raw, "version", int, "metadata") != VERSION:
        raise c.fail(f"version {raw['version']} is not {VERSION}")
    state: dict[str, TensorStorageMetadata | BytesStorageMetadata] = {}
    for fqn, md in c.get(raw, "state", dict, "metadata").items():
        where = f"state[{fqn!r}]"
        if not isinstance(fqn, str):
            raise c.fail(f"{where}: an fqn is a str")
        kind = c.get(md, "kind", str, where)
        if kind == "bytes":
            c.keys(md, {"kind"}, where)
            state[fqn] = BytesStorageMetadata()
        elif kind == "tensor":
            state[fqn] = _tensor(c, md, where)
        else:
            raise c.fail(f"{where}.kind {kind!r} is neither 'tensor' nor 'bytes'")
    shards = _shards(c, c.get(raw, "shards", dict, "metadata"))
    storage = _storage(c, c.get(raw, "storage", list, "metadata"), shards)
    for fqn, md in state.items():
        offsets = [ch.offsets for ch in md.chunks] if isinstance(md, TensorStorageMetadata) else [None]
        for off in offsets:
            if MetadataIndex(fqn, off) not in storage:
                raise c.fail(f"no storage entry for {fqn!r} at offset {None if off is None else list(off)}")
    modules = c.get(raw, "modules", list, "metadata")
    if not all(isinstance(m, str) for m in modules):
        raise c.fail("modules is not a list of str")
    meta = StorageMeta(save_id=c.get(raw, "save_id", (str, type(None)), "metadata"), modules=modules)
    metadata = Metadata(
        state_dict_metadata=state,
        planner_data=_planner(c, c.get(raw, "planner", (dict, type(None)), "metadata")),
        storage_data=storage,
        storage_meta=meta,
        version=c.get(raw, "dcp_version", (str, type(None)), "metadata"),
    )
    return metadata, shards
