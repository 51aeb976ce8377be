"""A blob's chunk list (SPEC.md §5.1) held packed: digests in one bytes object, segment lengths in one
array, so that a file of many small chunks costs bytes per chunk, not a Python object per chunk."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, overload

from pydantic import BaseModel, GetCoreSchemaHandler
from pydantic_core import core_schema

from .encoding import INT64_MAX
from .fields import STRICT, Size


class Chunk(BaseModel):
    """One independently decodable piece of a blob."""

    model_config = STRICT
    digest: bytes
    segments: list[Size]


class ChunkView(NamedTuple):
    """One chunk of a table: its digest and its segments' stored lengths."""

    digest: bytes
    segments: tuple[int, ...]


_KEYS = ("digest", "segments")


class ChunkTable(Sequence[ChunkView]):
    """The chunks of one blob, validated as `Chunk` would be (strict, closed), stored packed."""

    __slots__ = ("_digest_ends", "_digests", "_segment_ends", "_segments")

    def __init__(self, wire: Any) -> None:
        if type(wire) is not list:
            raise ValueError("chunks is not an array")
        digests: list[bytes] = []
        digest_ends = array("Q")
        segments = array("Q")
        segment_ends = array("Q")
        end = 0
        for j, c in enumerate(wire):
            if type(c) is not dict or tuple(sorted(c)) != _KEYS:
                raise ValueError(f"chunk {j} is not a map with exactly the keys digest and segments")
            digest, segs = c["digest"], c["segments"]
            if type(digest) is not bytes:
                raise ValueError(f"chunk {j}: digest is not bytes")
            if type(segs) is not list or any(type(s) is not int or not 0 <= s <= INT64_MAX for s in segs):
                raise ValueError(f"chunk {j}: segments is not an array of sizes (0 to 2^63-1)")
            digests.append(digest)
            end += len(digest)
            digest_ends.append(end)
            segments.extend(segs)
            segment_ends.append(len(segments))
        self._digests: bytes | bytearray = b"".join(digests)
        self._digest_ends = digest_ends
        self._segments = segments
        self._segment_ends = segment_ends

    def absorb(self, part: ChunkTable) -> ChunkTable:
        """This table with the chunks of `part` appended (in place; the digests grow as a bytearray)."""
        if type(self._digests) is bytes:
            self._digests = bytearray(self._digests)
        digest_base, segment_base = len(self._digests), len(self._segments)
        self._digests += part._digests
        self._digest_ends.extend(e + digest_base for e in part._digest_ends)
        self._segment_ends.extend(e + segment_base for e in part._segment_ends)
        self._segments.extend(part._segments)
        return self

    @property
    def msgpack_levels(self) -> int:
        """The msgpack nesting the chunk list took: the array, the maps, their values, segment lengths."""
        if not len(self):
            return 1
        return 4 if len(self._segments) else 3

    def __eq__(self, other: object) -> bool:
        """Tables are equal when they hold the same chunks (as the lists they replace were)."""
        if not isinstance(other, ChunkTable):
            return NotImplemented
        return self._packed() == other._packed()

    def _packed(self) -> tuple[bytes | bytearray, array[int], array[int], array[int]]:
        return self._digests, self._digest_ends, self._segments, self._segment_ends

    def __len__(self) -> int:
        return len(self._digest_ends)

    @overload
    def __getitem__(self, j: int) -> ChunkView: ...
    @overload
    def __getitem__(self, j: slice) -> list[ChunkView]: ...
    def __getitem__(self, j: int | slice) -> ChunkView | list[ChunkView]:
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        if j < 0:
            j += len(self)
        if not 0 <= j < len(self):
            raise IndexError(j)
        d0 = self._digest_ends[j - 1] if j else 0
        s0 = self._segment_ends[j - 1] if j else 0
        digest = bytes(self._digests[d0 : self._digest_ends[j]])
        return ChunkView(digest, tuple(self._segments[s0 : self._segment_ends[j]]))

    def __iter__(self) -> Iterator[ChunkView]:
        return (self[j] for j in range(len(self)))

    def to_wire(self) -> list[dict[str, Any]]:
        """The chunk maps as written."""
        return [{"digest": c.digest, "segments": list(c.segments)} for c in self]

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Validated from decoded msgpack by the constructor; described in JSON Schema as `list[Chunk]`."""
        return core_schema.json_or_python_schema(
            json_schema=handler.generate_schema(list[Chunk]),
            python_schema=core_schema.no_info_plain_validator_function(
                lambda v: v if isinstance(v, ChunkTable) else cls(v)
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda t: t.to_wire()),
        )
