"""The valid Zstandard frame (SPEC.md §6.4): a frame is checked against the numbered rules of §6.4 before it
is decompressed, so that every reader accepts the same frames and decodes them to the same bytes.

What is walked: the frame header, every block header, and each compressed block's literals and sequences
section headers (one small parse per block of up to 128 KiB). Bitstream exactness (rule 13) is checked
where it costs O(1), the last byte of each bitstream; the content checksum (rule 6), which libzstd
verifies, pins the rest of the decoding down.
"""

from __future__ import annotations

from ..errors import BadCompressedData
from .planes import Buffer

#: the manifest schema version from which every frame carries its content checksum (SPEC.md §6.4 rule 6)
CHECKSUMMED_FROM = 6
#: the largest block, decoded or stored (RFC 8878 section 3.1.1.2.4)
MAX_BLOCK = 128 << 10
MAGIC = b"\x28\xb5\x2f\xfd"

_RAW, _RLE, _COMPRESSED = 0, 1, 2


def _bad(rule: int, what: str) -> BadCompressedData:
    return BadCompressedData(f"zstd frame breaks SPEC.md §6.4 rule {rule}: {what}")


def check_frame(seg: Buffer, expected: int, max_window: int, checksummed: bool) -> None:
    """Refuse [BAD_COMPRESSED_DATA] a frame that is not valid for a plane of `expected` bytes;
    `checksummed`: the file's schema requires the content checksum (rule 6)."""
    mv = memoryview(seg).cast("B")
    n = len(mv)
    if n < 5 or mv[:4] != MAGIC:
        raise _bad(1, "not a Zstandard frame (bad magic)")
    fhd = mv[4]
    single, has_sum, did_flag = fhd >> 5 & 1, fhd >> 2 & 1, fhd & 3
    if fhd & 0x18:
        raise _bad(2, "a reserved or unused frame header bit is set")
    pos = 5
    window = 0
    if not single:
        if n < 6:
            raise _bad(1, "truncated frame header")
        wd = mv[5]
        base = 1 << (10 + (wd >> 3))
        window = base + (base >> 3) * (wd & 7)
        pos = 6
    did_size = (0, 1, 2, 4)[did_flag]
    fcs_size = (single, 2, 4, 8)[fhd >> 6]
    if pos + did_size + fcs_size > n:
        raise _bad(1, "truncated frame header")
    if did_size and int.from_bytes(mv[pos : pos + did_size], "little"):
        raise _bad(5, "the frame needs a dictionary")
    pos += did_size
    if not fcs_size:
        raise _bad(3, "the frame has no content size")
    fcs = int.from_bytes(mv[pos : pos + fcs_size], "little") + (256 if fcs_size == 2 else 0)
    pos += fcs_size
    if fcs != expected:
        raise _bad(3, f"the frame declares content size {fcs}, the manifest {expected}")
    if single:
        window = fcs
    if window > max_window:
        raise _bad(4, f"window of {window} bytes exceeds the limit {max_window}")
    if checksummed and not has_sum:
        raise _bad(6, "the frame has no content checksum (required from schema version 6)")
    end = _blocks(mv, pos, fcs, min(window, MAX_BLOCK))
    if n - end != 4 * has_sum:
        raise _bad(10, "bytes after the frame" if n - end > 4 * has_sum else "truncated content checksum")


def _blocks(mv: memoryview, pos: int, fcs: int, block_max: int) -> int:
    """Walk the blocks from `pos`; returns where the last one ends (rules 7-9, 11-13)."""
    n = len(mv)
    lower = upper = 0  # bounds of the decoded size so far
    state = [False, False]  # a Huffman table, sequence tables defined by an earlier block
    while True:
        if pos + 3 > n:
            raise _bad(9, "the frame ends before its last block")
        h = mv[pos] | mv[pos + 1] << 8 | mv[pos + 2] << 16
        kind, size = h >> 1 & 3, h >> 3
        pos += 3
        if kind == 3:
            raise _bad(8, "reserved block type")
        if size > block_max:
            raise _bad(7, f"block of {size} bytes above Block_Maximum_Size {block_max}")
        stored = 1 if kind == _RLE else size
        if pos + stored > n:
            raise _bad(9, "the frame ends inside a block")
        if kind == _COMPRESSED:
            lo, hi = _compressed(mv, pos, pos + size, block_max, state)
        else:
            lo = hi = size
        lower, upper, pos = lower + lo, upper + hi, pos + stored
        if lower > fcs:
            raise _bad(9, f"the blocks decode to more than the content size {fcs}")
        if h & 1:
            break
    if upper < fcs:
        raise _bad(9, f"the blocks decode to less than the content size {fcs}")
    return pos


def _compressed(mv: memoryview, start: int, end: int, block_max: int, state: list[bool]) -> tuple[int, int]:
    """The literals and sequences section headers of a compressed block [start, end); returns bounds of
    its decoded size. `state` records the tables later blocks may repeat."""
    if end - start < 2:
        raise _bad(11, "compressed block too short for its section headers")
    b0 = mv[start]
    kind, fmt = b0 & 3, b0 >> 2 & 3
    if kind < 2:  # raw or RLE literals
        hsize = (1, 2, 1, 3)[fmt]
        if start + hsize > end:
            raise _bad(11, "truncated literals section header")
        if hsize == 1:
            regen = b0 >> 3
        else:
            regen = b0 >> 4 | mv[start + 1] << 4 | (mv[start + 2] << 12 if hsize == 3 else 0)
        lits = start + hsize + (regen if kind == 0 else 1)
    else:  # Huffman-coded literals, with their tree or the previous one (treeless)
        hsize, bits = ((3, 10), (3, 10), (4, 14), (5, 18))[fmt]
        if start + hsize > end:
            raise _bad(11, "truncated literals section header")
        lh = int.from_bytes(mv[start : start + hsize], "little")
        mask = (1 << bits) - 1
        regen, comp = lh >> 4 & mask, lh >> (4 + bits) & mask
        lits = start + hsize + comp
        if lits > end:
            raise _bad(11, "literals section larger than its block")
        p = start + hsize
        if kind == 3:
            if not state[0]:
                raise _bad(11, "treeless literals without an earlier Huffman table in the frame")
        else:
            if p >= lits:
                raise _bad(11, "truncated Huffman tree description")
            hb = mv[p]
            p += 1 + (hb if hb < 128 else (hb - 126) // 2)
            state[0] = True
        _huffman_streams(mv, p, lits, regen, fmt != 0)
    if regen > block_max:
        raise _bad(11, f"{regen} literals above Block_Maximum_Size {block_max}")
    if lits >= end:
        raise _bad(11, "no room for the sequences section")
    s0 = mv[lits]
    if s0 == 0:
        if lits + 1 != end:
            raise _bad(12, "bytes after an empty sequences section")
        return regen, regen
    q = lits + (1 if s0 < 128 else 2 if s0 < 255 else 3)
    if q >= end:
        raise _bad(12, "truncated sequences section header")
    if s0 < 128:
        nseq = s0
    elif s0 < 255:
        nseq = (s0 - 128) << 8 | mv[lits + 1]
    else:
        nseq = (mv[lits + 1] | mv[lits + 2] << 8) + 0x7F00
    modes = mv[q]
    if modes & 3:
        raise _bad(12, "reserved bits of the symbol compression modes set")
    if not state[1] and 3 in (modes >> 6, modes >> 4 & 3, modes >> 2 & 3):
        raise _bad(11, "repeat mode without earlier sequence tables in the frame")
    state[1] = True
    if q + 1 >= end or mv[end - 1] == 0:
        raise _bad(13, "the sequences bitstream lacks its end mark (last byte zero or no byte)")
    lower = regen + 3 * nseq  # every sequence's match is at least 3 bytes
    if lower > block_max:
        raise _bad(7, f"block decoding to at least {lower} bytes, above Block_Maximum_Size {block_max}")
    return lower, block_max


def _huffman_streams(mv: memoryview, p: int, end: int, regen: int, four: bool) -> None:
    """Each Huffman stream [p, end) (one, or four behind a jump table) is non-empty and ends with its end
    mark: a last byte that is not zero (rule 13)."""
    if not four:
        ends = [end]
        if p >= end:
            raise _bad(11, "empty Huffman stream")
    else:
        if p + 6 > end:
            raise _bad(11, "truncated jump table")
        s1, s2, s3 = (mv[p + i] | mv[p + i + 1] << 8 for i in (0, 2, 4))
        a = p + 6 + s1
        ends = [a, a + s2, a + s2 + s3, end]
        if not (s1 and s2 and s3 and ends[2] < end):
            raise _bad(11, "jump table sizes do not fit the literals section")
        if 3 * ((regen + 3) // 4) > regen:
            raise _bad(11, f"{regen} literals cannot fill four streams")
    for e in ends:
        if mv[e - 1] == 0:
            raise _bad(13, "a Huffman stream lacks its end mark (last byte zero)")
