"""Zstandard frames that each break one rule of SPEC.md §6.4, for the conformance cases and the tests.

Each builder takes the content the frame stands for and returns the frame. The ones named in
`LIBZSTD_ACCEPTS` decode under libzstd, their content checksum computed over what libzstd decodes: a reader
that trusts its decoder accepts them, the rule refuses them. Block layouts are written by hand here, apart
from libzstd's own compressed blocks, so that the rules are tested against bytes the walk did not make.
"""

from __future__ import annotations

import random

import xxhash
import zstandard

MAGIC = b"\x28\xb5\x2f\xfd"
RAW, RLE, COMPRESSED, RESERVED = 0, 1, 2, 3
KIB = 1 << 10

#: the frames libzstd decodes without complaint although §6.4 refuses them
LIBZSTD_ACCEPTS = frozenset(
    {
        "no_checksum",
        "raw_block_over_window",
        "rle_block_over_window",
        "rle_block_over_128k",
        "huffman_stream_zero_end",
    }
)


def checksum(content: bytes) -> bytes:
    """The content checksum field: the low 32 bits of XXH64 (seed 0), little-endian."""
    return (xxhash.xxh64_intdigest(content) & 0xFFFFFFFF).to_bytes(4, "little")


def compress(content: bytes, level: int = 3) -> bytes:
    """A frame as a writer makes it: content size and checksum present."""
    return bytes(zstandard.ZstdCompressor(level=level, write_checksum=True).compress(content))


def text(n: int, seed: int = 0) -> bytes:
    """`n` bytes of word salad: Huffman-coded literals and sequences at any level."""
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnop") for _ in range(rng.randint(2, 9))) for _ in range(400)]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words) + b" "
    return bytes(out[:n])


def header(fcs: int, window_log: int | None = None, checksummed: bool = True) -> bytes:
    """A frame header with a 4-byte content size; single segment unless `window_log` is given."""
    single = window_log is None
    fhd = 2 << 6 | int(single) << 5 | int(checksummed) << 2
    wd = b"" if window_log is None else bytes([(window_log - 10) << 3])
    return MAGIC + bytes([fhd]) + wd + fcs.to_bytes(4, "little")


def block(kind: int, size: int, payload: bytes, last: bool) -> bytes:
    return (int(last) | kind << 1 | size << 3).to_bytes(3, "little") + payload


def _header_end(frame: bytes) -> int:
    fhd = frame[4]
    single = fhd >> 5 & 1
    return 5 + (1 - single) + (0, 1, 2, 4)[fhd & 3] + (single, 2, 4, 8)[fhd >> 6]


def blocks(frame: bytes) -> list[tuple[int, int, int]]:
    """(header offset, type, Block_Size) of each block of a well-formed frame."""
    out, pos = [], _header_end(frame)
    while True:
        h = int.from_bytes(frame[pos : pos + 3], "little")
        out.append((pos, h >> 1 & 3, h >> 3))
        pos += 3 + (1 if h >> 1 & 3 == RLE else h >> 3)
        if h & 1:
            return out


def with_checksum(frame_without: bytes, fallback: bytes) -> bytes:
    """A checksummed frame missing its 4 checksum bytes, completed with the checksum of what libzstd
    decodes it to, or of `fallback` where libzstd refuses it."""
    bare = frame_without[:4] + bytes([frame_without[4] & ~4]) + frame_without[5:]
    try:
        content = zstandard.ZstdDecompressor().decompress(bare)
    except zstandard.ZstdError:
        content = fallback
    return frame_without + checksum(content)


def _runs(content: bytes, at_most: int) -> list[bytes]:
    """RLE blocks of at most `at_most` bytes for content made of runs of one byte."""
    out, i = [], 0
    while i < len(content):
        j = i + 1
        while j < len(content) and j - i < at_most and content[j] == content[i]:
            j += 1
        out.append(block(RLE, j - i, content[i : i + 1], False))
        i = j
    return out


def _frame(head: bytes, parts: list[bytes], content: bytes) -> bytes:
    last = parts[-1]
    parts[-1] = bytes([last[0] | 1]) + last[1:]
    return head + b"".join(parts) + checksum(content)


# -- libzstd accepts these ----------------------------------------------------------------------------------
def no_checksum(content: bytes) -> bytes:
    """A writer's frame without its checksum: rule 6 in a file of schema version 6."""
    frame = compress(content)
    return frame[:4] + bytes([frame[4] & ~4]) + frame[5:-4]


def raw_block_over_window(content: bytes) -> bytes:
    """A 1 KiB window, the first 2 KiB in one raw block (rule 7), the rest (runs) in RLE blocks of 1 KiB."""
    return _frame(
        header(len(content), 10),
        [block(RAW, 2 * KIB, content[: 2 * KIB], False), *_runs(content[2 * KIB :], KIB)],
        content,
    )


def rle_block_over_window(content: bytes) -> bytes:
    """Runs of one byte as RLE blocks of up to 64 KiB, in a frame whose window is 1 KiB (rule 7)."""
    return _frame(header(len(content), 10), _runs(content, 64 * KIB), content)


def rle_block_over_128k(content: bytes) -> bytes:
    """One byte repeated more than 128 KiB times, as one RLE block of a single-segment frame (rule 7)."""
    return _frame(header(len(content)), [block(RLE, len(content), content[:1], True)], content)


def huffman_streams(frame: bytes, at: int) -> list[int]:
    """The end offsets of the Huffman streams of the compressed block whose header is at `at`."""
    start = at + 3
    b0 = frame[start]
    fmt = b0 >> 2 & 3
    assert b0 & 3 == 2 and fmt, "a compressed literals block of four streams"
    hsize, bits = ((3, 10), (3, 10), (4, 14), (5, 18))[fmt]
    comp = int.from_bytes(frame[start : start + hsize], "little") >> (4 + bits) & ((1 << bits) - 1)
    p = start + hsize
    p += 1 + (frame[p] if frame[p] < 128 else (frame[p] - 126) // 2)
    s1, s2, s3 = (int.from_bytes(frame[p + i : p + i + 2], "little") for i in (0, 2, 4))
    return [p + 6 + s1, p + 6 + s1 + s2, p + 6 + s1 + s2 + s3, start + hsize + comp]


def huffman_stream_zero_end(content: bytes) -> bytes:
    """The first Huffman stream's last byte, which holds its end mark, zeroed (rule 13); libzstd's fast
    decoder reads on without the mark and decodes other bytes of the right length."""
    frame = bytearray(compress(content)[:-4])
    frame[huffman_streams(bytes(frame), blocks(bytes(frame))[0][0])[0] - 1] = 0
    return with_checksum(bytes(frame), content)


# -- libzstd refuses these too ------------------------------------------------------------------------------
def checksum_wrong(content: bytes) -> bytes:
    """A writer's frame with one bit of its checksum flipped (rule 6)."""
    frame = bytearray(compress(content))
    frame[-1] ^= 1
    return bytes(frame)


def reserved_block_type(content: bytes) -> bytes:
    """A writer's frame whose first block has the reserved type 3 (rule 8)."""
    frame = bytearray(compress(content))
    at = blocks(bytes(frame))[0][0]
    frame[at] |= RESERVED << 1
    return bytes(frame)


def blocks_short_of_content_size(content: bytes) -> bytes:
    """One byte repeated, as RLE blocks that stop one byte short of the content size (rule 9)."""
    return _frame(header(len(content)), _runs(content[:-1], 64 * KIB), content)


def compressed_block_over_window(content: bytes) -> bytes:
    """A writer's frame of one compressed block longer than 1 KiB, its header declaring a 1 KiB window
    (rule 7)."""
    frame = compress(content)
    assert len(blocks(frame)) == 1 and blocks(frame)[0][1:] > (COMPRESSED, KIB)
    return header(len(content), 10) + frame[_header_end(frame) :]


def sequences_modes(frame: bytes, at: int) -> int:
    """The offset of the symbol compression modes byte of the compressed block whose header is at `at`."""
    start = at + 3
    b0 = frame[start]
    fmt = b0 >> 2 & 3
    if b0 & 3 < 2:
        hsize = (1, 2, 1, 3)[fmt]
        regen = b0 >> 3 if hsize == 1 else int.from_bytes(frame[start : start + hsize], "little") >> 4
        lits = start + hsize + (regen if b0 & 3 == 0 else 1)
    else:
        hsize, bits = ((3, 10), (3, 10), (4, 14), (5, 18))[fmt]
        lits = (
            start
            + hsize
            + (int.from_bytes(frame[start : start + hsize], "little") >> (4 + bits) & ((1 << bits) - 1))
        )
    s0 = frame[lits]
    assert s0, "a block with sequences"
    return lits + (1 if s0 < 128 else 2 if s0 < 255 else 3)


def repeat_mode_first_block(content: bytes) -> bytes:
    """A writer's frame whose first block repeats a literal-length table no earlier block defined
    (rule 11)."""
    frame = bytearray(compress(content))
    frame[sequences_modes(bytes(frame), blocks(bytes(frame))[0][0])] |= 3 << 6
    return bytes(frame)
