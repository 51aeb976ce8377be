"""The manifest as written (SPEC.md §5): the plain maps that are msgpack-encoded into a file, typed. Key
order is part of the format's determinism (SPEC.md §11): every builder writes keys in the order below,
which is the order of the tables in SPEC.md §5."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from .schema import SCHEMA_VERSION


class ChunkWire(TypedDict):
    digest: bytes
    segments: list[int]


class BlobWire(TypedDict):
    offset: int
    length: int
    nbytes: int
    codec: str
    width: int
    chunk_size: int
    chunks: list[ChunkWire]
    nonce: NotRequired[bytes]


class TensorWire(TypedDict):
    name: str
    dtype: str
    shape: list[int]
    strides: list[int]
    blob: int | None
    offset: int


class ParamWire(TypedDict):
    tensor: int
    requires_grad: bool


class ModuleWire(TypedDict):
    type: str
    version: int | None
    config: dict[str, Any]
    parameters: dict[str, ParamWire | None]
    buffers: dict[str, int | None]
    children: dict[str, int | None]
    training: bool


class CheckpointWire(TypedDict):
    type: str
    version: int


class ShardWire(TypedDict):
    file: str
    size: int
    digest: bytes
    blobs: list[int]


class ManifestWire(TypedDict):
    schema_version: int
    required_features: list[str]
    checksum: str
    blobs: list[BlobWire]
    tensors: list[TensorWire]
    root: Any
    metadata: dict[str, Any]
    extensions: dict[str, Any]
    modules: list[ModuleWire]
    checkpoint: CheckpointWire | None
    shards: list[ShardWire]


def manifest_wire(
    *,
    checksum: str,
    blobs: list[BlobWire],
    tensors: list[TensorWire],
    root: Any,
    metadata: dict[str, Any],
    modules: list[ModuleWire],
    required_features: list[str] | None = None,
    extensions: dict[str, Any] | None = None,
    checkpoint: CheckpointWire | None = None,
    shards: list[ShardWire] | None = None,
) -> ManifestWire:
    """A manifest of the current schema version, keys in the canonical order."""
    return {
        "schema_version": SCHEMA_VERSION,
        "required_features": list(required_features or []),
        "checksum": checksum,
        "blobs": blobs,
        "tensors": tensors,
        "root": root,
        "metadata": metadata,
        "extensions": dict(extensions or {}),
        "modules": modules,
        "checkpoint": checkpoint,
        "shards": list(shards or []),
    }
