"""The codec table (SPEC.md §6): every codec a file may name, by name.

The contract every codec meets, stated once: a chunk of `raw_len` decoded bytes is stored as a fixed number
of segments (`segments(width)`), back to back; `check` accepts exactly the segment lengths a valid chunk can
have, from the manifest alone, before any byte is read; `encode` and `decode` are inverse, and `decode`
fills the output it is given and refuses any input that `check` allowed but the codec's rules do not.
Adding a codec is one entry in `CODECS` and one subsection of SPEC.md §6.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import floordiv, itemgetter, le

from ..errors import BadTensor, UnknownCodec
from . import zstd
from .planes import Buffer, Merge, Split, merge_planes, split_planes

RAW = "raw"
ZSTD = "zstd"
BYTEGROUP_ZSTD = "bytegroup-zstd"
#: the largest byte-group width (SPEC.md §5.1)
MAX_WIDTH = 16


@dataclass(frozen=True)
class Codec:
    """One entry of the table; see the module's contract."""

    name: str
    #: whether the codec stores byte planes of the dtype's width (all others require width 1)
    grouped: bool
    #: (width, raw_len, segment lengths) -> None, or BadTensor with a reason
    check: Callable[[int, int, Sequence[int]], None]
    #: (width, data, level, split, max_ratio) -> segments; a frame is never more than max_ratio (if not 0)
    #: times shorter than what it holds
    encode: Callable[[int, Buffer, int, Split, int], list[Buffer]]
    #: (width, segments, out, max_window, checksummed, merge) -> None; `checksummed`: frames must carry their
    #: content checksum (the file's schema version, SPEC.md §6.4 rule 6)
    decode: Callable[[int, Sequence[Buffer], memoryview, int, bool, Merge], None]

    #: (raw_lens, widths, segment lists) -> whether `check` accepts every chunk: the same rule over many
    #: chunks at once (the fast path's), each of whose segment lists has `segments(width)` entries
    check_many: Callable[[list[int], list[int], list[Sequence[int]]], bool] | None = None

    def segments(self, width: int) -> int:
        return width if self.grouped else 1

    def accepts(self, raw_lens: list[int], widths: list[int], segments: list[Sequence[int]]) -> bool:
        """`check_many`, or `check` chunk by chunk for a codec without one."""
        if self.check_many is not None:
            return self.check_many(raw_lens, widths, segments)
        try:
            for raw_len, width, segs in zip(raw_lens, widths, segments, strict=True):
                self.check(width, raw_len, segs)
        except BadTensor:
            return False
        return True


def _check_raw(width: int, raw_len: int, segments: Sequence[int]) -> None:
    if segments[0] != raw_len:
        raise BadTensor(f"raw segment of {segments[0]} bytes for {raw_len} decoded bytes")


def _check_frames(width: int, raw_len: int, segments: Sequence[int]) -> None:
    plane = raw_len // width
    for n in segments:
        if n < 1 or n > plane:
            raise BadTensor(f"segment of {n} bytes for a plane of {plane} bytes")


def _raw_many(raw_lens: list[int], widths: list[int], segments: list[Sequence[int]]) -> bool:
    return list(map(itemgetter(0), segments)) == raw_lens


def _frames_many(raw_lens: list[int], widths: list[int], segments: list[Sequence[int]]) -> bool:
    planes = map(floordiv, raw_lens, widths)
    return min(map(min, segments), default=1) >= 1 and all(map(le, map(max, segments), planes))


def _decode_raw(
    width: int, segments: Sequence[Buffer], out: memoryview, max_window: int, checksummed: bool, merge: Merge
) -> None:
    out[:] = segments[0]


def _decode_zstd(
    width: int, segments: Sequence[Buffer], out: memoryview, max_window: int, checksummed: bool, merge: Merge
) -> None:
    out[:] = zstd.decode_segment(segments[0], len(out), max_window, checksummed)


def _decode_grouped(
    width: int, segments: Sequence[Buffer], out: memoryview, max_window: int, checksummed: bool, merge: Merge
) -> None:
    plane = len(out) // width
    merge([zstd.decode_segment(seg, plane, max_window, checksummed) for seg in segments], width, out)


CODECS: dict[str, Codec] = {
    c.name: c
    for c in (
        Codec(RAW, False, _check_raw, lambda w, data, level, split, ratio: [data], _decode_raw, _raw_many),
        Codec(
            ZSTD,
            False,
            _check_frames,
            lambda w, data, level, split, ratio: [zstd.encode_segment(data, level, False, ratio)],
            _decode_zstd,
            _frames_many,
        ),
        Codec(
            BYTEGROUP_ZSTD,
            True,
            _check_frames,
            lambda w, data, level, split, ratio: [
                zstd.encode_segment(p, level, True, ratio) for p in split(data, w)
            ],
            _decode_grouped,
            _frames_many,
        ),
    )
}
#: what a writer may ask for: a codec, or "auto" (the writer's choice per dtype, SPEC.md §11)
CHOICES = ("auto", *CODECS)


def codec(name: str) -> Codec:
    """The table entry of a codec name, or UNKNOWN_CODEC."""
    try:
        return CODECS[name]
    except KeyError:
        raise UnknownCodec(f"unknown codec {name!r}") from None


def check_chunk(name: str, width: int, raw_len: int, segments: Sequence[int], where: str) -> None:
    """Validate a chunk's segment lengths against its decoded length, before any byte is read."""
    c = codec(name)
    if len(segments) != c.segments(width):
        raise BadTensor(f"{where}: codec {name} needs {c.segments(width)} segments, not {len(segments)}")
    try:
        c.check(width, raw_len, segments)
    except BadTensor as exc:
        raise BadTensor(f"{where}: {exc}") from None


def encode_chunk(
    name: str, width: int, data: Buffer, level: int, split: Split = split_planes, max_ratio: int = 0
) -> list[Buffer]:
    """Encode one chunk into its segments (`max_ratio`: see `Codec.encode`)."""
    return codec(name).encode(width, data, level, split, max_ratio)


def decode_chunk(
    name: str,
    width: int,
    segments: Sequence[Buffer],
    out: memoryview,
    max_window: int,
    checksummed: bool,
    merge: Merge = merge_planes,
) -> None:
    """Decode a chunk's segments into `out`, whose length is the chunk's decoded length; `checksummed`:
    the file's schema version requires frames' content checksums (SPEC.md §6.4 rule 6)."""
    codec(name).decode(width, segments, out, max_window, checksummed, merge)
