"""Structure-aware mutators for .tmodel files, shared by tests/test_fuzz_smoke.py and
benchmarks/fuzz_campaign.py. Importable helpers only; no tests here.

A valid file is split into its header, its decoded manifest and the stored segments of every chunk of every
blob (`Parts`). Mutators work on one layer and re-assemble the file with every checksum above that layer
recomputed, so that a mutation gets past the digests and reaches the check it targets:

- "container": header and trailer integers (manifest digest recomputed with the mutated trailer prefix);
- "manifest":  manifest fields re-encoded as msgpack (wrong types, huge/negative ints, dropped/duplicate keys,
  dtypes, codecs, shapes, strides, offsets, blob indices, deep nesting, module records);
- "payload":   decoded chunk bytes mutated and re-compressed (or stored raw), and raw edits of compressed
  frames, each with the chunk digest, segment lengths, blob offsets/lengths recomputed;
- "chunks":    chunk tables (segment lists, digest lengths, chunk counts, chunk_size);
- "bitflip":   raw byte flips/truncation/insertion with stale checksums.

Every mutator takes an object with the `random.Random` API (`random.Random`, or hypothesis' `st.randoms()`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import resource
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import zstandard

from tmodel.container.digests import ALGORITHMS, BY_ID
from tmodel.container.framing import HEADER_SIZE, TRAILER_SIZE, align, manifest_digest
from tmodel.errors import TModelError

LAYERS = ("container", "manifest", "payload", "chunks", "bitflip")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DTYPES = (
    "float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
    "float8_e5m2fnuz", "complex64", "complex128", "bool", "int8", "int16", "int32", "int64", "uint8",
    "uint16", "uint32", "uint64", "float128", "", "Float32",
)  # fmt: skip
CODECS = ("raw", "zstd", "bytegroup-zstd", "lz4", "", "ZSTD")
INTERESTING_INTS = (
    0, 1, 2, 3, 7, 8, 15, 16, 17, 63, 64, 65, 127, 128, 255, 256, 4095, 4096, 65535, 65536,
    2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**50, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64 - 1,
    -1, -2, -64, -(2**31), -(2**63),
)  # fmt: skip


# -- decomposition / assembly ---------------------------------------------------------------------------
@dataclass
class Parts:
    """A valid file, decomposed: header bytes, manifest (decoded wire form), stored segments per chunk."""

    header: bytes
    wire: dict[str, Any]
    segments: list[list[list[bytes]]]  # blob -> chunk -> segment bytes
    digest_name: str


def split(data: bytes) -> Parts:
    size = len(data)
    offset, length, algo_id = struct.unpack_from("<QQH", data, size - TRAILER_SIZE)
    wire = msgpack.unpackb(data[offset : offset + length], raw=False)
    segs: list[list[list[bytes]]] = []
    for blob in wire["blobs"]:
        pos = blob["offset"]
        chunks = []
        for chunk in blob["chunks"]:
            seg = []
            for n in chunk["segments"]:
                seg.append(data[pos : pos + n])
                pos += n
            chunks.append(seg)
        segs.append(chunks)
    return Parts(data[:HEADER_SIZE], wire, segs, BY_ID[algo_id])


class Pairs(list):  # type: ignore[type-arg]
    """A msgpack map given as a list of (key, value) pairs: it may hold duplicate or non-str keys."""


class RawMsgpack(bytes):
    """Already-encoded msgpack bytes, inserted verbatim."""


def encode(obj: Any) -> bytes:
    """msgpack encoding that also supports Pairs and RawMsgpack (encodings msgpack.packb refuses)."""
    if isinstance(obj, RawMsgpack):
        return bytes(obj)
    if isinstance(obj, (dict, Pairs)):
        items = list(obj.items()) if isinstance(obj, dict) else list(obj)
        n = len(items)
        head = (
            bytes([0x80 | n])
            if n < 16
            else (b"\xde" + struct.pack(">H", n) if n < 65536 else b"\xdf" + struct.pack(">I", n))
        )
        return head + b"".join(encode(k) + encode(v) for k, v in items)
    if isinstance(obj, (list, tuple)):
        n = len(obj)
        head = (
            bytes([0x90 | n])
            if n < 16
            else (b"\xdc" + struct.pack(">H", n) if n < 65536 else b"\xdd" + struct.pack(">I", n))
        )
        return head + b"".join(encode(v) for v in obj)
    if isinstance(obj, int) and not isinstance(obj, bool) and not -(2**63) <= obj < 2**64:
        return msgpack.packb(float(obj))  # out of msgpack's range: a float instead
    return bytes(msgpack.packb(obj, use_bin_type=True))


def sign(
    header: bytes,
    region: bytes,
    manifest: bytes,
    digest_name: str = "xxh3-64",
    *,
    offset: int | None = None,
    length: int | None = None,
    algo_id: int | None = None,
    reserved: bytes = bytes(6),
    end: bytes = b"TMODEND\n",
    pad: bytes | None = None,
) -> bytes:
    """header + region + manifest + a trailer whose digest is recomputed over the (possibly lying) prefix."""
    offset = HEADER_SIZE + len(region) if offset is None else offset
    length = len(manifest) if length is None else length
    algo_id = ALGORITHMS[digest_name][0] if algo_id is None else algo_id
    prefix = struct.pack("<QQH6s", offset & (2**64 - 1), length & (2**64 - 1), algo_id & 0xFFFF, reserved)
    name = BY_ID.get(algo_id & 0xFFFF, digest_name)
    digest = manifest_digest(name, header, manifest, prefix)
    field = digest.ljust(32, b"\0") if pad is None else (digest + pad)[:32].ljust(32, b"\0")
    return header + region + manifest + prefix + field + end


def layout(
    parts: Parts, *, fix_offsets: bool = True, fix_digests: bool = True
) -> tuple[bytes, dict[str, Any]]:
    """(blob region, wire) from parts: blob offsets/lengths, segment lengths and chunk digests recomputed."""
    wire = parts.wire
    region = bytearray()
    algo = ALGORITHMS.get(wire.get("checksum") if isinstance(wire, dict) else None)  # type: ignore[arg-type]
    blobs = wire.get("blobs") if isinstance(wire, dict) else None
    for i, chunks in enumerate(parts.segments):
        start = HEADER_SIZE + len(region)
        stored = b"".join(b"".join(c) for c in chunks)
        region += stored
        region += bytes(align(HEADER_SIZE + len(region)) - HEADER_SIZE - len(region))
        if not isinstance(blobs, list) or i >= len(blobs) or not isinstance(blobs[i], dict):
            continue
        blob = blobs[i]
        if fix_offsets:
            blob["offset"] = start
            blob["length"] = len(stored)
        wchunks = blob.get("chunks")
        if not isinstance(wchunks, list):
            continue
        for j, segs in enumerate(chunks):
            if j >= len(wchunks) or not isinstance(wchunks[j], dict):
                continue
            if fix_offsets:
                wchunks[j]["segments"] = [len(s) for s in segs]
            if fix_digests and algo is not None:
                wchunks[j]["digest"] = algo[2](b"".join(segs))
    return bytes(region), wire


def assemble(parts: Parts, **kw: Any) -> bytes:
    region, wire = layout(parts, **kw)
    return sign(parts.header, region, encode(wire), parts.digest_name)


# -- value generators -----------------------------------------------------------------------------------
def rand_bytes(rng: Any, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def weird_value(rng: Any, like: Any = None) -> Any:
    """A value of a wrong type or an extreme magnitude."""
    r = rng.randrange(16)
    if r < 5:
        return rng.choice(INTERESTING_INTS)
    if r < 7 and isinstance(like, int) and not isinstance(like, bool):
        return like + rng.choice((-(2**32), -65, -64, -8, -2, -1, 1, 2, 8, 63, 64, 2**32))
    return rng.choice(
        (
            None, True, False, 1.0, -0.0, float("nan"), float("inf"), 1e300, "", "1", "x" * 300,
            "\x00", "a/b", "..", b"", b"\x01", [], [1], [-1], {}, {"": 0}, {"tensor": 0}, {"list": []},
            [2**63] * 3, [0] * 70, Pairs([(1, 2)]), RawMsgpack(b"\xc1"), RawMsgpack(b"\xd4\x01\x00"),
            RawMsgpack(b"\xc7\x00\xff"), RawMsgpack(b"\xa2\xff\xfe"), RawMsgpack(b"\xdd\xff\xff\xff\xff"),
            RawMsgpack(b"\xdf\x7f\xff\xff\xff"), RawMsgpack(b"\xc6\xff\xff\xff\xf0"),
        )
    )  # fmt: skip


def nested(rng: Any, depth: int) -> RawMsgpack:
    """`depth` levels of arrays/maps/list-nodes/dict-nodes around a leaf, pre-encoded (no recursion)."""
    leaf = encode(rng.choice((0, None, "x", {"tensor": 0})))
    heads = [rng.choice((b"\x91", b"\x81\xa1k", b"\x81\xa4list\x91")) for _ in range(depth)]
    return RawMsgpack(b"".join(heads) + leaf)


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (tuple of keys/indices) in a nested dict/list structure, the root excluded."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((*prefix, k))
            out.extend(paths(v, (*prefix, k)))
    elif isinstance(obj, list) and not isinstance(obj, Pairs):  # a Pairs map is final: its items are pairs
        for i, v in enumerate(obj):
            out.append((*prefix, i))
            out.extend(paths(v, (*prefix, i)))
    return out


def get_parent(obj: Any, path: tuple[Any, ...]) -> Any:
    for k in path[:-1]:
        obj = obj[k]
    return obj


# -- layer 2: manifest fields ---------------------------------------------------------------------------
def _targeted(rng: Any, w: dict[str, Any]) -> None:
    """Semantically aimed manifest edits: dtypes, codecs, shapes, strides, offsets, indices, modules."""
    blobs, tensors, modules = w.get("blobs") or [], w.get("tensors") or [], w.get("modules") or []
    r = rng.randrange(12)
    if r == 0 and tensors:
        rng.choice(tensors)["dtype"] = rng.choice(DTYPES)
    elif r == 1 and blobs:
        b = rng.choice(blobs)
        b["codec"] = rng.choice(CODECS)
        if rng.random() < 0.5:
            b["width"] = rng.choice((1, 2, 3, 4, 8, 16, 17, 0))
    elif r == 2 and tensors:
        t = rng.choice(tensors)
        rank = rng.choice((0, 1, 2, 3, 8, 64, 65, 200))
        t["shape"] = [rng.choice((0, 1, 2, 3, 2**20, 2**31, 2**62, 2**63 - 1)) for _ in range(rank)]
        t["strides"] = [
            rng.choice((0, 1, 2, 2**40, 2**63 - 1)) for _ in range(rank if rng.random() < 0.8 else rank + 1)
        ]
    elif r == 3 and tensors:
        t = rng.choice(tensors)
        k = rng.choice(("offset", "blob"))
        t[k] = rng.choice((None, 0, 1, 2, len(blobs), len(blobs) - 1, -1, 2**63 - 1, 2**63, t.get(k, 0) + 1))
    elif r == 4 and tensors:
        t = rng.choice(tensors)
        if t.get("shape"):
            i = rng.randrange(len(t["shape"]))
            t["shape"][i] = rng.choice((0, t["shape"][i] + 1, t["shape"][i] * 2, 2**32, 2**63 - 1))
            if rng.random() < 0.5 and t.get("strides"):
                t["strides"][min(i, len(t["strides"]) - 1)] = 0
    elif r == 5 and blobs:
        b = rng.choice(blobs)
        k = rng.choice(("nbytes", "chunk_size", "length", "offset", "width"))
        v = b.get(k, 0)
        b[k] = rng.choice((0, 1, v + 1, v - 1, v * 2, v // 2, 2**28, 2**28 + 1, 2**50, 2**63 - 1))
    elif r == 6:
        w["checksum"] = rng.choice(("xxh3-64", "sha256", "crc32", "", "XXH3-64"))
    elif r == 7 and modules:
        m = rng.choice(modules)
        k = rng.choice(("type", "version", "config", "parameters", "buffers", "children", "training"))
        if k == "type":
            m[k] = rng.choice(
                (
                    "torch.nn.Linear",
                    "torch.nn.ReLU",
                    "os.system",
                    "torch.nn.Sequential",
                    "a..b",
                    "",
                    "torch.nn.Conv2d",
                )
            )
        elif k == "config" and isinstance(m.get(k), dict) and m[k]:
            ck = rng.choice(list(m[k]))
            m[k][ck] = rng.choice(
                (
                    2**20,
                    2**31,
                    2**40,
                    2**63 - 1,
                    -1,
                    0,
                    None,
                    "x",
                    1.5,
                    {"module": 0},
                    {"tensor": 0},
                    {"dtype": "float64"},
                    {"dtype": "nope"},
                )
            )
        elif k in ("children", "buffers", "parameters") and isinstance(m.get(k), dict):
            name = rng.choice([*list(m[k]), "new", "a.b", "", "..", "x/y"])
            m[k][name] = rng.choice(
                (
                    0,
                    1,
                    len(modules),
                    len(tensors),
                    -1,
                    None,
                    {"tensor": 0, "requires_grad": True},
                    {"tensor": 99},
                )
            )
        else:
            m[k] = weird_value(rng, m.get(k))
    elif r == 8 and modules:
        # cycles: a child pointing back at an ancestor, or at itself
        m = rng.choice(modules)
        if isinstance(m.get("children"), dict):
            m["children"][rng.choice(("c", *m["children"]))] = rng.randrange(len(modules))
    elif r == 9:
        root = w.get("root")
        w["root"] = rng.choice((
            {"tensor": len(tensors)}, {"module": len(modules)}, {"module": 0}, {"dtype": "float32"},
            {"dict": [[1, None], [1.0, None]]}, {"dict": [[True, 0], [1, 0]]}, {"dict": [[[1], 0]]},
            {"dict": [["a"]]}, {"tuple": root}, {"list": [root, root]}, {"tensor": 0, "list": []},
            {"dict": [[float("nan"), 0], [float("nan"), 1]]}, {"set": []},
        ))  # fmt: skip
    elif r == 10 and tensors:
        t = rng.choice(tensors)
        t["name"] = rng.choice(
            ("", "a/b", "..", "x\x00", "\x7f", "é" * 600, tensors[0].get("name"), "ok.name")
        )
    elif r == 11:
        w["required_features"] = rng.choice((["x"], [1], None, [""], "x"))
        if rng.random() < 0.3:
            w["schema_version"] = rng.choice((0, 1, 3, 2**64 - 1, "2", 2.0, True))


def mutate_manifest(rng: Any, parts: Parts) -> None:
    """Mutate parts.wire in place (maybe turning maps into Pairs for duplicate keys)."""
    w = parts.wire
    for _ in range(1 + (rng.random() < 0.3) + (rng.random() < 0.1)):
        # an earlier step may have changed the structure this one expects; the input is still a mutant
        with contextlib.suppress(TypeError, KeyError, IndexError, AttributeError, ValueError):
            w = _manifest_step(rng, parts, w)
        if not isinstance(w, dict):
            return


def _manifest_step(rng: Any, parts: Parts, w: Any) -> Any:
    """One manifest edit; returns the (possibly replaced) top-level manifest."""
    r = rng.randrange(10)
    all_paths = paths(w)
    if r < 4:
        _targeted(rng, w)
    elif r < 6 and all_paths:  # replace a random field by a weird value
        p = rng.choice(all_paths)
        parent = get_parent(w, p)
        parent[p[-1]] = weird_value(rng, parent[p[-1]])
    elif r == 6 and all_paths:  # drop a key / element
        p = rng.choice(all_paths)
        parent = get_parent(w, p)
        del parent[p[-1]]
    elif r == 7:  # add a key / duplicate a key
        maps = [p for p in all_paths if isinstance(get_parent(w, p)[p[-1]], dict)]
        p = rng.choice(maps) if maps and rng.random() < 0.8 else None
        target = get_parent(w, p)[p[-1]] if p else w
        if target and rng.random() < 0.5:
            k = rng.choice(list(target))
            pairs = Pairs([*list(target.items()), (k, target[k])])
            if p:
                get_parent(w, p)[p[-1]] = pairs
            else:
                parts.wire = w = Pairs(pairs)  # type: ignore[assignment]
        else:
            target[rng.choice(("extra", "", "offset", "tensor", "list"))] = weird_value(rng)
    elif r == 8 and all_paths:  # deep nesting somewhere
        p = rng.choice(all_paths)
        get_parent(w, p)[p[-1]] = nested(rng, rng.choice((10, 126, 127, 128, 129, 300, 3000)))
    elif r == 9 and all_paths:  # duplicate an array element / grow lists
        lists = [p for p in all_paths if isinstance(get_parent(w, p)[p[-1]], list)]
        if lists:
            lst = get_parent(w, p := rng.choice(lists))[p[-1]]
            if lst:
                lst.append(copy.deepcopy(rng.choice(lst)))
    return w


# -- layer 3: payload -----------------------------------------------------------------------------------
def _mutate_buf(rng: Any, buf: bytearray) -> None:
    if not buf:
        buf.extend(rand_bytes(rng, rng.randrange(1, 9)))
        return
    r = rng.randrange(6)
    if r == 0:
        buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif r == 1:
        buf[rng.randrange(len(buf))] = rng.choice((0, 1, 2, 0x7F, 0x80, 0xFF))
    elif r == 2:
        i = rng.randrange(len(buf))
        buf[i : i + 8] = rand_bytes(rng, len(buf[i : i + 8]))
    elif r == 3:
        del buf[rng.randrange(len(buf)) :]
    elif r == 4:
        buf[rng.randrange(len(buf) + 1) : 0] = rand_bytes(rng, rng.randrange(1, 9))
    else:
        for i in range(len(buf)):
            buf[i] = rng.choice((0, 1, 2, 0xFF))


def _zstd_frame(rng: Any, data: bytes) -> bytes:
    params = zstandard.ZstdCompressionParameters.from_level(
        rng.choice((1, 3, 19)),
        write_content_size=rng.random() < 0.9,
        write_checksum=rng.random() < 0.3,
        write_dict_id=False,
    )
    return zstandard.ZstdCompressor(compression_params=params).compress(data)


def mutate_payload(rng: Any, parts: Parts) -> None:
    """Mutate one segment, before compression (decode, edit, re-encode) or as a compressed frame."""
    cands = [(i, j, k) for i, b in enumerate(parts.segments) for j, c in enumerate(b) for k in range(len(c))]
    if not cands:
        return
    i, j, k = rng.choice(cands)
    seg = parts.segments[i][j][k]
    is_frame = seg[:4] == ZSTD_MAGIC
    r = rng.randrange(4)
    if is_frame and r < 2:
        try:
            decoded = zstandard.ZstdDecompressor().decompress(seg, max_output_size=1 << 20)
        except (zstandard.ZstdError, MemoryError):
            decoded = seg
        buf = bytearray(decoded)
        if r == 0 or rng.random() < 0.5:
            _mutate_buf(rng, buf) if rng.random() < 0.8 else buf.extend(b"\x02")
        new = _zstd_frame(rng, bytes(buf)) if rng.random() < 0.7 else bytes(buf)
    elif is_frame and r == 2:  # edit the compressed frame itself (header or body)
        buf = bytearray(seg)
        pos = rng.choice((4, 5, rng.randrange(4, max(5, len(buf))), len(buf) - 1))
        if pos < len(buf):
            buf[pos] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.getrandbits(8) | 1
        if rng.random() < 0.2:
            buf += rand_bytes(rng, 4)
        new = bytes(buf)
    else:  # raw segment: edit its bytes, or replace it by a frame of the same/other bytes
        buf = bytearray(seg)
        _mutate_buf(rng, buf) if rng.random() < 0.7 else None
        if rng.random() < 0.3:
            new = _zstd_frame(rng, bytes(buf))
        elif rng.random() < 0.1:  # a skippable frame or a frame with a huge window
            new = rng.choice(
                (b"\x50\x2a\x4d\x18" + struct.pack("<I", 4) + b"abcd", b"\x28\xb5\x2f\xfd\x00\xf8" + bytes(8))
            )
        else:
            new = bytes(buf)
    parts.segments[i][j][k] = new


# -- layer 4: chunk tables ------------------------------------------------------------------------------
def mutate_chunks(rng: Any, parts: Parts) -> bool:
    """Edit the chunk tables; returns whether `assemble` should re-derive segment lengths (fix_offsets)."""
    blobs = parts.wire.get("blobs") or []
    if not blobs:
        return True
    bi = rng.randrange(len(blobs))
    b = blobs[bi]
    chunks = b["chunks"]
    r = rng.randrange(8)
    if r == 0 and chunks:  # move bytes between segments: segment lengths lie, total stays equal
        c = rng.choice(chunks)
        if len(c["segments"]) > 1:
            d = rng.choice((1, -1, 3, c["segments"][0]))
            c["segments"][0] -= d
            c["segments"][-1] += d
        else:
            c["segments"] = [c["segments"][0] - 1, 1] if rng.random() < 0.5 else []
        return False
    if r == 1 and chunks:  # digest length
        c = rng.choice(chunks)
        c["digest"] = rng.choice((b"", c["digest"][:4], c["digest"] + b"\0", bytes(32), "str", None))
        return False
    if r == 2:  # drop / duplicate a chunk (and its stored segments)
        j = rng.randrange(len(chunks))
        if rng.random() < 0.5:
            del chunks[j]
            del parts.segments[bi][j]
        else:
            chunks.insert(j, copy.deepcopy(chunks[j]))
            parts.segments[bi].insert(j, list(parts.segments[bi][j]))
        return True
    if r == 3:  # swap two chunks' stored bytes
        if len(chunks) > 1:
            a, c = rng.sample(range(len(chunks)), 2)
            s = parts.segments[bi]
            s[a], s[c] = s[c], s[a]
        return True
    if r == 4:  # chunk_size vs chunk count
        b["chunk_size"] = rng.choice(
            (1, b["chunk_size"] // 2 or 1, b["chunk_size"] * 2, b["nbytes"], 2**28, 2**28 + 64)
        )
        return True
    if r == 5 and chunks:  # segment list shapes
        c = rng.choice(chunks)
        c["segments"] = rng.choice(([], [0], [-1], [2**63 - 1], [1.0], c["segments"] * 2, [None], "x"))
        return False
    if r == 6:  # huge chunk count / many empty chunks
        b["chunks"] = chunks + [
            {"digest": chunks[0]["digest"] if chunks else b"", "segments": [1]}
        ] * rng.choice((1, 100, 5000))
        return False
    # split one chunk into two or merge two adjacent chunks (stored bytes kept)
    if len(chunks) > 1 and len(parts.segments[bi][0]) == 1:
        s = parts.segments[bi]
        s[0] = [s[0][0] + s[1][0]]
        del s[1]
        del chunks[1]
    return True


# -- layer 1: container ---------------------------------------------------------------------------------
def mutate_container(rng: Any, parts: Parts) -> bytes:
    region, wire = layout(parts)
    manifest = encode(wire)
    header = bytearray(parts.header)
    kw: dict[str, Any] = {}
    r = rng.randrange(8)
    if r == 0:
        struct.pack_into("<I", header, 8, rng.choice((0, 2, 2**32 - 1, 1)))
    elif r == 1:
        struct.pack_into("<I", header, 12, rng.choice((1, 2**31, 2**32 - 1)))
    elif r == 2:
        header[rng.randrange(16, 64)] = rng.randrange(1, 256)
    elif r == 3:
        base = HEADER_SIZE + len(region)
        kw["offset"] = rng.choice((0, 63, base - 64, base + 64, base + 1, 2**63, 2**64 - 1, base - 1))
        if rng.random() < 0.5:
            kw["length"] = len(manifest) + (base - kw["offset"]) % 2**64
    elif r == 4:
        kw["length"] = rng.choice((0, len(manifest) - 1, len(manifest) + 1, 2**28 + 1, 2**63, 2**64 - 1))
    elif r == 5:
        kw["algo_id"] = rng.choice((0, 3, 2**16 - 1, 1, 2))
    elif r == 6:
        kw["reserved"] = bytes([rng.randrange(1, 256)]) + bytes(5) if rng.random() < 0.5 else bytes(6)
        kw["pad"] = rand_bytes(rng, 32) if rng.random() < 0.5 else None
    else:  # region shifted: extra aligned bytes before the manifest, or the manifest at a lying offset
        extra = rng.choice((64, 128, 1))
        region = region + bytes(extra) if rng.random() < 0.5 else region[: max(0, len(region) - 64)]
    digest_name = parts.digest_name if rng.random() < 0.8 else rng.choice(("xxh3-64", "sha256"))
    return sign(bytes(header), region, manifest, digest_name, **kw)


# -- layer 5: raw bytes ---------------------------------------------------------------------------------
def mutate_bitflip(rng: Any, data: bytes) -> bytes:
    buf = bytearray(data)
    r = rng.randrange(5)
    if r < 3:
        for _ in range(rng.choice((1, 1, 2, 8))):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif r == 3:
        i = rng.randrange(len(buf))
        buf[i : i + rng.randrange(1, 16)] = rand_bytes(rng, rng.randrange(0, 16))
    else:
        buf = buf[: rng.randrange(len(buf))] + buf[-TRAILER_SIZE:] if rng.random() < 0.5 else buf + bytes(64)
    return bytes(buf)


# -- driver ---------------------------------------------------------------------------------------------
def mutate(rng: Any, seed: bytes, layer: str) -> bytes:
    """One mutated file from a valid seed file, mutated at `layer`."""
    if layer == "bitflip":
        return mutate_bitflip(rng, seed)
    parts = split(seed)
    if layer == "container":
        return mutate_container(rng, parts)
    if layer == "manifest":
        region, _ = layout(parts)
        mutate_manifest(rng, parts)
        return sign(parts.header, region, encode(parts.wire), parts.digest_name)
    if layer == "payload":
        for _ in range(1 + (rng.random() < 0.2)):
            mutate_payload(rng, parts)
        return assemble(parts, fix_digests=rng.random() < 0.95)
    if layer == "chunks":
        fix = mutate_chunks(rng, parts)
        return assemble(parts, fix_offsets=fix)
    raise ValueError(layer)


def seed_files(directory: Path) -> dict[str, bytes]:
    """A few valid files written with tmodel.save: state dict, nested checkpoint, every codec, a module,
    sha256, a bool tensor, an empty tensor, shared storage and small chunks (so there are many chunks)."""
    import torch

    import tmodel

    g = torch.Generator().manual_seed(0)
    w = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    checkpoint = {
        "model": {"w": w, "w_t": w.t(), "b": torch.zeros(3, dtype=torch.float16)},
        "opt": [{"step": 3, "lr": 1e-3}, (None, True, b"\x00")],
        "mask": torch.arange(20) % 3 == 0,
        "noise": torch.randint(0, 256, (80,), dtype=torch.uint8, generator=g),
        "empty": torch.zeros(0, 4),
        "c": torch.ones(3, dtype=torch.complex64),
        "dtype": torch.bfloat16,
        7: "seven",
    }
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.BatchNorm1d(2))
    state = {"a": torch.arange(40, dtype=torch.int64), "b": torch.randn(5, 3, generator=g)}
    specs: dict[str, tuple[Any, dict[str, Any]]] = {
        "state_auto": (state, {"chunk_size": 64}),
        "nested_auto": (checkpoint, {"chunk_size": 32, "metadata": {"epoch": 1, "tags": ["a"]}}),
        "raw": (state, {"codec": "raw", "chunk_size": 48}),
        "zstd": (checkpoint, {"codec": "zstd", "chunk_size": 64}),
        "bytegroup": (state, {"codec": "bytegroup-zstd", "chunk_size": 128}),
        "module": (module, {"chunk_size": 16}),
        "sha256": (checkpoint, {"checksum": "sha256", "chunk_size": 64}),
    }
    out = {}
    directory.mkdir(parents=True, exist_ok=True)
    for name, (obj, kw) in specs.items():
        path = directory / f"{name}.tmodel"
        tmodel.save(obj, path, **kw)
        out[name] = path.read_bytes()
    return out


# -- invariant checker ----------------------------------------------------------------------------------
class Hang(BaseException):
    """Raised by the SIGALRM guard when one call runs far too long."""


def _alarm(_signum: int, _frame: Any) -> None:
    raise Hang("input still running after the hang guard")


def install_hang_guard() -> None:
    signal.signal(signal.SIGALRM, _alarm)


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


@dataclass
class Result:
    ok: bool
    outcome: str  # "OK", an error code, or "!Type: message" for a finding
    seconds: float  # the slower of the two calls


def _run(fn: Callable[[], Any], guard_s: float) -> tuple[str, float]:
    t0 = time.perf_counter()
    if guard_s:
        signal.setitimer(signal.ITIMER_REAL, guard_s)
    try:
        fn()
        out = "OK"
    except TModelError as exc:
        out = exc.code
    except Hang:
        out = f"!Hang: more than {guard_s} s"
    except Exception as exc:
        out = f"!{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        if guard_s:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return out, time.perf_counter() - t0


def check_file(path: str | os.PathLike[str], *, time_limit: float = 1.0, guard_s: float = 10.0) -> Result:
    """Run tmodel.load and Reader.verify on `path`; ok when both raise nothing but TModelError in time."""
    import tmodel
    from tmodel.archive.reader import Reader

    def verify() -> None:
        with Reader(path) as r:
            r.verify()

    load_out, t1 = _run(lambda: tmodel.load(path), guard_s)
    verify_out, t2 = _run(verify, guard_s)
    seconds = max(t1, t2)
    bad = [o for o in (load_out, verify_out) if o.startswith("!")]
    if seconds > time_limit:
        bad.append(f"!Slow: {seconds:.3f} s (load {t1:.3f} s, verify {t2:.3f} s)")
    if bad:
        return Result(
            False,
            f"load={load_out} verify={verify_out} " + " ".join(b for b in bad if b.startswith("!Slow")),
            seconds,
        )
    return Result(True, f"{load_out}/{verify_out}", seconds)
