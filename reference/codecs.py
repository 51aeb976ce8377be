"""Chunk codecs (SPEC.md §6): raw, zstd, and byte-grouping + zstd with a per-plane raw fallback.

Rules: a chunk is a list of segments. `raw` has one segment, the bytes. `zstd` has one segment: a single
zstd frame when it is strictly shorter than the chunk, else the chunk's bytes stored raw. `bytegroup-zstd`
with width w has w segments, segment k holding byte k of every w-byte element (plane k), each plane a
zstd frame when strictly shorter than the plane, else the plane raw. Decoders check every frame's header
(content size present and equal to the expected length, window within the limit, no dictionary) before
decompressing, and reject trailing bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import zstandard

from .errors import BadCompressedData, BadTensor, UnknownCodec

Buffer = bytes | bytearray | memoryview

RAW = "raw"
ZSTD = "zstd"
BYTEGROUP_ZSTD = "bytegroup-zstd"
CODECS = (RAW, ZSTD, BYTEGROUP_ZSTD)
MAX_WIDTH = 16
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_local = threading.local()

#: Writes planes (each `len(out) // width` bytes) interleaved into `out`; swappable for a faster one.
Merge = Callable[[Sequence[Buffer], int, memoryview], None]
#: The `width` byte planes of `data` (plane k: byte k of every element); swappable for a faster one.
Split = Callable[[Buffer, int], list[Buffer]]


def merge_planes(planes: Sequence[Buffer], width: int, out: memoryview) -> None:
    """Byte k of element e comes from byte e of plane k (pure Python)."""
    merged = bytearray(len(out))
    for k, plane in enumerate(planes):
        merged[k::width] = plane
    out[:] = merged


def split_planes(data: Buffer, width: int) -> list[Buffer]:
    """Plane k holds byte k of every element (pure Python)."""
    whole = bytes(data)
    return [whole[k::width] for k in range(width)]


def _compressor(level: int, plane: bool) -> zstandard.ZstdCompressor:
    """Byte planes at levels up to 3 use a fast strategy with a tiny match table: on weights' byte planes,
    which are close to i.i.d., that entropy-codes about as well as level 1 while running ~2x faster both ways
    (frames stay standard zstd, so readers need not know)."""
    cache: dict[tuple[int, bool], zstandard.ZstdCompressor] = _local.__dict__.setdefault("c", {})
    key = (level, plane and level <= 3)
    if key not in cache:
        if key[1]:
            params = zstandard.ZstdCompressionParameters.from_level(
                level,
                strategy=zstandard.STRATEGY_FAST,
                min_match=7,
                hash_log=6,
                write_content_size=True,
                write_checksum=False,
                write_dict_id=False,
            )
        else:
            params = zstandard.ZstdCompressionParameters.from_level(
                level, write_content_size=True, write_checksum=False, write_dict_id=False
            )
        cache[key] = zstandard.ZstdCompressor(compression_params=params)
    return cache[key]


def _decompressor(max_window: int) -> zstandard.ZstdDecompressor:
    cache: dict[int, zstandard.ZstdDecompressor] = _local.__dict__.setdefault("d", {})
    if max_window not in cache:
        cache[max_window] = zstandard.ZstdDecompressor(max_window_size=max_window)
    return cache[max_window]


def segment_count(codec: str, width: int) -> int:
    """How many segments each chunk of this codec has."""
    if codec == BYTEGROUP_ZSTD:
        return width
    if codec in (RAW, ZSTD):
        return 1
    raise UnknownCodec(f"unknown codec {codec!r}")


def check_chunk(codec: str, width: int, raw_len: int, segments: Sequence[int], where: str) -> None:
    """Validate a chunk's segment lengths against its decoded length, before any byte is read."""
    if len(segments) != segment_count(codec, width):
        raise BadTensor(
            f"{where}: codec {codec} needs {segment_count(codec, width)} segments, not {len(segments)}"
        )
    if codec == RAW:
        if segments[0] != raw_len:
            raise BadTensor(f"{where}: raw segment of {segments[0]} bytes for {raw_len} decoded bytes")
        return
    plane = raw_len // width if codec == BYTEGROUP_ZSTD else raw_len
    for n in segments:
        if n < 1 or n > plane:
            raise BadTensor(f"{where}: segment of {n} bytes for a plane of {plane} bytes")


def encode_chunk(
    codec: str, width: int, data: Buffer, level: int, split: Split = split_planes
) -> list[Buffer]:
    """Encode one chunk into its segments."""
    if codec == RAW:
        return [data]
    if codec == ZSTD:
        return [_shorter(data, level)]
    if codec == BYTEGROUP_ZSTD:
        return [_shorter(plane, level, True) for plane in split(data, width)]
    raise UnknownCodec(f"unknown codec {codec!r}")


def _shorter(plane: Buffer, level: int, is_plane: bool = False) -> Buffer:
    frame = _compressor(level, is_plane).compress(plane)
    return frame if len(frame) < len(plane) else plane


def decode_chunk(
    codec: str,
    width: int,
    segments: Sequence[Buffer],
    out: memoryview,
    max_window: int,
    merge: Merge = merge_planes,
) -> None:
    """Decode a chunk's segments into `out`, whose length is the chunk's decoded length."""
    raw_len = len(out)
    if codec == RAW:
        out[:] = segments[0]
    elif codec == ZSTD:
        out[:] = _plane(segments[0], raw_len, max_window)
    elif codec == BYTEGROUP_ZSTD:
        plane_len = raw_len // width
        merge([_plane(seg, plane_len, max_window) for seg in segments], width, out)
    else:
        raise UnknownCodec(f"unknown codec {codec!r}")


def _plane(seg: Buffer, expected: int, max_window: int) -> Buffer:
    if len(seg) == expected:
        return seg
    if bytes(seg[:4]) != _ZSTD_MAGIC:
        raise BadCompressedData("segment is not a zstd frame (bad frame magic)")
    try:
        params = zstandard.get_frame_parameters(seg)
    except zstandard.ZstdError as exc:
        raise BadCompressedData(f"not a zstd frame: {exc}") from None
    if params.content_size != expected:
        raise BadCompressedData(
            f"zstd frame declares content size {params.content_size}, the manifest {expected}"
            if params.content_size != zstandard.CONTENTSIZE_UNKNOWN
            else "zstd frame without a content size"
        )
    if params.window_size > max_window:
        raise BadCompressedData(f"zstd window of {params.window_size} bytes exceeds the limit {max_window}")
    if params.dict_id != 0:
        raise BadCompressedData("zstd frame needs a dictionary")
    try:
        result = _decompressor(max_window).decompress(seg, max_output_size=expected, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise BadCompressedData(f"corrupt zstd frame: {exc}") from None
    if len(result) != expected:
        raise BadCompressedData(f"zstd frame decoded to {len(result)} bytes, expected {expected}")
    return result
