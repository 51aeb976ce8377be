"""The manifest of the current schema version (SPEC.md §5) as pydantic models.

Rules: models are strict (no coercion: a float or bool is never an int) and closed (unknown fields are an
error; optional data goes in `extensions`). The version is the chain's newest (`tmodel.migrations`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from ..codecs.table import MAX_WIDTH
from ..migrations import CURRENT
from .chunks import ChunkTable
from .encoding import INT64_MAX
from .fields import STRICT, Int, Size
from .nodes import Node, ParamRef
from .rows import wire

SCHEMA_VERSION = CURRENT
KNOWN_FEATURES: frozenset[str] = frozenset()

MetaValue = TypeAliasType(
    "MetaValue",
    "Union[bool, Int, float, str, bytes, list[MetaValue], dict[str, MetaValue], None]",  # noqa: UP007
)


class Blob(BaseModel):
    """A run of stored bytes that decodes to `nbytes` bytes of tensor storage."""

    model_config = STRICT
    offset: Size
    length: Size
    nbytes: Annotated[int, Field(strict=True, ge=1, le=INT64_MAX)]
    codec: str
    width: Annotated[int, Field(strict=True, ge=1, le=MAX_WIDTH)]
    chunk_size: Annotated[int, Field(strict=True, ge=1, le=INT64_MAX)]
    chunks: ChunkTable
    #: in an encrypted file only (SPEC.md §3.5): the 12 random bytes its chunks' nonces derive from
    nonce: bytes = Field(default=b"", exclude_if=lambda v: not v)


class TensorEntry(BaseModel):
    """A named strided view of a blob's decoded bytes."""

    model_config = STRICT
    name: str
    dtype: str
    shape: list[Size]
    strides: list[Size]
    blob: Size | None
    offset: Size


class ModuleRecord(BaseModel):
    """One module: its registered layer type and version, its config, its own tensors, its children. From
    schema 5 a record with version nil is a module its parent's constructor builds: `type` is then its
    class's qualified name, checked against the built child, never looked up (SPEC.md §5.7)."""

    model_config = STRICT
    type: str
    version: Annotated[int, Field(strict=True, ge=1, le=INT64_MAX)] | None
    config: dict[str, Node]
    parameters: dict[str, ParamRef | None]
    buffers: dict[str, Size | None]
    children: dict[str, Size | None]
    training: bool


class CheckpointVersion(BaseModel):
    """The version of the saved object's own layout (schema 6): a program's registered checkpoint type and
    the version it wrote, which that type's checkpoint steps upgrade (SPEC.md §5.8)."""

    model_config = STRICT
    type: str
    version: Annotated[int, Field(strict=True, ge=1, le=INT64_MAX)]


class Shard(BaseModel):
    """One file of a sharded set, as its index lists it (schema 7, SPEC.md §5.10): its name beside the
    index, its size, its manifest digest, and the decoded size of each of its blobs."""

    model_config = STRICT
    file: str
    size: Size
    digest: bytes
    blobs: list[Annotated[int, Field(strict=True, ge=1, le=INT64_MAX)]]


class Manifest(BaseModel):
    """Tensors, their blobs, modules, the saved object tree, and typed user metadata (SPEC.md §5); in the
    index of a sharded set, the files that hold the blobs (`shards`)."""

    model_config = STRICT
    schema_version: Literal[SCHEMA_VERSION]  # type: ignore[valid-type]
    required_features: list[str]
    checksum: str
    blobs: list[Blob]
    tensors: list[TensorEntry]
    root: Node
    metadata: dict[str, MetaValue]
    extensions: dict[str, MetaValue]
    modules: list[ModuleRecord]
    checkpoint: CheckpointVersion | None
    shards: list[Shard]

    def to_wire(self) -> dict[str, Any]:
        """The plain structure that is msgpack-encoded into the file, keys in the order of SPEC.md §5. (A
        manifest of the fast path holds its blobs and tensors as `rows`, which give their own wire form.)"""
        tables = {"blobs": [wire(b) for b in self.blobs], "tensors": [wire(t) for t in self.tensors]}
        rest = self.model_dump(by_alias=True, exclude=set(tables))
        return {name: tables[name] if name in tables else rest[name] for name in type(self).model_fields}
