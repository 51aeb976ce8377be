"""Zstandard segments (SPEC.md §6.2, §6.4): a segment is one frame when that is strictly shorter than the
bytes it holds, else those bytes raw; a frame's header is checked (content size equal to the expected
length, window within the limit, no dictionary) before it is decompressed, and trailing bytes are refused."""

from __future__ import annotations

import threading

import zstandard

from ..errors import BadCompressedData
from .planes import Buffer

_MAGIC = b"\x28\xb5\x2f\xfd"
_local = threading.local()


def _compressor(level: int, plane: bool) -> zstandard.ZstdCompressor:
    """Byte planes at levels up to 3 use a fast strategy with a tiny match table: on weights' byte planes,
    which are close to i.i.d., that entropy-codes about as well as level 1 while running faster both ways
    (frames stay standard zstd, so readers need not know; figures: benchmarks/RESULTS.md)."""
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


def encode_segment(data: Buffer, level: int, is_plane: bool = False, max_ratio: int = 0) -> Buffer:
    """One frame of `data` if strictly shorter, else `data` itself (stored raw); also raw when the frame
    would be more than `max_ratio` times shorter (0: no bound), so a reader's expansion limit holds."""
    frame = _compressor(level, is_plane).compress(data)
    if max_ratio and len(frame) * max_ratio < len(data):
        return data
    return frame if len(frame) < len(data) else data


def decode_segment(seg: Buffer, expected: int, max_window: int) -> Buffer:
    """The `expected` bytes a segment holds: itself when it is that long, else its checked frame decoded."""
    if len(seg) == expected:
        return seg
    if bytes(seg[:4]) != _MAGIC:
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
