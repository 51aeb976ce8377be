"""The decoder-differential cases (SPEC.md §6.4): frames that break one numbered rule, many of which libzstd
accepts."""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import zstd_frames
from .hostile_cases import H, Hostile
from .surgery import segment
from .valid_cases import Valid

# -- decoder differential (SPEC.md §6.4) ---------------------------------------------------------------------
# Each case is a valid sibling with its one frame replaced by one that breaks one numbered rule of §6.4
# (`zstd_frames` builds them from the content the sibling holds). libzstd decodes those of LIBZSTD_ACCEPTS
# without complaint: a reader that leaves validity to its decoder accepts them.
TEXT = zstd_frames.text(100_000)
ZEROS = bytes(256 * 1024)
#: the hostile cases whose frame libzstd accepts
LIBZSTD_ACCEPTS = frozenset(f"zstd_{name}" for name in zstd_frames.LIBZSTD_ACCEPTS)
ZSTD_VALID: dict[str, Valid] = {
    "text_zstd": Valid(
        lambda: {"t": torch.frombuffer(bytearray(TEXT), dtype=torch.uint8)},
        "§6.2, §6.4",
        "100,000 bytes of text, codec zstd: one frame of one compressed block (Huffman literals in four "
        "streams, sequences), with its content checksum",
        {"codec": "zstd"},
    ),
    "zeros_256k_zstd": Valid(
        lambda: {"z": torch.zeros(len(ZEROS), dtype=torch.uint8)},
        "§6.2, §6.4",
        "256 KiB of zero bytes, codec zstd: one frame of more than one block",
        {"codec": "zstd"},
    ),
}


def _differential(
    sibling: str, rule: str, what: str, description: str, spec: str = "§6.4"
) -> Callable[[str], Hostile]:
    content = TEXT if sibling == "text_zstd" else ZEROS

    def case(name: str) -> Hostile:
        frame = getattr(zstd_frames, name)(content)
        accepted = "libzstd accepts it" if f"zstd_{name}" in LIBZSTD_ACCEPTS else "libzstd refuses it too"
        return H(
            sibling,
            36,
            segment(frame),
            f"the frame replaced by {what} (chunk digest recomputed; {accepted})",
            ("BAD_COMPRESSED_DATA",),
            spec,
            f"{description} (§6.4 rule {rule})",
        )

    return case


ZSTD_HOSTILE: dict[str, Hostile] = {
    f"zstd_{name}": make(name)
    for name, make in {
        "no_checksum": _differential(
            "text_zstd",
            "6",
            "the writer's frame without its content checksum",
            "a schema-6 frame without checksum",
        ),
        "raw_block_over_window": _differential(
            "zeros_256k_zstd",
            "7",
            "one with a 1 KiB window whose first block is a 2 KiB raw block",
            "a raw block above Block_Maximum_Size",
        ),
        "rle_block_over_window": _differential(
            "zeros_256k_zstd",
            "7",
            "one with a 1 KiB window holding RLE blocks of 64 KiB",
            "an RLE block above the window size",
        ),
        "rle_block_over_128k": _differential(
            "zeros_256k_zstd",
            "7",
            "one single-segment frame of one 256 KiB RLE block",
            "an RLE block above 128 KiB",
        ),
        "huffman_stream_zero_end": _differential(
            "text_zstd",
            "13",
            "the writer's frame with the last byte of its first Huffman stream zeroed, the checksum that "
            "of what libzstd decodes (other bytes of the right length)",
            "a Huffman stream without its final padding bit",
        ),
        "checksum_wrong": _differential(
            "text_zstd",
            "6",
            "the writer's frame with one bit of its content checksum flipped",
            "a wrong content checksum",
        ),
        "reserved_block_type": _differential(
            "text_zstd", "8", "the writer's frame with its block type set to 3", "the reserved block type"
        ),
        "blocks_short_of_content_size": _differential(
            "zeros_256k_zstd",
            "9",
            "RLE blocks that end one byte before the content size",
            "blocks that decode to less than the content size",
        ),
        "compressed_block_over_window": _differential(
            "text_zstd",
            "7",
            "the writer's frame with a 1 KiB window declared (its compressed block is larger)",
            "a compressed block above Block_Maximum_Size",
        ),
        "repeat_mode_first_block": _differential(
            "text_zstd",
            "11",
            "the writer's frame with its literal-length table mode set to Repeat_Mode",
            "Repeat_Mode in the first block of a frame",
        ),
    }.items()
}
