"""Zstandard segments (SPEC.md §6.2, §6.4): a segment is one frame when that is strictly shorter than the
bytes it holds, else those bytes raw; frames are written with their content checksum, and each is checked
against the rules of §6.4 (`frames.check_frame`) before it is decompressed."""

from __future__ import annotations

import threading

import zstandard

from ..errors import BadCompressedData
from .frames import check_frame
from .planes import Buffer

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
                write_checksum=True,
                write_dict_id=False,
            )
        else:
            params = zstandard.ZstdCompressionParameters.from_level(
                level, write_content_size=True, write_checksum=True, write_dict_id=False
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


def decode_segment(seg: Buffer, expected: int, max_window: int, checksummed: bool) -> Buffer:
    """The `expected` bytes a segment holds: itself when it is that long, else its frame, checked against
    SPEC.md §6.4 (`checksummed`: the file's schema requires the content checksum), decoded; libzstd
    verifies the content checksum whenever the frame has one."""
    if len(seg) == expected:
        return seg
    check_frame(seg, expected, max_window, checksummed)
    try:
        result = _decompressor(max_window).decompress(seg, max_output_size=expected, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise BadCompressedData(f"corrupt zstd frame: {exc}") from None
    if len(result) != expected:
        raise BadCompressedData(f"zstd frame decoded to {len(result)} bytes, expected {expected}")
    return result
