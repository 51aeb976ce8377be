"""Chunks of one file stored again in another (`migrate`, `encrypt`, `decrypt`): as they are, except the
zstd chunks of a file older than schema version 6, which are decoded and encoded again so that their frames
carry the content checksum the new file's schema requires (SPEC.md §6.4 rule 6)."""

from __future__ import annotations

from ..codecs.frames import CHECKSUMMED_FROM
from ..codecs.planes import Split, split_planes
from ..codecs.table import RAW, encode_chunk
from .reader import Reader
from .writer import DEFAULT_LEVEL, Buffer


def needs_recoding(reader: Reader, blob: int) -> bool:
    """Whether a blob's frames may lack the checksum a schema-6 file requires."""
    return reader.manifest.blobs[blob].codec != RAW and reader.source_schema_version < CHECKSUMMED_FROM


def stored_again(
    reader: Reader, blob: int, j: int, max_ratio: int, split: Split = split_planes
) -> list[Buffer]:
    """Chunk j's segments as they are (checked and opened), or, when the blob needs recoding, the chunk
    decoded and encoded again (`max_ratio`: the writer's expansion bound, 0 for none)."""
    if not needs_recoding(reader, blob):
        return list(reader.chunk_segments(blob, j))
    b = reader.manifest.blobs[blob]
    out = memoryview(bytearray(min(b.chunk_size, b.nbytes - j * b.chunk_size)))
    reader.decode(blob, out, j, j + 1)  # with the last chunk, the blob's padding is checked too
    return encode_chunk(b.codec, b.width, out, DEFAULT_LEVEL, split, max_ratio)
