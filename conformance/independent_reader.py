"""An independent reader of .tmodel files, written from SPEC.md alone.

It does not import the `tmodel` package, torch or pydantic: only the standard library, numpy, zstandard and
xxhash. `read_description(path)` validates a file as SPEC.md §9 requires and returns its canonical
description (conformance/describe.py's format); failures raise `ReaderError` with a SPEC.md §10 code.
Run as a script, it speaks the conformance protocol (conformance/PROTOCOL.md) on stdin/stdout.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import struct
import sys
import traceback
from collections.abc import Callable
from typing import Any, cast

import blake3
import numpy as np
import xxhash
import zstandard

MAGIC = b"\x89TMODEL\n"
END_MAGIC = b"TMODEND\n"
CONTAINER_VERSION = 1
SCHEMA_VERSIONS = (1, 2, 3, 4, 5, 6, 7)
MIB = 1 << 20
INT63 = (1 << 63) - 1

MAX_MANIFEST_BYTES = 256 * MIB
MAX_TENSORS = 1_000_000
MAX_BLOBS = 1_000_000
MAX_MODULES = 1_000_000
MAX_SHARDS = 100_000  # §8
MAX_MODULE_PATHS = 1_000_000
MAX_CHUNKS = 10_000_000
MAX_RANK = 64
MAX_DEPTH = 128
MAX_NAME_BYTES = 1024
MAX_CHUNK_SIZE = 256 * MIB
MAX_WINDOW_SIZE = 256 * MIB

# name -> (itemsize, width)
DTYPES: dict[str, tuple[int, int]] = {
    "float64": (8, 8),
    "float32": (4, 4),
    "float16": (2, 2),
    "bfloat16": (2, 2),
    "float8_e4m3fn": (1, 1),
    "float8_e4m3fnuz": (1, 1),
    "float8_e5m2": (1, 1),
    "float8_e5m2fnuz": (1, 1),
    "complex64": (8, 4),
    "complex128": (16, 8),
    "bool": (1, 1),
    "int8": (1, 1),
    "int16": (2, 2),
    "int32": (4, 4),
    "int64": (8, 8),
    "uint8": (1, 1),
    "uint16": (2, 2),
    "uint32": (4, 4),
    "uint64": (8, 8),
    # §5.3, from version 3
    "float8_e8m0fnu": (1, 1),
    "float4_e2m1fn_x2": (1, 1),
    "complex32": (4, 2),
    "bits8": (1, 1),
    "bits16": (2, 2),
    "bits1x8": (1, 1),
    "bits2x4": (1, 1),
    "bits4x2": (1, 1),
}
V2_DTYPES = frozenset(list(DTYPES)[:19])  # §12: the dtypes of versions 1 and 2
# §5.3: names only a dtype node may use (from version 3), and the dtypes of numpy values
VALUE_ONLY_DTYPES = frozenset(
    {f"uint{n}" for n in range(1, 8)}
    | {f"int{n}" for n in range(1, 8)}
    | {"qint8", "quint8", "qint32", "quint4x2", "quint2x4"}
)
NUMPY_DTYPES = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
    | {"float16", "float32", "float64", "complex64", "complex128"}
)
CODECS = ("raw", "zstd", "bytegroup-zstd")
# checksum name -> (trailer digest_id, digest length)
CHECKSUMS = {"xxh3-64": (1, 8), "sha256": (2, 32), "blake3": (3, 32)}
DIGEST_IDS = {1: "xxh3-64", 2: "sha256", 3: "blake3"}

MANIFEST_KEYS_V2 = (
    "schema_version",
    "required_features",
    "checksum",
    "blobs",
    "tensors",
    "root",
    "metadata",
    "extensions",
    "modules",
)
MANIFEST_KEYS_V1 = MANIFEST_KEYS_V2[:-1]
#: §5 (version 6): the manifest gains `checkpoint`, nil or {"type": registered name, "version": int >= 1}
MANIFEST_KEYS_V6 = (*MANIFEST_KEYS_V2, "checkpoint")
#: §5 (version 7): the manifest gains `shards`, the files of a sharded set (§5.10)
MANIFEST_KEYS_V7 = (*MANIFEST_KEYS_V6, "shards")
SHARD_KEYS = ("file", "size", "digest", "blobs")
SHARD_FILE_RE = re.compile(r"[^\x00-\x1f\x7f/\\:.\-][^\x00-\x1f\x7f/\\:]*\Z")
CHECKPOINT_KEYS = ("type", "version")
BLOB_KEYS = ("offset", "length", "nbytes", "codec", "width", "chunk_size", "chunks")
CHUNK_KEYS = ("digest", "segments")
TENSOR_KEYS = ("name", "dtype", "shape", "strides", "blob", "offset")
MODULE_KEYS = ("type", "version", "config", "parameters", "buffers", "children", "training")
PARAM_KEYS = ("tensor", "requires_grad")
V2_NODE_TAGS = ("list", "tuple", "dict", "tensor", "module", "dtype")
V3_NODE_TAGS = (
    "ordered_dict",
    "counter",
    "set",
    "bytearray",
    "complex",
    "size",
    "device",
    "parameter",
    "requires_grad",
    "ndarray",
    "numpy_scalar",
)
V4_NODE_TAGS = ("layout", "qscheme", "meta_tensor", "tensor_attrs")
#: §5.4 (version 5): the kinds only layer configs hold
V5_NODE_TAGS = ("ref", "partial", "object")
#: §5.4 (version 6): the training-state kinds only the object tree holds, never inside one another
V6_NODE_TAGS = ("optimizer", "stateful")
NODE_TAGS = V2_NODE_TAGS + V3_NODE_TAGS + V4_NODE_TAGS + V5_NODE_TAGS + V6_NODE_TAGS
OPTIMIZER_KEYS = ("class", "groups", "params")
OPTIMIZER_PARAM_KEYS = ("group", "module", "name", "state")
STATEFUL_KEYS = ("kind", "class", "state")
STATEFUL_KINDS = ("lr_scheduler", "grad_scaler", "rng")
#: §5.4 (version 4): the value nodes that may be keys and set elements, besides scalars and tuples of keys
KEY_TAGS = ("dtype", "device", "complex", "size", "numpy_scalar", "layout", "qscheme")
TENSOR_TAGS = ("tensor", "parameter", "requires_grad", "meta_tensor")
META_KEYS = ("dtype", "shape", "strides", "offset", "parameter", "requires_grad")
NAME_RE = re.compile(r"_?[a-z][a-z0-9_]*")
DEVICE_RE = re.compile(r"[a-z][a-z0-9_]*(:(0|[1-9][0-9]*))?")
INT64_MIN = -(1 << 63)
TYPE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
#: §5.7 (version 5): the class name of a record built by its parent
CLASS_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|<locals>)(\.([A-Za-z_][A-Za-z0-9_]*|<locals>))*\Z")
HASH_PIECE = 16 * MIB


class ReaderError(Exception):
    """A rejected file: `code` is a SPEC.md §10 error code."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


def _fail(code: str, message: str = "") -> None:
    raise ReaderError(code, message)


def align(x: int) -> int:
    return (x + 63) // 64 * 64


# ---------------------------------------------------------------------------------------------------------
# strict msgpack (§4)


class _Decoder:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            _fail("MANIFEST_DECODE", "incomplete object")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def count(self, n: int, per_item: int) -> int:
        if n * per_item > len(self.data) - self.pos:
            _fail("MANIFEST_DECODE", "element count exceeds the remaining bytes")
        return n

    def obj(self, depth: int) -> Any:
        # `depth` counts every value, scalars included, the top-level object at 1 (as SPEC.md §4 states and
        # the reference does).
        if depth > MAX_DEPTH:
            _fail("LIMIT_EXCEEDED", "manifest nesting deeper than max_depth")
        t = self.take(1)[0]
        if t <= 0x7F:
            return t
        if t >= 0xE0:
            return t - 0x100
        if 0x80 <= t <= 0x8F:
            return self.map(t & 0x0F, depth)
        if 0x90 <= t <= 0x9F:
            return self.array(t & 0x0F, depth)
        if 0xA0 <= t <= 0xBF:
            return self.text(t & 0x1F)
        if t == 0xC0:
            return None
        if t == 0xC2:
            return False
        if t == 0xC3:
            return True
        if t in (0xC4, 0xC5, 0xC6):
            return bytes(self.take(self.uint(1 << (t - 0xC4))))
        if t == 0xCA:
            return struct.unpack(">f", self.take(4))[0]
        if t == 0xCB:
            return struct.unpack(">d", self.take(8))[0]
        if 0xCC <= t <= 0xCF:
            return self.uint(1 << (t - 0xCC))
        if 0xD0 <= t <= 0xD3:
            n = 1 << (t - 0xD0)
            return int.from_bytes(self.take(n), "big", signed=True)
        if t in (0xD9, 0xDA, 0xDB):
            return self.text(self.uint(1 << (t - 0xD9)))
        if t in (0xDC, 0xDD):
            return self.array(self.uint(2 if t == 0xDC else 4), depth)
        if t in (0xDE, 0xDF):
            return self.map(self.uint(2 if t == 0xDE else 4), depth)
        if t in (0xC7, 0xC8, 0xC9) or 0xD4 <= t <= 0xD8:
            _fail("MANIFEST_DECODE", "extension type")
        _fail("MANIFEST_DECODE", f"invalid type byte 0x{t:02x}")

    def text(self, n: int) -> str:
        raw = self.take(n)
        try:
            return raw.decode("utf-8", "strict")
        except UnicodeDecodeError:
            _fail("MANIFEST_DECODE", "str is not valid UTF-8")
        raise AssertionError

    def array(self, n: int, depth: int) -> list[Any]:
        self.count(n, 1)
        return [self.obj(depth + 1) for _ in range(n)]

    def map(self, n: int, depth: int) -> dict[str, Any]:
        self.count(n, 2)
        out: dict[str, Any] = {}
        for _ in range(n):
            k = self.obj(depth + 1)
            if type(k) is not str:
                _fail("MANIFEST_DECODE", "map key is not a str")
            if k in out:
                _fail("MANIFEST_DECODE", f"duplicate map key {k!r}")
            out[k] = self.obj(depth + 1)
        return out


def decode_msgpack(data: bytes) -> Any:
    d = _Decoder(data)
    obj = d.obj(1)
    if d.pos != len(data):
        _fail("MANIFEST_DECODE", "bytes left after the manifest object")
    return obj


# ---------------------------------------------------------------------------------------------------------
# schema helpers


def _is_int(x: Any) -> bool:
    return type(x) is int


def _is_nonneg(x: Any) -> bool:
    """§4: every size, offset, length, count, index, shape and stride lies in 0 … 2^63 − 1."""
    return type(x) is int and 0 <= x <= INT63


def _nonneg_list(x: Any, what: str) -> list[int]:
    _schema(type(x) is list and all(_is_nonneg(v) for v in x), f"{what} is not an array of int >= 0")
    return cast(list[int], x)


def _schema(ok: bool, what: str) -> None:
    if not ok:
        _fail("MANIFEST_SCHEMA", what)


def _record(x: Any, keys: tuple[str, ...], what: str) -> dict[str, Any]:
    _schema(type(x) is dict, f"{what} is not a map")
    if set(x) != set(keys):
        _fail("MANIFEST_SCHEMA", f"{what} keys {sorted(x)} != {sorted(keys)}")
    return cast(dict[str, Any], x)


def check_name(name: str, what: str = "tensor name") -> None:
    b = name.encode("utf-8")
    if not name or len(b) > MAX_NAME_BYTES:
        _fail("BAD_NAME", f"{what} {name!r}: empty or too long")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name) or "/" in name or "\\" in name or ".." in name:
        _fail("BAD_NAME", f"{what} {name!r}: forbidden character or '..'")


# ---------------------------------------------------------------------------------------------------------
# zstd (§6.4)


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BLOCK_MAXIMUM = 128 * 1024  # RFC 8878 section 3.1.1.2.4
CHECKSUM_FROM_SCHEMA = 6  # §6.4 rule 6


def _zbad(rule: int, what: str) -> None:
    _fail("BAD_COMPRESSED_DATA", f"§6.4 rule {rule}: {what}")


class _Frame:
    """A cursor over one frame's bytes; reading past the end is a truncated frame."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int, rule: int = 1) -> bytes:
        if self.at + n > len(self.data):
            _zbad(rule, "the frame ends early")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def num(self, n: int, rule: int = 1) -> int:
        return int.from_bytes(self.take(n, rule), "little")


def _literals(block: bytes, state: dict[str, bool], block_max: int) -> tuple[int, int]:
    """Literals section (RFC 8878 section 3.1.1.3.1): returns (its length, Regenerated_Size)."""
    ltype, sf = block[0] & 3, (block[0] >> 2) & 3
    if ltype in (0, 1):
        hlen = {0: 1, 2: 1, 1: 2, 3: 3}[sf]
        if len(block) < hlen:
            _zbad(11, "literals header cut")
        v = int.from_bytes(block[:hlen], "little")
        size = v >> 3 if hlen == 1 else v >> 4
        length = hlen + (size if ltype == 0 else 1)
    else:
        hlen, width = {0: (3, 10), 1: (3, 10), 2: (4, 14), 3: (5, 18)}[sf]
        if len(block) < hlen:
            _zbad(11, "literals header cut")
        v = int.from_bytes(block[:hlen], "little") >> 4
        size, comp = v & ((1 << width) - 1), v >> width
        length = hlen + comp
        if length > len(block):
            _zbad(11, "literals section past its block")
        body = block[hlen:length]
        if ltype == 3:
            if not state["huffman"]:
                _zbad(11, "Treeless_Literals_Block with no earlier Huffman tree in the frame")
        else:
            if not body:
                _zbad(11, "no Huffman tree description")
            tree = 1 + (body[0] if body[0] < 128 else (body[0] - 127 + 1) // 2)
            body = body[tree:]
            state["huffman"] = True
        if sf == 0:
            streams = [body]
        else:
            if len(body) < 6 or 3 * ((size + 3) // 4) > size:
                _zbad(11, "jump table or four-stream sizes invalid")
            a, b, c = struct.unpack_from("<HHH", body)
            rest = body[6:]
            streams = [rest[:a], rest[a : a + b], rest[a + b : a + b + c], rest[a + b + c :]]
            if a + b + c > len(rest):
                _zbad(11, "jump table past the literals section")
        for st in streams:
            if not st or st[-1] == 0:
                _zbad(13, "Huffman stream without its final padding bit")
    if size > block_max:
        _zbad(11, "Regenerated_Size above Block_Maximum_Size")
    return length, size


def _compressed_block(block: bytes, state: dict[str, bool], block_max: int) -> tuple[int, int]:
    """Bounds (least, most) of what a compressed block decodes to, after its section headers' rules."""
    if len(block) < 2:
        _zbad(11, "compressed block without room for its sections")
    lit_len, lit_size = _literals(block, state, block_max)
    seq = block[lit_len:]
    if not seq:
        _zbad(11, "no sequences section")
    if seq[0] == 0:
        if len(seq) != 1:
            _zbad(12, "bytes after Number_of_Sequences 0")
        return lit_size, lit_size
    if seq[0] < 128:
        nseq, hl = seq[0], 1
    elif seq[0] < 255:
        nseq, hl = ((seq[0] - 128) << 8) + (seq[1] if len(seq) > 1 else 0), 2
    else:
        nseq, hl = (seq[1] + (seq[2] << 8) + 0x7F00) if len(seq) > 2 else 0, 3
    if len(seq) <= hl + 1:
        _zbad(12, "sequences section header cut")
    modes = seq[hl]
    if modes & 3:
        _zbad(12, "Symbol_Compression_Modes reserved bits set")
    if any((modes >> sh) & 3 == 3 for sh in (6, 4, 2)) and not state["tables"]:
        _zbad(11, "Repeat_Mode with no earlier sequence tables in the frame")
    state["tables"] = True
    if seq[-1] == 0:
        _zbad(13, "sequences bitstream without its final padding bit")
    if lit_size + 3 * nseq > block_max:
        _zbad(7, "block decodes to more than Block_Maximum_Size")
    return lit_size + 3 * nseq, block_max


def zstd_frame(seg: bytes, expected: int, checksum_required: bool) -> bool:
    """§6.4 rules 1-13 short of decoding; returns whether the frame carries a content checksum."""
    f = _Frame(seg)
    if f.take(4) != ZSTD_MAGIC:
        _zbad(1, "not a Zstandard frame")
    fhd = f.num(1)
    single, has_checksum, did_flag, fcs_flag = (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3, fhd >> 6
    if (fhd >> 3) & 1 or (fhd >> 4) & 1:
        _zbad(2, "reserved or unused header bit set")
    window = None
    if not single:
        wd = f.num(1)
        base = 1 << (10 + (wd >> 3))
        window = base + (base // 8) * (wd & 7)
    if f.num((0, 1, 2, 4)[did_flag]) != 0:
        _zbad(5, "dictionary id other than 0")
    fcs_size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if fcs_size == 0:
        _zbad(3, "frame content size missing")
    fcs = f.num(fcs_size) + (256 if fcs_size == 2 else 0)
    if fcs != expected:
        _zbad(3, f"content size {fcs} != {expected}")
    if window is None:
        window = fcs
    if window > MAX_WINDOW_SIZE:
        _zbad(4, "window size above max_window_size")
    if checksum_required and not has_checksum:
        _zbad(6, "no content checksum in a schema version 6 file")
    block_max = min(window, BLOCK_MAXIMUM)
    state = {"huffman": False, "tables": False}
    least = most = 0
    last = False
    while not last:
        bh = f.num(3, 9)
        last, btype, bsize = bool(bh & 1), (bh >> 1) & 3, bh >> 3
        if btype == 3:
            _zbad(8, "reserved block type")
        if bsize > block_max:
            _zbad(7, "Block_Size above Block_Maximum_Size")
        if btype == 1:
            f.take(1, 9)
            least, most = least + bsize, most + bsize
        elif btype == 0:
            f.take(bsize, 9)
            least, most = least + bsize, most + bsize
        else:
            lo, hi = _compressed_block(f.take(bsize, 9), state, block_max)
            least, most = least + lo, most + hi
    if not least <= fcs <= most:
        _zbad(9, "the blocks cannot decode to the content size")
    if len(seg) - f.at != (4 if has_checksum else 0):
        _zbad(10, "bytes after the frame, or a cut checksum")
    return bool(has_checksum)


def zstd_segment(seg: bytes, expected: int, checksum_required: bool) -> bytes:
    """Decode one zstd segment whose decoded length is `expected` (stored raw when len == expected)."""
    n = len(seg)
    if n < 1 or n > expected:
        _fail("BAD_TENSOR", f"segment length {n} not in 1..{expected}")
    if n == expected:
        return seg
    has_checksum = zstd_frame(seg, expected, checksum_required)
    try:
        dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_SIZE)
        dobj = dctx.decompressobj()
        out = dobj.decompress(seg)
        complete = dobj.eof
        left = dobj.unused_data
    except zstandard.ZstdError as e:
        raise ReaderError("BAD_COMPRESSED_DATA", str(e)) from None
    if not complete:
        _fail("BAD_COMPRESSED_DATA", "incomplete frame")
    if left:
        _fail("BAD_COMPRESSED_DATA", "data after the frame")
    if len(out) != expected:
        _fail("BAD_COMPRESSED_DATA", "decoded length differs from the content size")
    if has_checksum and (xxhash.xxh64_intdigest(out) & 0xFFFFFFFF) != int.from_bytes(seg[-4:], "little"):
        _zbad(6, "content checksum does not match")
    return out


SIGNED_FLAG = 1  # §3.1: the file holds a signature block (§3.4)
MAX_SIGNATURE_BLOCK = 1 << 16
SIGNATURE_KEYS = ("algorithm", "key_id", "public_key", "signature")


def _signature_block(block: bytes, checksum: str) -> None:
    """§3.4: the block's structure (this reader has no cryptography, so it verifies no signature and
    reports none as valid)."""
    try:
        entries = decode_msgpack(block)
    except ReaderError:
        _fail("BAD_SIGNATURE", "the signature block is not valid msgpack")
    if type(entries) is not list or not 1 <= len(entries) <= 64:
        _fail("BAD_SIGNATURE", "the signature block is not an array of 1..64 signatures")
    seen: set[bytes] = set()
    for e in entries:
        if type(e) is not dict or sorted(e) != sorted(SIGNATURE_KEYS):
            _fail("BAD_SIGNATURE", "a signature is not a map of exactly its four keys")
        if e["algorithm"] not in ("ed25519", "ecdsa-p256"):
            _fail("BAD_SIGNATURE", "unknown signature algorithm")
        if not all(type(e[k]) is bytes for k in SIGNATURE_KEYS[1:]):
            _fail("BAD_SIGNATURE", "a signature's key_id, public_key or signature is not bin")
        if hashlib.sha256(e["public_key"]).digest() != e["key_id"] or e["key_id"] in seen:
            _fail("BAD_SIGNATURE", "a key_id that is not its key's SHA-256, or one key twice")
        seen.add(e["key_id"])
    if checksum not in ("sha256", "blake3"):
        _fail("BAD_SIGNATURE", "a signed file's digests are not cryptographic")


def chunk_digest(algo: str, data: bytes) -> bytes:
    if algo == "xxh3-64":
        return xxhash.xxh3_64_digest(data)  # canonical (big-endian) form
    if algo == "blake3":
        return blake3.blake3(data).digest()  # 32 bytes, the default output length
    return hashlib.sha256(data).digest()


# ---------------------------------------------------------------------------------------------------------
# the reader


class Reader:
    def __init__(self, path: str, against_index: Callable[[Reader], None] | None = None) -> None:
        self.path = path
        self.phase = "container"
        #: for a shard: its checks against the index, run between §9 step 9 and its data (step 12)
        self.against_index = against_index

    # -- I/O ----------------------------------------------------------------------------------------------
    def _pread(self, offset: int, n: int) -> bytes:
        try:
            b = os.pread(self.fd, n, offset)
        except OSError as e:
            raise ReaderError("IO_ERROR", str(e)) from None
        if len(b) != n:
            _fail("TRUNCATED", "short read")
        return b

    def read(self) -> dict[str, Any]:
        try:
            self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError as e:
            raise ReaderError("IO_ERROR", str(e)) from None
        try:
            st = os.fstat(self.fd)
            if not stat.S_ISREG(st.st_mode):
                _fail("NOT_REGULAR_FILE", self.path)
            self.size = st.st_size
            return self._read()
        finally:
            os.close(self.fd)

    def _read(self) -> dict[str, Any]:
        size = self.size
        # §3.1 header
        head = self._pread(0, min(size, 64))
        if len(head) < 64 and MAGIC.startswith(head[:8]):
            _fail("TRUNCATED", "file shorter than the header")
        if head[:8] != MAGIC:
            _fail("BAD_MAGIC")
        cv, flags = struct.unpack_from("<II", head, 8)
        if cv == 0 or cv > CONTAINER_VERSION:
            _fail("UNSUPPORTED_VERSION", f"container version {cv}")
        if flags & ~SIGNED_FLAG:
            _fail("UNKNOWN_FEATURE", f"required flags {flags:#x}")
        if any(head[16:64]):
            _fail("BAD_LAYOUT", "non-zero reserved header bytes")
        # §3.2 trailer
        if size < 128:
            _fail("TRUNCATED", "file shorter than 128 bytes")
        trailer = self._pread(size - 64, 64)
        if trailer[56:64] != END_MAGIC:
            _fail("TRUNCATED", "no trailer")
        m_off, m_len, digest_id, s_len = struct.unpack_from("<QQHI", trailer, 0)
        if any(trailer[22:24]):
            _fail("BAD_LAYOUT", "non-zero reserved trailer bytes")
        if bool(flags & SIGNED_FLAG) != (s_len > 0):  # §3.4: a signature block exactly when flagged
            _fail("BAD_LAYOUT", "signature block length and the SIGNED flag disagree")
        if s_len > MAX_SIGNATURE_BLOCK:
            _fail("LIMIT_EXCEEDED", "signature block above 64 KiB")
        if digest_id not in DIGEST_IDS:
            _fail("UNKNOWN_CHECKSUM", f"digest id {digest_id}")
        algo = DIGEST_IDS[digest_id]
        dlen = CHECKSUMS[algo][1]
        if any(trailer[24 + dlen : 56]):
            _fail("BAD_LAYOUT", "non-zero bytes after the manifest digest")
        if m_len > MAX_MANIFEST_BYTES:
            _fail("LIMIT_EXCEEDED", "manifest_length above max_manifest_bytes")
        if m_off < 64 or m_off % 64 or m_off + m_len + s_len != size - 64:
            _fail("BAD_LAYOUT", "manifest offset/length do not fit the file")
        mbytes = self._pread(m_off, m_len)
        block = self._pread(m_off + m_len, s_len) if s_len else b""
        if chunk_digest(algo, head + mbytes + block + trailer[:24]) != trailer[24 : 24 + dlen]:
            _fail("CHECKSUM_MISMATCH", "manifest digest")
        self.trailer_algo, self.digest = algo, trailer[24 : 24 + dlen]  # a shard's, checked by its index
        self.manifest_offset = m_off
        # §4 msgpack
        self.phase = "manifest"
        m = decode_msgpack(mbytes)
        out = self._manifest(m)
        if block:
            self.phase = "data"
            _signature_block(block, m["checksum"])
        return out

    # -- manifest -----------------------------------------------------------------------------------------
    def _manifest(self, m: Any) -> dict[str, Any]:
        _schema(type(m) is dict, "manifest is not a map")
        if "schema_version" not in m:
            _fail("MANIFEST_SCHEMA", "schema_version missing")
        sv = m["schema_version"]
        _schema(_is_int(sv), "schema_version is not an int")
        if sv not in SCHEMA_VERSIONS:
            _fail("UNSUPPORTED_VERSION", f"schema version {sv}")
        if "required_features" in m:
            rf = m["required_features"]
            _schema(type(rf) is list and all(type(x) is str for x in rf), "required_features")
            if rf:
                _fail("UNKNOWN_FEATURE", f"required features {rf}")
        keys = (
            MANIFEST_KEYS_V1
            if sv == 1
            else MANIFEST_KEYS_V2
            if sv < 6
            else MANIFEST_KEYS_V6
            if sv == 6
            else MANIFEST_KEYS_V7
        )
        _record(m, keys, "manifest")  # versions 3 to 5 keep version 2's keys (§5.9)
        if sv == 1:  # §12 v1_to_v2
            m = dict(m, modules=[])
        if sv < 6:  # §5.9, §12 v5_to_v6: read as version 6, with no checkpoint version
            m = dict(m, checkpoint=None)
        if sv < 7:  # §12 v6_to_v7: read as version 7, not an index
            m = dict(m, shards=[])
        self.sv = sv
        self.m = m
        self._schema_top()
        self._blobs()
        sizes = self._shards()
        self._tensors(sizes)
        self._tree()
        self._modules()
        self._checkpoint()
        if self.against_index is not None:
            self.against_index(self)
        self.phase = "data"
        self.data = self._shard_data() if m["shards"] else self._data()
        return self._describe(self.data)

    def _schema_top(self) -> None:
        m = self.m
        _schema(type(m["checksum"]) is str, "checksum is not a string")
        for key, limit in (
            ("blobs", MAX_BLOBS),
            ("tensors", MAX_TENSORS),
            ("modules", MAX_MODULES),
            ("shards", MAX_SHARDS),
        ):
            _schema(type(m[key]) is list, f"{key} is not an array")
            if len(m[key]) > limit:
                _fail("LIMIT_EXCEEDED", f"too many {key}")
        _schema(type(m["metadata"]) is dict, "metadata is not a map")
        _schema(type(m["extensions"]) is dict, "extensions is not a map")
        # metadata / extension values: any strictly decoded msgpack object with str keys is a Value.
        nchunks = 0
        for i, b in enumerate(m["blobs"]):
            _record(b, BLOB_KEYS, f"blob {i}")
            for k in ("offset", "length", "nbytes", "width", "chunk_size"):
                _schema(_is_nonneg(b[k]), f"blob {i}.{k} is not an int in 0..2^63-1")
            # Like the reference (the JSON Schema's minimum/maximum), fixed bounds are schema errors.
            _schema(b["nbytes"] >= 1 and b["chunk_size"] >= 1, f"blob {i} nbytes/chunk_size < 1")
            _schema(1 <= b["width"] <= 16, f"blob {i} width not in 1..16")
            _schema(type(b["codec"]) is str, f"blob {i}.codec is not a string")
            _schema(type(b["chunks"]) is list, f"blob {i}.chunks is not an array")
            nchunks += len(b["chunks"])
            if nchunks > MAX_CHUNKS:
                _fail("LIMIT_EXCEEDED", "too many chunks")
            for j, c in enumerate(b["chunks"]):
                _record(c, CHUNK_KEYS, f"blob {i} chunk {j}")
                _schema(type(c["digest"]) is bytes, f"blob {i} chunk {j} digest is not bytes")
                _nonneg_list(c["segments"], f"blob {i} chunk {j} segments")
        for i, t in enumerate(m["tensors"]):
            _record(t, TENSOR_KEYS, f"tensor {i}")
            _schema(type(t["name"]) is str, f"tensor {i} name is not a string")
            _schema(type(t["dtype"]) is str, f"tensor {i} dtype is not a string")
            _nonneg_list(t["shape"], f"tensor {i} shape")
            _nonneg_list(t["strides"], f"tensor {i} strides")
            _schema(t["blob"] is None or _is_nonneg(t["blob"]), f"tensor {i} blob is not int >= 0 or nil")
            _schema(_is_nonneg(t["offset"]), f"tensor {i} offset is not an int >= 0")
        for i, r in enumerate(m["modules"]):
            _record(r, MODULE_KEYS, f"module {i}")
            _schema(type(r["type"]) is str, f"module {i} type is not a string")
            _schema(
                (_is_nonneg(r["version"]) and r["version"] >= 1) or (r["version"] is None and self.sv >= 5),
                f"module {i} version is not an int >= 1",
            )
            _schema(type(r["config"]) is dict, f"module {i} config is not a map")
            _schema(type(r["parameters"]) is dict, f"module {i} parameters is not a map")
            for k, p in r["parameters"].items():
                if p is not None:
                    _record(p, PARAM_KEYS, f"module {i} parameter {k}")
                    _schema(_is_nonneg(p["tensor"]), f"module {i} parameter {k} tensor is not an int >= 0")
                    _schema(type(p["requires_grad"]) is bool, f"module {i} parameter {k} requires_grad")
            for key in ("buffers", "children"):
                _schema(type(r[key]) is dict, f"module {i} {key} is not a map")
                for k, v in r[key].items():
                    _schema(v is None or _is_nonneg(v), f"module {i} {key}.{k} is not int >= 0 or nil")
            _schema(type(r["training"]) is bool, f"module {i} training is not a bool")
        for k, sh in enumerate(m["shards"]):
            _record(sh, SHARD_KEYS, f"shard {k}")
            _schema(type(sh["file"]) is str, f"shard {k} file is not a string")
            _schema(_is_nonneg(sh["size"]), f"shard {k} size is not an int in 0..2^63-1")
            _schema(type(sh["digest"]) is bytes, f"shard {k} digest is not bytes")
            _schema(
                type(sh["blobs"]) is list and all(_is_nonneg(n) and n >= 1 for n in sh["blobs"]),
                f"shard {k} blobs is not an array of ints >= 1",
            )
        ck = m["checkpoint"]
        if ck is not None:
            _record(ck, CHECKPOINT_KEYS, "checkpoint")
            _schema(type(ck["type"]) is str, "checkpoint type is not a string")
            _schema(_is_nonneg(ck["version"]) and ck["version"] >= 1, "checkpoint version is not an int >= 1")

    def _blobs(self) -> None:
        m = self.m
        if m["checksum"] not in CHECKSUMS or (self.sv < 6 and m["checksum"] == "blake3"):
            _fail("UNKNOWN_CHECKSUM", m["checksum"])  # §12: blake3 is a checksum of version 6
        self.algo = m["checksum"]
        dlen = CHECKSUMS[self.algo][1]
        expect = 64
        total = 0
        for i, b in enumerate(m["blobs"]):
            if b["codec"] not in CODECS:
                _fail("UNKNOWN_CODEC", b["codec"])
            if b["offset"] != expect:
                _fail("BAD_LAYOUT", f"blob {i} offset {b['offset']} != {expect}")
            w, nb, cs = b["width"], b["nbytes"], b["chunk_size"]
            if not 1 <= w <= 16 or (w != 1 and b["codec"] != "bytegroup-zstd"):
                _fail("BAD_TENSOR", f"blob {i} width {w}")
            if nb < 1 or nb % w:
                _fail("BAD_TENSOR", f"blob {i} nbytes {nb}")
            if cs < 1 or cs % w:
                _fail("BAD_TENSOR", f"blob {i} chunk_size {cs}")
            if cs > MAX_CHUNK_SIZE:
                _fail("LIMIT_EXCEEDED", f"blob {i} chunk_size above max_chunk_size")
            if len(b["chunks"]) != -(-nb // cs):
                _fail("BAD_TENSOR", f"blob {i} has {len(b['chunks'])} chunks")
            stored = 0
            for j, c in enumerate(b["chunks"]):
                raw_len = min((j + 1) * cs, nb) - j * cs
                segs = c["segments"]
                if len(c["digest"]) != dlen:
                    _fail("BAD_TENSOR", f"blob {i} chunk {j} digest length")
                if b["codec"] == "raw":
                    if segs != [raw_len]:
                        _fail("BAD_TENSOR", f"blob {i} chunk {j} raw segments {segs}")
                elif b["codec"] == "zstd":
                    if len(segs) != 1 or not 1 <= segs[0] <= raw_len:
                        _fail("BAD_TENSOR", f"blob {i} chunk {j} zstd segments {segs}")
                else:
                    plane = raw_len // w
                    if len(segs) != w or not all(1 <= s <= plane for s in segs):
                        _fail("BAD_TENSOR", f"blob {i} chunk {j} bytegroup segments {segs}")
                stored += sum(segs)
            if b["length"] != stored:  # SPEC.md names no code; the reference reports BAD_LAYOUT
                _fail("BAD_LAYOUT", f"blob {i} length {b['length']} != segment total {stored}")
            total += nb
            expect = align(b["offset"] + b["length"])
        if self.manifest_offset != expect:
            _fail("BAD_LAYOUT", f"manifest offset {self.manifest_offset} != {expect}")
        if total > min(1 << 50, 1024 * self.size + 64 * MIB):
            _fail("LIMIT_EXCEEDED", "decoded size limit")

    def _shards(self) -> list[int]:
        """§5.10: an index's shard table; the decoded size of each blob tensors may refer to."""
        m = self.m
        if not m["shards"]:
            return [b["nbytes"] for b in m["blobs"]]
        if m["blobs"]:
            _fail("BAD_LAYOUT", "an index holds blobs")
        dlen = CHECKSUMS[self.algo][1]
        seen: set[str] = set()
        sizes: list[int] = []
        for k, sh in enumerate(m["shards"]):
            f = sh["file"]
            if len(f.encode("utf-8", "surrogatepass")) > 255 or not SHARD_FILE_RE.match(f) or ".." in f:
                _fail("BAD_NAME", f"shard file {f!r}")
            if f in seen:
                _fail("BAD_NAME", f"shard file {f!r} listed twice")
            seen.add(f)
            if len(sh["digest"]) != dlen:
                _fail("BAD_LAYOUT", f"shard {k} digest length")
            if sh["size"] < 128:
                _fail("BAD_LAYOUT", f"shard {k} size")
            if not sh["blobs"]:
                _fail("BAD_LAYOUT", f"shard {k} holds no blob")
            if len(sizes) + len(sh["blobs"]) > MAX_BLOBS:
                _fail("LIMIT_EXCEEDED", "too many blobs in the set")
            if sum(sh["blobs"]) > min(1 << 50, 1024 * sh["size"] + 64 * MIB):
                _fail("LIMIT_EXCEEDED", f"shard {k} decoded size limit")
            sizes.extend(sh["blobs"])
        return sizes

    def _shard_data(self) -> list[bytes]:
        """§5.10: every shard read as a file, checked against the index after its §9 steps 1-9 and before
        its data (step 12), so that a nested index is refused before its own shards are read; the set's
        blobs, decoded."""
        folder = os.path.dirname(os.path.realpath(self.path))
        out: list[bytes] = []
        for k, sh in enumerate(self.m["shards"]):
            lo = len(out)
            sub = Reader(
                os.path.join(folder, sh["file"]), lambda r, k=k, sh=sh, lo=lo: self._shard(k, sh, r, lo)
            )
            sub.read()  # every rule of a file, with the codes a file gets (IO_ERROR when it is missing)
            out.extend(sub.data)
        return out

    def _shard(self, k: int, sh: dict[str, Any], sub: Reader, lo: int) -> None:
        """Shard k, read up to its data, against its entry; `lo` is its first blob in the set."""
        if sub.size != sh["size"] or sub.trailer_algo != self.algo or sub.digest != sh["digest"]:
            _fail("CHECKSUM_MISMATCH", f"shard {k} is not the file the index lists")
        sm = sub.m
        if sm["shards"]:
            _fail("BAD_LAYOUT", f"shard {k} is an index")
        if [b["nbytes"] for b in sm["blobs"]] != sh["blobs"]:
            _fail("BAD_LAYOUT", f"shard {k} blobs differ from the index")
        hi = lo + len(sh["blobs"])
        mine = [
            (t["name"], t["dtype"], t["shape"], t["strides"], t["offset"], t["blob"] - lo)
            for t in self.m["tensors"]
            if t["blob"] is not None and lo <= t["blob"] < hi
        ]
        theirs = [
            (t["name"], t["dtype"], t["shape"], t["strides"], t["offset"], t["blob"]) for t in sm["tensors"]
        ]
        if mine != theirs:
            _fail("BAD_LAYOUT", f"shard {k} tensors differ from the index")

    def _tensors(self, sizes: list[int]) -> None:
        m = self.m
        names: set[str] = set()
        used: set[int] = set()
        for t in m["tensors"]:
            name = t["name"]
            check_name(name)
            if name in names:
                _fail("BAD_NAME", f"duplicate tensor name {name!r}")
            names.add(name)
            if t["dtype"] not in DTYPES or (self.sv < 3 and t["dtype"] not in V2_DTYPES):
                _fail("UNKNOWN_DTYPE", t["dtype"])
            itemsize = DTYPES[t["dtype"]][0]
            shape, strides = t["shape"], t["strides"]
            if len(shape) > MAX_RANK:
                _fail("LIMIT_EXCEEDED", f"tensor {name} rank {len(shape)}")
            if len(strides) != len(shape) or any(s < 0 for s in strides) or any(s < 0 for s in shape):
                _fail("BAD_TENSOR", f"tensor {name} shape/strides")
            numel = math.prod(shape)
            if math.prod(d for d in shape if d) * itemsize > (1 << 63) - 1:
                _fail("BAD_TENSOR", f"tensor {name} too large")
            blob, off = t["blob"], t["offset"]
            if numel == 0:
                if blob is not None or off != 0:
                    _fail("BAD_TENSOR", f"empty tensor {name} with a blob or offset")
                continue
            if blob is None or not 0 <= blob < len(sizes):
                _fail("BAD_TENSOR", f"tensor {name} blob {blob}")
            if off < 0 or off % itemsize:
                _fail("BAD_TENSOR", f"tensor {name} offset {off}")
            extent = itemsize * (1 + sum((n - 1) * s for n, s in zip(shape, strides, strict=True)))
            if off + extent > sizes[blob]:
                _fail("BAD_TENSOR", f"tensor {name} extent beyond its blob")
            used.add(blob)
        for i in range(len(sizes)):
            if i not in used:
                _fail("BAD_LAYOUT", f"blob {i} referenced by no tensor")

    def _node(self, n: Any, module_refs: list[int] | None = None, config: bool = False) -> None:
        """Validate a §5.4 node (iteratively: depth is bounded by the decoder anyway); `config` for a layer
        config's values, the only place ref, partial and object nodes may be."""
        stack = [n]
        nt, nm = len(self.m["tensors"]), len(self.m["modules"])
        while stack:
            x = stack.pop()
            if x is None or type(x) in (bool, int, float, str, bytes):
                continue
            _schema(type(x) is dict and len(x) == 1, "node is not a scalar or a one-key map")
            ((tag, v),) = x.items()
            _schema(tag in NODE_TAGS, f"unknown node tag {tag!r}")
            if self.sv == 1:
                _schema(tag not in ("module", "dtype"), f"{tag} node in a schema version 1 manifest")
            if self.sv < 3:
                _schema(tag not in V3_NODE_TAGS, f"{tag} node in a schema version {self.sv} manifest")
            if self.sv < 4:
                _schema(tag not in V4_NODE_TAGS, f"{tag} node in a schema version {self.sv} manifest")
            if tag in V5_NODE_TAGS:
                _schema(self.sv >= 5, f"{tag} node in a schema version {self.sv} manifest")
                _schema(config, f"{tag} node outside a layer config")
            if tag in V6_NODE_TAGS:
                _schema(self.sv >= 6, f"{tag} node in a schema version {self.sv} manifest")
                _schema(not config, f"{tag} node in a layer config (the object tree only)")
            if tag == "ref":
                _schema(type(v) is str, "ref node is not a string")
                _type_name(v, "ref node")
            elif tag == "partial":
                _record(v, ("ref", "args", "kwargs"), "partial node")
                _schema(type(v["ref"]) is str, "partial node ref is not a string")
                _schema(type(v["args"]) is list and type(v["kwargs"]) is list, "partial node args or kwargs")
                for e in v["kwargs"]:
                    _schema(type(e) is list and len(e) == 2, "partial node keyword entry")
                    _schema(type(e[0]) is str, "partial node keyword name is not a string")
                kw = [e[0] for e in v["kwargs"]]
                _schema(len(set(kw)) == len(kw), "duplicate partial node keyword name")
                _type_name(v["ref"], "partial node")
                stack.extend(v["args"])
                stack.extend(e[1] for e in v["kwargs"])
            elif tag == "object":
                _record(v, ("type", "data"), "object node")
                _schema(type(v["type"]) is str, "object node type is not a string")
                _type_name(v["type"], "object node")
                stack.append(v["data"])
            elif tag == "optimizer":
                stack.extend(self._optimizer_node(v))
            elif tag == "stateful":
                _record(v, STATEFUL_KEYS, "stateful node")
                _schema(type(v["kind"]) is str and v["kind"] in STATEFUL_KINDS, "stateful node kind")
                _schema(type(v["class"]) is str, "stateful node class is not a string")
                _class_name(v["class"], "stateful node class")
                _training_content([v["state"]], "stateful node")
                stack.append(v["state"])
            elif tag in ("list", "tuple"):
                _schema(type(v) is list, f"{tag} node is not an array")
                stack.extend(v)
            elif tag in ("dict", "counter"):
                _schema(type(v) is list, f"{tag} node is not an array")
                stack.extend(_entries(v, self.sv))
            elif tag == "ordered_dict":
                _record(v, ("items", "metadata"), "ordered_dict node")
                _schema(type(v["items"]) is list, "ordered_dict items is not an array")
                _schema(type(v["metadata"]) is list and len(v["metadata"]) <= 1, "ordered_dict metadata")
                stack.extend(_entries(v["items"], self.sv))
                stack.extend(v["metadata"])
            elif tag == "set":
                _schema(type(v) is list, "set node is not an array")
                _distinct_keys(v, "set element", self.sv)
                stack.extend(k for k in v if type(k) is dict)
            elif tag == "bytearray":
                _schema(type(v) is bytes, "bytearray node is not bytes")
            elif tag == "complex":
                _schema(type(v) is list and len(v) == 2 and all(type(p) is float for p in v), "complex node")
            elif tag == "size":
                _schema(
                    type(v) is list and all(type(d) is int and INT64_MIN <= d <= INT63 for d in v),
                    "size node is not an array of 64-bit ints",
                )
            elif tag == "device":
                _schema(type(v) is str and len(v) <= 64 and DEVICE_RE.fullmatch(v) is not None, "device node")
            elif tag in ("tensor", "requires_grad", "parameter"):
                if tag == "parameter":
                    _record(v, PARAM_KEYS, "parameter node")
                    _schema(type(v["requires_grad"]) is bool, "parameter node requires_grad is not a bool")
                    v = v["tensor"]
                _schema(_is_nonneg(v), f"{tag} node tensor is not an int >= 0")
                if not 0 <= v < nt:
                    _fail("BAD_TENSOR", f"{tag} node {v} out of range")
            elif tag in ("ndarray", "numpy_scalar"):
                self._numpy_node(tag, v)
            elif tag in ("layout", "qscheme"):
                _schema(type(v) is str and len(v) <= 64 and NAME_RE.fullmatch(v) is not None, f"{tag} node")
            elif tag == "meta_tensor":
                _meta_node(v)
            elif tag == "tensor_attrs":
                _record(v, ("of", "attrs"), "tensor_attrs node")
                of = v["of"]
                _schema(
                    type(of) is dict and len(of) == 1 and next(iter(of)) in TENSOR_TAGS, "tensor_attrs of"
                )
                _schema(type(v["attrs"]) is list, "tensor_attrs attrs is not an array")
                for e in v["attrs"]:
                    _schema(type(e) is list and len(e) == 2 and type(e[0]) is str, "tensor attribute entry")
                names = [e[0] for e in v["attrs"]]
                _schema(len(set(names)) == len(names), "duplicate tensor attribute name")
                _schema(not _holds(v["attrs"], "module"), "a tensor attribute refers to a module")
                for kind in V6_NODE_TAGS:  # §5.4 (version 6): training state is never an attribute
                    _schema(not _holds(v["attrs"], kind), f"a tensor attribute holds a {kind} node")
                stack.append(of)
                stack.extend(e[1] for e in v["attrs"])
            elif tag == "module":
                _schema(_is_nonneg(v), "module node is not an int >= 0")
                if not 0 <= v < nm:
                    _fail("BAD_TENSOR", f"module node {v} out of range")
                if module_refs is not None:
                    module_refs.append(v)
            else:
                _schema(type(v) is str, "dtype node is not a string")
                known = V2_DTYPES if self.sv < 3 else DTYPES.keys() | VALUE_ONLY_DTYPES
                if v not in known:
                    _fail("UNKNOWN_DTYPE", v)

    def _optimizer_node(self, v: Any) -> list[Any]:
        """§5.4 (version 6): an optimizer's state by parameter. Returns the nodes inside it (its groups and
        its parameters' states), to be validated as nodes."""
        _record(v, OPTIMIZER_KEYS, "optimizer node")
        _schema(type(v["class"]) is str, "optimizer node class is not a string")
        _schema(type(v["groups"]) is list, "optimizer node groups is not an array")
        _schema(type(v["params"]) is list, "optimizer node params is not an array")
        for p in v["params"]:
            _record(p, OPTIMIZER_PARAM_KEYS, "optimizer parameter")
            _schema(_is_nonneg(p["group"]), "optimizer parameter group is not an int >= 0")
            _schema(_is_nonneg(p["module"]), "optimizer parameter module is not an int >= 0")
            _schema(type(p["name"]) is str, "optimizer parameter name is not a string")
        _class_name(v["class"], "optimizer node class")
        inside = [*v["groups"], *(p["state"] for p in v["params"])]
        _training_content(inside, "optimizer node")
        for g in v["groups"]:
            keys = _string_keys(g, "an optimizer group")
            _schema("params" not in keys and "param_names" not in keys, "an optimizer group lists params")
        records = self.m["modules"]
        seen: set[tuple[int, str]] = set()
        tensors: set[Any] = set()  # a tied parameter is one parameter of the optimizer (§5.4)
        last = 0
        for p in v["params"]:
            group, module, name = p["group"], p["module"], p["name"]
            _schema(group < len(v["groups"]), f"optimizer parameter group {group} out of range")
            _schema(group >= last, "optimizer parameters are not in group order")
            last = group
            if module >= len(records):
                _fail("BAD_TENSOR", f"optimizer parameter module {module} out of range")
            if records[module]["parameters"].get(name) is None:
                _fail("BAD_TENSOR", f"optimizer parameter {name!r}: module {module} has no such parameter")
            _schema((module, name) not in seen, f"optimizer parameter {name!r} of module {module} twice")
            seen.add((module, name))
            tensor = records[module]["parameters"][name]["tensor"]
            _schema(tensor not in tensors, f"optimizer parameter {name!r}: its tensor is listed twice")
            tensors.add(tensor)
            _string_keys(p["state"], "an optimizer parameter's state")
        return inside

    def _checkpoint(self) -> None:
        """§5 (version 6): a checkpoint version's type is a registered name."""
        ck = self.m["checkpoint"]
        if ck is not None:
            _type_name(ck["type"], "checkpoint type")

    def _numpy_node(self, tag: str, v: Any) -> None:
        """§5.4: a numpy array (dtype, shape, data) or scalar (dtype, data)."""
        keys = ("dtype", "shape", "data") if tag == "ndarray" else ("dtype", "data")
        _record(v, keys, f"{tag} node")
        _schema(type(v["dtype"]) is str and type(v["data"]) is bytes, f"{tag} node dtype or data")
        shape = _nonneg_list(v["shape"], f"{tag} node shape") if tag == "ndarray" else []
        if v["dtype"] not in NUMPY_DTYPES:
            _fail("UNKNOWN_DTYPE", f"{tag} node dtype {v['dtype']!r}")
        if len(shape) > MAX_RANK:
            _fail("LIMIT_EXCEEDED", f"{tag} node rank {len(shape)}")
        itemsize = DTYPES[v["dtype"]][0]
        if math.prod(d for d in shape if d) * itemsize > INT63:
            _fail("BAD_TENSOR", f"{tag} node shape overflows")
        if len(v["data"]) != itemsize * math.prod(shape):
            _fail("BAD_TENSOR", f"{tag} node holds {len(v['data'])} bytes")
        if v["dtype"] == "bool" and v["data"].translate(None, b"\x00\x01"):
            _fail("BAD_VALUE", f"{tag} node: a bool byte other than 0 or 1")

    def _tree(self) -> None:
        self.roots: list[int] = []
        self._node(self.m["root"], self.roots)

    def _modules(self) -> None:
        mods = self.m["modules"]
        nt, nm = len(self.m["tensors"]), len(mods)
        edges: list[list[int]] = []
        edges_children: list[list[int]] = []
        for i, r in enumerate(mods):
            t = r["type"]
            if r["version"] is None:  # built by its parent: a class name, and no config
                _class_name(t, f"module {i} class name")
                _schema(not r["config"], f"module {i} is built by its parent but has a config")
            elif len(t.encode("utf-8")) > 256 or not TYPE_RE.match(t):
                _fail("BAD_NAME", f"module {i} type {t!r}")
            out: list[int] = []
            for v in r["config"].values():
                self._node(v, out, config=True)
            for key in ("parameters", "buffers", "children"):
                for k, v in r[key].items():
                    check_name(k, f"module {i} {key} name")
                    if "." in k:
                        _fail("BAD_NAME", f"module {i} {key} name {k!r} contains '.'")
                    if v is None:
                        continue
                    idx = v["tensor"] if key == "parameters" else v
                    limit = nm if key == "children" else nt
                    if not 0 <= idx < limit:
                        _fail("BAD_TENSOR", f"module {i} {key}.{k} index {idx} out of range")
                    if key == "children":
                        out.append(idx)
            edges.append(out)
            edges_children.append([v for v in r["children"].values() if v is not None])
        # cycle detection (iterative DFS, colours: 0 new, 1 on stack, 2 done)
        colour = [0] * nm
        height = [0] * nm  # records on the longest path down from each (at most MAX_DEPTH, §5.7)
        for s in range(nm):
            if colour[s]:
                continue
            stack = [(s, 0)]
            colour[s] = 1
            while stack:
                node, k = stack[-1]
                if k < len(edges[node]):
                    stack[-1] = (node, k + 1)
                    nxt = edges[node][k]
                    if colour[nxt] == 1:
                        _fail("BAD_LAYOUT", f"module graph has a cycle through record {nxt}")
                    if colour[nxt] == 0:
                        colour[nxt] = 1
                        stack.append((nxt, 0))
                else:
                    colour[node] = 2
                    height[node] = 1 + max((height[c] for c in edges[node]), default=0)
                    if height[node] > MAX_DEPTH:
                        _fail("LIMIT_EXCEEDED", f"a module path of more than {MAX_DEPTH} records")
                    stack.pop()
        # module paths (SPEC 8): paths below each record, computed children first (colour 2 = done above)
        below: dict[int, int] = {}
        for s in range(nm):
            todo = [s]
            while todo:
                r = todo[-1]
                if r in below:
                    todo.pop()
                    continue
                missing = [c for c in edges_children[r] if c not in below]
                if missing:
                    todo.extend(missing)
                    continue
                todo.pop()
                below[r] = min(MAX_MODULE_PATHS + 1, 1 + sum(below[c] for c in edges_children[r]))
        if sum(below[r] for r in self.roots) > MAX_MODULE_PATHS:
            _fail("LIMIT_EXCEEDED", "more module paths than max_module_paths")

    # -- data ---------------------------------------------------------------------------------------------
    def _data(self) -> list[bytes]:
        out = []
        for b in self.m["blobs"]:
            nb, cs, w, codec = b["nbytes"], b["chunk_size"], b["width"], b["codec"]
            end = b["offset"] + b["length"]
            stored = self._pread(b["offset"], b["length"])
            buf = bytearray(nb)
            pos = 0
            for j, c in enumerate(b["chunks"]):
                raw_len = min((j + 1) * cs, nb) - j * cs
                n = sum(c["segments"])
                chunk = stored[pos : pos + n]
                pos += n
                if chunk_digest(self.algo, chunk) != c["digest"]:
                    _fail("CHECKSUM_MISMATCH", f"chunk {j} of the blob at {b['offset']}")
                if codec == "raw":
                    dec = chunk
                elif codec == "zstd":
                    dec = zstd_segment(chunk, raw_len, self.sv >= CHECKSUM_FROM_SCHEMA)
                else:
                    plane = raw_len // w
                    planes = []
                    sp = 0
                    for s in c["segments"]:
                        planes.append(
                            zstd_segment(chunk[sp : sp + s], plane, self.sv >= CHECKSUM_FROM_SCHEMA)
                        )
                        sp += s
                    arr = np.frombuffer(b"".join(planes), dtype=np.uint8).reshape(w, plane)
                    dec = arr.T.tobytes()
                buf[j * cs : j * cs + raw_len] = dec
            if any(self._pread(end, align(end) - end)):
                _fail("BAD_LAYOUT", f"non-zero padding after the blob at {b['offset']}")
            out.append(bytes(buf))
        for t in self.m["tensors"]:
            if t["dtype"] == "bool" and t["blob"] is not None:
                extent = 1 + sum((n - 1) * s for n, s in zip(t["shape"], t["strides"], strict=True))
                seg = np.frombuffer(out[t["blob"]], dtype=np.uint8)[t["offset"] : t["offset"] + extent]
                if seg.size and int(seg.max()) > 1:
                    _fail("BAD_VALUE", f"bool tensor {t['name']} holds a byte other than 0 or 1")
        return out

    def _tensor_sha256(self, t: dict[str, Any], data: list[bytes]) -> str:
        h = hashlib.sha256()
        if t["blob"] is None:
            return h.hexdigest()
        itemsize = DTYPES[t["dtype"]][0]
        base = np.frombuffer(data[t["blob"]], dtype=np.uint8)
        view = np.lib.stride_tricks.as_strided(
            base[t["offset"] :],
            shape=(*t["shape"], itemsize),
            strides=(*(s * itemsize for s in t["strides"]), 1),
            writeable=False,
        )
        _hash_view(h, view)
        return h.hexdigest()

    # -- description --------------------------------------------------------------------------------------
    def _describe(self, data: list[bytes]) -> dict[str, Any]:
        m = self.m
        names = [t["name"] for t in m["tensors"]]
        out: dict[str, Any] = {
            "schema_version": self.sv,
            "tensors": [
                {
                    "name": t["name"],
                    "dtype": t["dtype"],
                    "shape": list(t["shape"]),
                    "sha256": self._tensor_sha256(t, data),
                }
                for t in m["tensors"]
            ],
            "root": _desc_node(m["root"], names),
            "metadata": _desc_value(m["metadata"]),
        }
        if m["modules"]:
            out["modules"] = [
                {
                    "type": r["type"],
                    "version": r["version"],
                    "config": {"$dict": [[k, _desc_node(v, names)] for k, v in r["config"].items()]},
                    "parameters": {
                        k: None if p is None else [names[p["tensor"]], p["requires_grad"]]
                        for k, p in r["parameters"].items()
                    },
                    "buffers": {k: None if b is None else names[b] for k, b in r["buffers"].items()},
                    "children": dict(r["children"]),
                    "training": r["training"],
                }
                for r in m["modules"]
            ]
        if m["checkpoint"] is not None:
            out["checkpoint"] = {"type": m["checkpoint"]["type"], "version": m["checkpoint"]["version"]}
        return out


def _hash_view(h: Any, view: np.ndarray) -> None:
    """Feed a strided uint8 view's bytes in C order, never materialising more than HASH_PIECE bytes."""
    if view.nbytes <= HASH_PIECE or view.ndim <= 1:
        h.update(np.ascontiguousarray(view).tobytes())
        return
    if view.shape[0] == 1:
        _hash_view(h, view[0])
        return
    step = max(1, HASH_PIECE // (view.nbytes // view.shape[0]))
    for start in range(0, view.shape[0], step):
        _hash_view(h, view[start : start + step])


def _entries(v: list[Any], sv: int) -> list[Any]:
    """§5.4: a mapping's entries are [key, Node] pairs with distinct keys; returns the values and the keys
    that are nodes (to be validated as nodes)."""
    for e in v:
        _schema(type(e) is list and len(e) == 2, "mapping entry is not a pair")
    _distinct_keys([e[0] for e in v], "mapping key", sv)
    return [e[0] for e in v if type(e[0]) is dict] + [e[1] for e in v]


def _key_id(k: Any, sv: int, what: str) -> Any:
    """What a key is equal to: scalars as Python compares them (1, 1.0 and True are one key: §5.4 MAY),
    NaNs by their bits; from version 4 tuples item by item and the other key nodes by their content."""
    if k is None or type(k) in (bool, int, float, str, bytes):
        if type(k) is float and math.isnan(k):
            return ("nan", struct.pack(">d", k))
        if type(k) in (bool, int, float):
            return ("num", k)
        return (type(k).__name__, k)
    _schema(sv >= 4 and type(k) is dict and len(k) == 1, f"{what} is not a scalar")
    ((tag, v),) = k.items()
    if tag == "tuple":
        _schema(type(v) is list, "tuple key is not an array")
        return ("tuple", tuple(_key_id(x, sv, what) for x in v))
    _schema(tag in KEY_TAGS, f"{what} is not a key (a {tag!r} node)")
    if tag == "complex" and type(v) is list:
        return ("complex", tuple(_key_id(x, sv, what) for x in v))
    return (tag, repr(v))


def _distinct_keys(keys: list[Any], what: str, sv: int) -> None:
    seen: set[Any] = set()
    for k in keys:
        key = _key_id(k, sv, what)
        if key in seen:
            _fail("MANIFEST_SCHEMA", f"duplicate {what} {k!r}")
        seen.add(key)


def _holds(x: Any, tag: str) -> bool:
    """Whether a node (or array of nodes) holds a `tag` node anywhere inside."""
    stack = [x]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            if len(v) == 1 and tag in v:
                return True
            stack.extend(v.values())
        elif type(v) is list:
            stack.extend(v)
    return False


def _meta_node(v: Any) -> None:
    """§5.4 (version 4): a meta tensor follows a tensor entry's dtype, rank, stride and size rules."""
    _record(v, META_KEYS, "meta_tensor node")
    _schema(type(v["dtype"]) is str, "meta_tensor dtype is not a string")
    shape = _nonneg_list(v["shape"], "meta_tensor shape")
    strides = _nonneg_list(v["strides"], "meta_tensor strides")
    _schema(_is_nonneg(v["offset"]), "meta_tensor offset")
    _schema(type(v["parameter"]) is bool and type(v["requires_grad"]) is bool, "meta_tensor flags")
    if v["dtype"] not in DTYPES:
        _fail("UNKNOWN_DTYPE", f"meta_tensor dtype {v['dtype']!r}")
    if len(shape) > MAX_RANK:
        _fail("LIMIT_EXCEEDED", f"meta_tensor rank {len(shape)}")
    if len(strides) != len(shape):
        _fail("BAD_TENSOR", "meta_tensor strides do not match its rank")
    itemsize = DTYPES[v["dtype"]][0]
    if math.prod(d for d in shape if d) * itemsize > INT63:
        _fail("BAD_TENSOR", "meta_tensor shape overflows")
    extent = (
        itemsize * (1 + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))) if all(shape) else 0
    )
    if v["offset"] * itemsize + extent > INT63:
        _fail("BAD_TENSOR", "meta_tensor offset and strides overflow")


def _desc_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"$bytes": v.hex()}
    if isinstance(v, float) and not math.isfinite(v):
        return {"$float": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
    if isinstance(v, list):
        return {"$list": [_desc_value(x) for x in v]}
    if isinstance(v, dict):
        return {"$dict": [[k, _desc_value(x)] for k, x in v.items()]}
    return v


def _class_name(name: str, what: str) -> None:
    """§5.7: a class name (a record built by its parent's, an optimizer's or a stateful node's class) is
    dotted identifiers or `<locals>`, at most 1024 bytes; shown, never looked up."""
    if len(name.encode("utf-8")) > 1024 or not CLASS_RE.match(name):
        _fail("BAD_NAME", f"{what} {name!r}")


def _training_content(nodes: list[Any], what: str) -> None:
    """§5.4 (version 6): no node inside a training-state node is a module node or training state again."""
    for tag in ("module", *V6_NODE_TAGS):
        _schema(not _holds(nodes, tag), f"a {tag} node inside an {what}")


def _string_keys(node: Any, what: str) -> list[str]:
    """§5.4 (version 6): the keys of a `dict` node whose keys are all strings."""
    ok = type(node) is dict and len(node) == 1 and type(node.get("dict")) is list
    entries = node["dict"] if ok else []
    ok = ok and all(type(e) is list and len(e) == 2 and type(e[0]) is str for e in entries)
    _schema(ok, f"{what} is not a dict node of string keys")
    return [e[0] for e in entries]


def _type_name(name: str, what: str) -> None:
    """§5.6: a registered name is dotted identifiers of at most 256 bytes."""
    if len(name.encode("utf-8")) > 256 or not TYPE_RE.match(name):
        _fail("BAD_NAME", f"{what} name {name!r}")


def _desc_node(n: Any, names: list[str]) -> Any:
    if type(n) is dict:
        ((tag, v),) = n.items()
        if tag == "ref":
            return {"$ref": v}
        if tag == "partial":
            args = [_desc_node(x, names) for x in v["args"]]
            kwargs = [[k, _desc_node(x, names)] for k, x in v["kwargs"]]
            return {"$partial": {"ref": v["ref"], "args": args, "kwargs": kwargs}}
        if tag == "object":
            return {"$object": {"type": v["type"], "data": _desc_node(v["data"], names)}}
        if tag == "optimizer":
            params = [
                {
                    "group": p["group"],
                    "module": p["module"],
                    "name": p["name"],
                    "state": _desc_node(p["state"], names),
                }
                for p in v["params"]
            ]
            groups = [_desc_node(g, names) for g in v["groups"]]
            return {"$optimizer": {"class": v["class"], "groups": groups, "params": params}}
        if tag == "stateful":
            return {
                "$stateful": {"kind": v["kind"], "class": v["class"], "state": _desc_node(v["state"], names)}
            }
        if tag == "tensor":
            return {"$tensor": names[v]}
        if tag == "module":
            return {"$module": v}
        if tag == "dtype":
            return {"$dtype": v}
        if tag == "list":
            return {"$list": [_desc_node(x, names) for x in v]}
        if tag == "tuple":
            return {"$tuple": [_desc_node(x, names) for x in v]}
        if tag in ("dict", "counter"):
            return {f"${tag}": _desc_pairs(v, names)}
        if tag == "ordered_dict":
            meta = [_desc_node(x, names) for x in v["metadata"]]
            return {"$ordered_dict": {"items": _desc_pairs(v["items"], names), "metadata": meta}}
        if tag == "set":
            return {"$set": [_desc_node(k, names) for k in v]}
        if tag in ("layout", "qscheme"):
            return {f"${tag}": v}
        if tag == "meta_tensor":
            return {"$meta_tensor": {k: v[k] for k in META_KEYS}}
        if tag == "tensor_attrs":
            attrs = [[a, _desc_node(x, names)] for a, x in v["attrs"]]
            return {"$tensor_attrs": {"of": _desc_node(v["of"], names), "attrs": attrs}}
        if tag == "bytearray":
            return {"$bytearray": v.hex()}
        if tag == "complex":
            return {"$complex": [_desc_value(p) for p in v]}
        if tag == "size":
            return {"$size": list(v)}
        if tag == "device":
            return {"$device": v}
        if tag == "parameter":
            return {"$parameter": [names[v["tensor"]], v["requires_grad"]]}
        if tag == "requires_grad":
            return {"$requires_grad": names[v]}
        if tag == "ndarray":
            return {"$ndarray": {"dtype": v["dtype"], "shape": list(v["shape"]), "hex": v["data"].hex()}}
        return {"$numpy_scalar": {"dtype": v["dtype"], "hex": v["data"].hex()}}
    return _desc_value(n)


def _desc_pairs(v: list[Any], names: list[str]) -> list[Any]:
    return [[_desc_node(k, names), _desc_node(x, names)] for k, x in v]


FALLBACK = {"container": "BAD_LAYOUT", "manifest": "MANIFEST_SCHEMA", "data": "BAD_COMPRESSED_DATA"}


def read_description(path: str) -> dict[str, Any]:
    """Validate the file at `path` and return its canonical description; raises ReaderError."""
    return Reader(path).read()


def handle(req: Any) -> dict[str, Any]:
    if type(req) is not dict or type(req.get("op")) is not str:
        return {"ok": False, "error": "INVALID_ARGUMENT"}
    op = req["op"]
    if op == "hello":
        return {
            "ok": True,
            "name": "tmodel-independent-reader",
            "version": "0.1",
            "capabilities": ["read"],
            "schema_versions": list(SCHEMA_VERSIONS),
        }
    if op == "bye":
        return {"ok": True}
    if op == "write":
        return {"ok": False, "error": "UNSUPPORTED"}
    if op != "read":
        return {"ok": False, "error": "UNSUPPORTED"}
    path = req.get("path")
    if type(path) is not str:
        return {"ok": False, "error": "INVALID_ARGUMENT"}
    reader = Reader(path)
    try:
        return {"ok": True, "description": reader.read()}
    except ReaderError as e:
        print(f"read {path}: {e}", file=sys.stderr)
        return {"ok": False, "error": e.code}
    except MemoryError:
        return {"ok": False, "error": "LIMIT_EXCEEDED"}
    except RecursionError:
        return {"ok": False, "error": "LIMIT_EXCEEDED"}
    except OSError:
        return {"ok": False, "error": "IO_ERROR"}
    except Exception:
        traceback.print_exc(file=sys.stderr)
        return {"ok": False, "error": FALLBACK[reader.phase]}


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
        except ValueError:
            resp: dict[str, Any] = {"ok": False, "error": "INVALID_ARGUMENT"}
            req = None
        else:
            try:
                resp = handle(req)
            except Exception:  # never a traceback on stdout
                traceback.print_exc(file=sys.stderr)
                resp = {"ok": False, "error": "INVALID_ARGUMENT"}
        try:
            text = json.dumps(resp, allow_nan=False)
        except ValueError:
            text = json.dumps({"ok": False, "error": "INVALID_ARGUMENT"})
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        if type(req) is dict and req.get("op") == "bye":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
