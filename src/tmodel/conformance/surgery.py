"""Byte surgery on valid files: take a file apart, change one thing, put it together with every digest
that covers the change recomputed, so that the check the change targets is the one reached."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import msgpack
import zstandard

from tmodel.container.digests import ALGORITHMS, BY_ID
from tmodel.container.framing import HEADER_SIZE, TRAILER_SIZE, align, pack_trailer
from tmodel.manifest.encoding import pack_manifest


# -- byte surgery --------------------------------------------------------------------------------------------
def split(data: bytes) -> tuple[bytes, bytes, dict[str, Any], str]:
    """(header, blob region incl. padding, decoded manifest, trailer digest name) of a valid file."""
    offset, length, algo = struct.unpack_from("<QQH", data, len(data) - TRAILER_SIZE)
    wire = msgpack.unpackb(data[offset : offset + length], raw=False, strict_map_key=False)
    return data[:HEADER_SIZE], data[HEADER_SIZE:offset], wire, BY_ID[algo]


def build(header: bytes, region: bytes, manifest: dict[str, Any] | bytes, digest_name: str) -> bytes:
    """header + blob region (zero-padded to 64) + manifest + a trailer whose digest is correct."""
    raw = manifest if isinstance(manifest, bytes) else pack_manifest(manifest)
    region += bytes(align(HEADER_SIZE + len(region)) - HEADER_SIZE - len(region))
    return header + region + raw + pack_trailer(HEADER_SIZE + len(region), raw, digest_name, header)


def header(version: int = 1, flags: int = 0, reserved: bytes = bytes(48)) -> bytes:
    return struct.pack("<8sII48s", b"\x89TMODEL\n", version, flags, reserved)


def packed_map(items: list[tuple[str, bytes]]) -> bytes:
    """A msgpack map from already-encoded values (for encodings msgpack.packb refuses to produce)."""
    return bytes([0x80 | len(items)]) + b"".join(msgpack.packb(k) + v for k, v in items)


def with_raw(wire: dict[str, Any], key: str, raw_value: bytes) -> bytes:
    return packed_map([(k, raw_value if k == key else pack_manifest(v)) for k, v in wire.items()])


MiB = 1 << 20
Edit = Callable[[bytes], bytes]


def signing_key(seed: int) -> Any:
    """A fixed Ed25519 key of the suite (Ed25519 signatures are deterministic, so the files are too)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def signature_block(edit: Callable[[list[dict[str, Any]]], Any]) -> Edit:
    """Change a signed file's decoded signature block, re-encode it, recompute the trailer digest."""

    def run(data: bytes) -> bytes:
        off, ln, algo, sl = struct.unpack_from("<QQHI", data, len(data) - TRAILER_SIZE)
        entries = msgpack.unpackb(data[off + ln : off + ln + sl], raw=False)
        out = edit(entries)
        block = pack_manifest(entries if out is None else out)
        raw = data[off : off + ln]
        trailer = pack_trailer(off, raw, BY_ID[algo], data[:HEADER_SIZE], block)
        return data[: off + ln] + block + trailer

    return run


def flip_signature(entries: list[dict[str, Any]]) -> None:
    sig = bytearray(entries[0]["signature"])
    sig[0] ^= 0x01
    entries[0]["signature"] = bytes(sig)


def manifest(mutate: Callable[[dict[str, Any]], None]) -> Edit:
    """Change the decoded manifest, re-encode it, recompute the trailer digest."""

    def edit(data: bytes) -> bytes:
        h, region, wire, algo = split(data)
        mutate(wire)
        return build(h, region, wire, algo)

    return edit


def manifest_bytes(encode: Callable[[dict[str, Any]], bytes]) -> Edit:
    """Replace the manifest bytes by hand-encoded msgpack, recompute the trailer digest."""

    def edit(data: bytes) -> bytes:
        h, region, wire, algo = split(data)
        return build(h, region, encode(wire), algo)

    return edit


def with_header(new: bytes) -> Edit:
    def edit(data: bytes) -> bytes:
        _, region, wire, algo = split(data)
        return build(new, region, wire, algo)

    return edit


def region_edit(change: Callable[[bytes, dict[str, Any]], bytes]) -> Edit:
    """Change the blob region (and the manifest's blob records in place), recompute the trailer digest."""

    def edit(data: bytes) -> bytes:
        h, region, wire, algo = split(data)
        return build(h, change(region, wire), wire, algo)

    return edit


def segment(seg: bytes, blob: int = 0) -> Edit:
    """Make `seg` the only segment of the blob's only chunk, with its chunk digest recomputed."""

    def edit(data: bytes) -> bytes:
        h, _, wire, algo = split(data)
        b = wire["blobs"][blob]
        assert len(b["chunks"]) == 1 and len(wire["blobs"]) == 1
        b["length"] = len(seg)
        b["chunks"][0] = {"digest": ALGORITHMS[wire["checksum"]][2](seg), "segments": [len(seg)]}
        return build(h, seg, wire, algo)

    return edit


def raw(change: Callable[[bytearray], bytes | bytearray]) -> Edit:
    return lambda data: bytes(change(bytearray(data)))


def xor_at(pos: int, mask: int = 0x01) -> Callable[[bytearray], bytearray]:
    def change(b: bytearray) -> bytearray:
        b[pos if pos >= 0 else len(b) + pos] ^= mask
        return b

    return change


def trailer_field(fmt: str, at: int, value: int) -> Callable[[bytearray], bytearray]:
    def change(b: bytearray) -> bytearray:
        struct.pack_into(fmt, b, len(b) - TRAILER_SIZE + at, value)
        return b

    return change


def zstd_frame(data: bytes, **kwargs: Any) -> bytes:
    return bytes(zstandard.ZstdCompressor(level=3, **{"write_checksum": True, **kwargs}).compress(data))


def big_window(frame: bytes) -> bytes:
    """The frame with its single-segment flag cleared and a window descriptor of 2 GiB inserted."""
    fhd = frame[4]
    assert fhd & 0x20 and not fhd & 0x03 and fhd >> 6 == 1  # single segment, 2-byte content size
    return frame[:4] + bytes([fhd & ~0x20, 21 << 3]) + frame[5:]


def bomb(data: bytes) -> bytes:
    """zeros_zstd declaring 256 MiB of decoded bytes, stored as an 8 KB frame of zeros."""
    h, _, wire, algo = split(data)
    n = 256 * MiB
    seg = zstandard.ZstdCompressor(level=1, write_checksum=True).compress(bytes(n))
    b = wire["blobs"][0]
    b.update(nbytes=n, chunk_size=n, length=len(seg))
    b["chunks"][0] = {"digest": ALGORITHMS[wire["checksum"]][2](seg), "segments": [len(seg)]}
    wire["tensors"][0]["shape"] = [n]
    return build(h, seg, wire, algo)


def tensor_set(i: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda w: w["tensors"][i].__setitem__(key, value)


def blob_set(i: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda w: w["blobs"][i].__setitem__(key, value)


def as_older(w: dict[str, Any], version: int) -> None:
    """A current manifest renumbered as an older version, without the keys later versions added (`shards`
    in 7, `checkpoint` in 6; empty and nil in every file the cases write)."""
    if version < 7:
        del w["shards"]
    if version < 6:
        del w["checkpoint"]
    w["schema_version"] = version
