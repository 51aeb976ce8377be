"""The blob and tensor tables of a validated manifest, as the fast path (`manifest.fast`) decodes them:
typed, closed, read-only rows that msgspec builds in C, with the fields of `schema.Blob`, `Chunk` and
`schema.TensorEntry` (the documented definitions, which the strict path validates with).

Rule: code that reads a manifest's blobs and tensors reads their fields only (`Tables`), so a row and a
model of the strict path serve alike; `wire` gives either back as written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Protocol

import msgspec

from ..codecs.table import MAX_WIDTH
from .encoding import INT64_MAX

Size = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX)]


class ChunkRow(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """One chunk: its digest and its segments' stored lengths (SPEC.md §5.1)."""

    digest: bytes
    segments: tuple[Size, ...]


class BlobRow(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True, omit_defaults=True):
    """A blob (SPEC.md §5.1); `nonce` is empty, and absent from the wire, in a file that is not encrypted."""

    offset: Size
    length: Size
    nbytes: Positive
    codec: str
    width: Annotated[int, msgspec.Meta(ge=1, le=MAX_WIDTH)]
    chunk_size: Positive
    chunks: list[ChunkRow]
    nonce: bytes = b""


class TensorRow(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """A tensor entry (SPEC.md §5.2)."""

    name: str
    dtype: str
    shape: list[Size]
    strides: list[Size]
    blob: Size | None
    offset: Size


class Tables(Protocol):
    """What reading tensors needs of a manifest: its blobs and tensors, rows or models alike."""

    @property
    def blobs(self) -> Sequence[Any]: ...
    @property
    def tensors(self) -> Sequence[Any]: ...


def wire(row: Any) -> Any:
    """A row (or a pydantic model of the strict path) as the plain map written into the file."""
    if isinstance(row, msgspec.Struct):  # its own encoding, decoded: arrays as lists, as a file reads
        return msgspec.msgpack.decode(msgspec.msgpack.encode(row))
    return row.model_dump(by_alias=True)
