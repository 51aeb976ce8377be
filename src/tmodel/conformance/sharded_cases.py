"""The sharded-set cases (SPEC.md §5.10): `cases/sharded/set.tmodel`, an index written by the reference
writer with its shards beside it, and hostile indexes, each `set.tmodel` with ONE change to its manifest
(trailer digest recomputed), read with the same shard files beside them.

A case is one file, a set is several: the read request's path is the index, and a reader finds the shards
in the index's folder, so every hostile index of the folder reads the valid set's shards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from tmodel.container.digests import ALGORITHMS
from tmodel.container.framing import TRAILER_SIZE

from .hostile_cases import H, Hostile
from .surgery import Edit, build, manifest, split
from .valid_cases import Valid

#: the valid set's index (without `.tmodel`), and the data bytes a shard holds at most
SET = "set"
MAX_SHARD_SIZE = 8192


def _set() -> dict[str, Any]:
    g = torch.Generator().manual_seed(7)
    tied = torch.randn(32, 32, generator=g)
    return {
        "w1": torch.randn(64, 32, generator=g),
        "w2": torch.randn(64, 64, generator=g).to(torch.bfloat16),
        "tied": tied,
        "tied_rows": tied[1:],  # a view: one blob with `tied`, so one shard
        "empty": torch.empty(0, 3),  # no blob: in no shard
        "mask": torch.arange(48).reshape(6, 8) % 3 == 0,
        "bias": torch.linspace(-1, 1, 64),
        "step": 12,
    }


SHARDED_VALID: dict[str, Valid] = {
    SET: Valid(
        _set,
        "§5.10",
        "a sharded set: an index and 3 shards beside it (float32, bfloat16, bool; two views of one storage "
        "in one shard, an empty tensor in none)",
        {"max_shard_size": MAX_SHARD_SIZE},
        {"note": "sharded"},
    )
}


def shard_files(n: int, stem: str = SET) -> list[str]:
    """The names the reference writer gives the n shards of `stem`.tmodel."""
    return [f"{stem}-{k:05d}-of-{n:05d}.tmodel" for k in range(1, n + 1)]


# -- edits of the index --------------------------------------------------------------------------------------
def _shard(k: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda w: w["shards"][k].__setitem__(key, value)


def _file_of(k: int, other: int) -> Callable[[dict[str, Any]], None]:
    return lambda w: w["shards"][k].__setitem__("file", w["shards"][other]["file"])


def _swap_files(w: dict[str, Any]) -> None:
    a, b = w["shards"][0], w["shards"][1]
    a["file"], b["file"] = b["file"], a["file"]


def _flip_digest(w: dict[str, Any]) -> None:
    d = bytearray(w["shards"][1]["digest"])
    d[0] ^= 0x01
    w["shards"][1]["digest"] = bytes(d)


def _digest_algorithm(w: dict[str, Any]) -> None:
    """checksum sha256, each shard digest its xxh3-64 digest zero-padded to 32 bytes: what its trailer's
    digest field holds, but of another algorithm."""
    w["checksum"] = "sha256"
    for s in w["shards"]:
        s["digest"] = s["digest"] + bytes(32 - len(s["digest"]))


def _blob_size(k: int, j: int, delta: int) -> Callable[[dict[str, Any]], None]:
    return lambda w: w["shards"][k]["blobs"].__setitem__(j, w["shards"][k]["blobs"][j] + delta)


def _tensor_named(name: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(w: dict[str, Any]) -> None:
        (t,) = [t for t in w["tensors"] if t["name"] == name]
        t[key] = value

    return mutate


def _beyond_set(w: dict[str, Any]) -> None:
    (t,) = [t for t in w["tensors"] if t["name"] == "bias"]
    t["blob"] = sum(len(s["blobs"]) for s in w["shards"])


def _retensored(w: dict[str, Any]) -> None:
    """`w1` and `bias` swap places in the tensor table, every reference of the tree following them: the
    same object, in another order than the shards hold."""
    ts = w["tensors"]
    i, j = [n for n, t in enumerate(ts) if t["name"] in ("w1", "bias")]
    ts[i], ts[j] = ts[j], ts[i]

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if list(node) == ["tensor"] and node["tensor"] in (i, j):
                return {"tensor": i + j - node["tensor"]}
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    w["root"] = walk(w["root"])


def _with_blob(data: bytes) -> bytes:
    """A 64-byte raw blob of zeros stored in the index, its chunk digest correct."""
    h, region, wire, algo = split(data)
    assert region == b""
    blob = bytes(64)
    chunk = {"digest": ALGORITHMS[wire["checksum"]][2](blob), "segments": [64]}
    wire["blobs"] = [
        {
            "offset": 64,
            "length": 64,
            "nbytes": 64,
            "codec": "raw",
            "width": 1,
            "chunk_size": 64,
            "chunks": [chunk],
        }
    ]
    return build(h, blob, wire, algo)


def _names_index(data: bytes) -> bytes:
    """Shard 1's entry names the valid index itself, with its true size and manifest digest."""
    h, region, wire, algo = split(data)
    at = len(data) - TRAILER_SIZE + 24
    digest = data[at : at + len(wire["shards"][1]["digest"])]
    wire["shards"][1].update(file=f"{SET}.tmodel", size=len(data), digest=digest)
    return build(h, region, wire, algo)


def _hostile(line: int, edit: Edit, change: str, codes: tuple[str, ...], description: str) -> Hostile:
    return H(SET, line, edit, change, codes, "§5.10", description)


SHARDED_HOSTILE: dict[str, Hostile] = {
    # 37 -- shard path traversal
    "shard_file_traversal": _hostile(
        37,
        manifest(_shard(0, "file", "../sharded/set-00001-of-00003.tmodel")),
        "shard 0's file is '../sharded/set-00001-of-00003.tmodel' (the very shard, reached through '..')",
        ("BAD_NAME",),
        "a shard file name with a path: refused by its name, though it leads to the right file",
    ),
    "shard_file_absolute": _hostile(
        37,
        manifest(_shard(0, "file", "/etc/passwd")),
        "shard 0's file is '/etc/passwd'",
        ("BAD_NAME",),
        "an absolute shard path",
    ),
    "shard_file_subfolder": _hostile(
        37,
        manifest(_shard(0, "file", "sub/set-00001-of-00003.tmodel")),
        "shard 0's file is 'sub/set-00001-of-00003.tmodel'",
        ("BAD_NAME",),
        "a shard file in a subfolder ('/' is not a name character)",
    ),
    "shard_file_backslash": _hostile(
        37,
        manifest(_shard(0, "file", "..\\set-00001-of-00003.tmodel")),
        "shard 0's file is '..\\set-00001-of-00003.tmodel'",
        ("BAD_NAME",),
        "a Windows path separator in a shard file name",
    ),
    "shard_file_dotdot": _hostile(
        37,
        manifest(_shard(0, "file", "set..00001-of-00003.tmodel")),
        "shard 0's file is 'set..00001-of-00003.tmodel'",
        ("BAD_NAME",),
        "'..' anywhere in a shard file name",
    ),
    "shard_file_hidden": _hostile(
        37,
        manifest(_shard(0, "file", ".set-00001-of-00003.tmodel")),
        "shard 0's file is '.set-00001-of-00003.tmodel'",
        ("BAD_NAME",),
        "a shard file name starting with '.'",
    ),
    "shard_file_colon": _hostile(
        37,
        manifest(_shard(0, "file", "C:set-00001-of-00003.tmodel")),
        "shard 0's file is 'C:set-00001-of-00003.tmodel'",
        ("BAD_NAME",),
        "a shard file name with ':' (a drive-relative path or an alternate data stream on Windows)",
    ),
    "shard_file_dash": _hostile(
        37,
        manifest(_shard(0, "file", "-set-00001-of-00003.tmodel")),
        "shard 0's file is '-set-00001-of-00003.tmodel'",
        ("BAD_NAME",),
        "a shard file name starting with '-' (an option to a tool given it)",
    ),
    "shard_file_empty": _hostile(
        37,
        manifest(_shard(0, "file", "")),
        "shard 0's file is ''",
        ("BAD_NAME",),
        "an empty shard file name (the index's folder itself)",
    ),
    "shard_file_long": _hostile(
        37,
        manifest(_shard(0, "file", "s" * 249 + ".tmodel")),
        "shard 0's file is a name of 256 bytes",
        ("BAD_NAME",),
        "a shard file name longer than 255 bytes",
    ),
    "shard_file_nul": _hostile(
        37,
        manifest(_shard(0, "file", "set-00001-of-00003.tmodel\x00.txt")),
        "shard 0's file is 'set-00001-of-00003.tmodel' + NUL + '.txt'",
        ("BAD_NAME",),
        "a NUL in a shard file name: a C string ends there, at the right shard",
    ),
    "shard_file_newline": _hostile(
        37,
        manifest(_shard(0, "file", "set-00001-of-00003.tmodel\n")),
        "shard 0's file is 'set-00001-of-00003.tmodel' and a newline",
        ("BAD_NAME",),
        "a shard file name ending in a newline, which a pattern anchored by '$' lets through",
    ),
    "shard_file_duplicate": _hostile(
        38,
        manifest(_file_of(1, 0)),
        "shard 1's file is shard 0's",
        ("BAD_NAME",),
        "two shard entries naming the same file",
    ),
    "shard_missing": _hostile(
        37,
        manifest(_shard(2, "file", "set-00004-of-00003.tmodel")),
        "shard 2's file is 'set-00004-of-00003.tmodel', which does not exist",
        ("IO_ERROR",),
        "a shard that cannot be opened",
    ),
    # 38 -- shard substitution
    "shard_swapped": _hostile(
        38,
        manifest(_swap_files),
        "shards 0 and 1 trade files (each entry keeps its size, digest and blobs)",
        ("CHECKSUM_MISMATCH",),
        "a shard swapped for another file of the set: its manifest digest is not the one the index lists",
    ),
    "shard_digest": _hostile(
        38,
        manifest(_flip_digest),
        "shard 1's digest has its first bit flipped",
        ("CHECKSUM_MISMATCH",),
        "a shard replaced after the index was written (or from another save): its manifest digest differs",
    ),
    "shard_size": _hostile(
        38,
        manifest(lambda w: w["shards"][1].__setitem__("size", w["shards"][1]["size"] + 64)),
        "shard 1's size is 64 bytes more than its file's",
        ("CHECKSUM_MISMATCH",),
        "a shard whose file size is not the one the index lists",
    ),
    "shard_digest_algorithm": _hostile(
        38,
        manifest(_digest_algorithm),
        "the index's checksum is sha256, each shard digest its xxh3-64 digest zero-padded to 32 bytes",
        ("CHECKSUM_MISMATCH",),
        "shard digests of another algorithm than the index's checksum, byte-equal to the shards' trailer "
        "digest fields",
    ),
    "shard_is_index": _hostile(
        38,
        _names_index,
        "shard 1's entry names set.tmodel, the valid index, with its size and manifest digest",
        ("BAD_LAYOUT",),
        "a shard that is itself an index (checked before its own shards are read)",
    ),
    "shard_is_itself": _hostile(
        38,
        manifest(_shard(0, "file", "shard_is_itself.tmodel")),
        "shard 0's file is 'shard_is_itself.tmodel', this index",
        ("CHECKSUM_MISMATCH",),
        "an index naming itself as a shard: refused by its size and digest before it is read again, so a "
        "reader does not recurse",
    ),
    "shard_tensor_renamed": _hostile(
        38,
        manifest(_tensor_named("w1", "name", "w0")),
        "tensor 'w1' is named 'w0' in the index (its shard still holds 'w1')",
        ("BAD_LAYOUT",),
        "a shard whose tensors are not the ones the index lists for it",
    ),
    "shard_tensors_reordered": _hostile(
        38,
        manifest(_retensored),
        "tensors 'w1' and 'bias' trade places in the index's table (the tree's references follow them)",
        ("BAD_LAYOUT",),
        "a shard whose tensors are the index's in another order",
    ),
    "shard_tensor_offset": _hostile(
        38,
        manifest(_tensor_named("tied_rows", "offset", 0)),
        "tensor 'tied_rows' has offset 0 in the index (its shard states 128)",
        ("BAD_LAYOUT",),
        "a shard tensor whose view differs from the index's",
    ),
    # 39 -- index size lies
    "shard_blob_bigger": _hostile(
        39,
        manifest(_blob_size(0, 0, 64)),
        "shard 0's first blob is declared 64 bytes larger than the shard holds",
        ("BAD_LAYOUT",),
        "a blobs table declaring larger blobs than the shard holds: every extent passes, the shard does not",
    ),
    "shard_blob_smaller": _hostile(
        39,
        manifest(_blob_size(0, 0, -4)),
        "shard 0's first blob is declared 4 bytes smaller than it is",
        ("BAD_TENSOR",),
        "a tensor's extent beyond the blob size the index declares (refused before any shard is opened)",
    ),
    "shard_blob_huge": _hostile(
        39,
        manifest(_shard(0, "blobs", [1 << 40])),
        "shard 0's only blob is declared 2^40 bytes",
        ("LIMIT_EXCEEDED",),
        "a decoded size far beyond what a shard of its size can hold (an allocation bomb)",
    ),
    "shard_blob_beyond_set": _hostile(
        39,
        manifest(_beyond_set),
        "tensor 'bias' refers to blob 5, one past the set's last",
        ("BAD_TENSOR",),
        "a tensor's blob beyond the set's blobs",
    ),
    "shard_unreferenced_blob": _hostile(
        39,
        manifest(lambda w: w["shards"][2]["blobs"].append(64)),
        "shard 2's blobs table lists one blob more, of 64 bytes",
        ("BAD_LAYOUT",),
        "a set blob no tensor refers to (refused before any shard is opened)",
    ),
    "shard_no_blobs": _hostile(
        39,
        manifest(_shard(2, "blobs", [])),
        "shard 2's blobs table is empty",
        ("BAD_LAYOUT",),
        "a shard entry holding no blob",
    ),
    "shard_size_small": _hostile(
        39,
        manifest(_shard(1, "size", 127)),
        "shard 1's size is 127",
        ("BAD_LAYOUT",),
        "a shard size smaller than any container",
    ),
    "shard_digest_length": _hostile(
        39,
        manifest(lambda w: w["shards"][1].__setitem__("digest", w["shards"][1]["digest"][:7])),
        "shard 1's digest is cut to 7 bytes",
        ("BAD_LAYOUT",),
        "a shard digest of another length than the index's checksum",
    ),
    "index_with_blob": _hostile(
        39,
        _with_blob,
        "the index holds a 64-byte raw blob of its own (stored, chunk digest correct)",
        ("BAD_LAYOUT",),
        "an index holding blobs: its tensors refer to its shards' blobs, so its own would be read by some "
        "readers and not by others",
    ),
}
