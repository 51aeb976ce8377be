"""Writing one object as a sharded set (SPEC.md §5.10, §11): shards of at most `max_shard_size` bytes of
tensor data, each a complete container, then the index that lists them.

Rules: blobs go to shards in file order, a new shard starting when the next blob would pass the size (a
blob larger than the size is a shard of its own); tensors that share a blob share its shard. The index is
checked as a reader would check it (with placeholder shard records of the same shape) before any shard is
written, so a save the reader would refuse writes nothing. Each file is replaced atomically, the shards
first and the index last; a save interrupted between them leaves the old index, which then refuses the
replaced shards (CHECKSUM_MISMATCH naming the shard) rather than mix two saves. Shards of an earlier save to
the same target (`<stem>-NNNNN-of-MMMMM<suffix>`) that the new index does not list are removed.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..container import digests
from ..container.atomic import resolve_target
from ..container.files import open_regular
from ..container.framing import HEADER_SIZE, TRAILER_SIZE, check_header, parse_trailer
from ..errors import BadName, InvalidArgument
from ..limits import DEFAULT_LIMITS
from ..manifest.encoding import pack_manifest
from ..manifest.shards import check_shard_file
from ..manifest.wire import BlobWire, ManifestWire, ShardWire, TensorWire
from .progress import Progress, shifted
from .writer import BlobSource, Options, Source, check_written, write_atomic

if TYPE_CHECKING:
    from .encryption import Sealer

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS.update({"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40})
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", re.IGNORECASE)


def parse_size(value: Any) -> int:
    """`max_shard_size` in bytes: an int, or a string as Hugging Face writes it ("5GB" is 5·10^9 bytes,
    "5GiB" 5·2^30)."""
    if type(value) is int and value >= 1:
        return value
    if isinstance(value, str) and (match := _SIZE.fullmatch(value)):
        n = int(float(match.group(1)) * _UNITS[(match.group(2) or "").upper()])
        if n >= 1:
            return n
    raise InvalidArgument(f"max_shard_size must be a positive int or a size such as '5GB', not {value!r}")


def _size_of(src: Source) -> int:
    return len(src.data) if isinstance(src, BlobSource) else src.nbytes


#: the blobs of each shard, from the blobs and the tensor table that points into them
Split = Callable[[Sequence[Source], list[TensorWire]], list[range]]


def runs(sizes: Sequence[int], max_size: int) -> list[range]:
    """Consecutive runs of items of at most `max_size` bytes in all (or one item larger than that)."""
    groups: list[range] = []
    start, size = 0, 0
    for i, n in enumerate(sizes):
        if i > start and size + n > max_size:
            groups.append(range(start, i))
            start, size = i, 0
        size += n
    if start < len(sizes):
        groups.append(range(start, len(sizes)))
    return groups


def by_size(max_size: int) -> Split:
    """Consecutive runs of blobs of at most `max_size` decoded bytes (or one blob)."""

    def split(sources: Sequence[Source], _tensors: list[TensorWire]) -> list[range]:
        return runs([_size_of(src) for src in sources], max_size)

    return split


def by_name(shard_of: dict[str, int]) -> Split:
    """A new shard wherever a blob's first tensor's shard (by name, in `shard_of`) differs from the one
    before: another file's split kept, when its tensors come in shard order."""

    def split(sources: Sequence[Source], tensors: list[TensorWire]) -> list[range]:
        first: dict[int, str] = {}
        for t in tensors:
            if t["blob"] is not None:
                first.setdefault(t["blob"], t["name"])
        groups: list[range] = []
        start = 0
        for i in range(1, len(sources)):
            if shard_of.get(first[i]) != shard_of.get(first[i - 1]):
                groups.append(range(start, i))
                start = i
        if sources:
            groups.append(range(start, len(sources)))
        return groups

    return split


def shard_names(target: str, count: int) -> list[str]:
    """`model.tmodel` -> `model-00001-of-00003.tmodel`, ... (Hugging Face's naming)."""
    stem, suffix = os.path.splitext(os.path.basename(target))
    return [f"{stem}-{k + 1:05d}-of-{count:05d}{suffix}" for k in range(count)]


def _stale(directory: str, target: str, keep: set[str]) -> list[str]:
    stem, suffix = os.path.splitext(os.path.basename(target))
    pattern = re.compile(re.escape(stem) + r"-\d{5,}-of-\d{5,}" + re.escape(suffix))
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [n for n in names if pattern.fullmatch(n) and n not in keep]


def remove_stale_shards(path: str | os.PathLike[str], keep: Sequence[str] = ()) -> None:
    """Remove the shards an earlier save to `path` left that the file now there does not use."""
    target = resolve_target(path)
    directory = os.path.dirname(target)
    for name in _stale(directory, target, set(keep)):
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            os.unlink(os.path.join(directory, name))


def _by_shard(tensors: list[TensorWire], groups: list[range]) -> list[list[TensorWire]]:
    """The index's tensors in each shard, in order, their blobs renumbered within it (empty ones in none)."""
    starts = [g.start for g in groups]
    out: list[list[TensorWire]] = [[] for _ in groups]
    for t in tensors:
        if t["blob"] is not None:
            k = bisect.bisect_right(starts, t["blob"]) - 1
            out[k].append({**t, "blob": t["blob"] - starts[k]})
    return out


def _shard_wire(index: ManifestWire, mine: list[TensorWire]) -> Callable[[list[BlobWire]], ManifestWire]:
    """The manifest of one shard: its blobs, its tensors, a dict of them as its object tree."""
    root = {"dict": [[t["name"], {"tensor": j}] for j, t in enumerate(mine)]}

    def finish(records: list[BlobWire]) -> ManifestWire:
        return {
            **index,
            "blobs": records,
            "tensors": mine,
            "root": root,
            "metadata": {},
            "extensions": {},
            "modules": [],
            "checkpoint": None,
            "shards": [],
        }

    return finish


def _record(path: str, name: str, checksum: str, blobs: list[int]) -> ShardWire:
    """A written shard as the index lists it: its size and the manifest digest of its trailer."""
    fd, size = open_regular(path)
    try:
        flags = check_header(os.pread(fd, HEADER_SIZE, 0))
        raw = os.pread(fd, TRAILER_SIZE, size - TRAILER_SIZE)
    finally:
        os.close(fd)
    trailer = parse_trailer(raw, size, DEFAULT_LIMITS, flags)
    if trailer.digest_name != checksum:
        raise AssertionError(f"shard {name} was written with digest {trailer.digest_name}, not {checksum}")
    return {"file": name, "size": size, "digest": trailer.digest, "blobs": blobs}


def write_sharded(
    path: str | os.PathLike[str],
    sources: Sequence[Source],
    finish: Callable[[list[BlobWire]], ManifestWire],
    options: Options,
    groups: list[range],
    new_seal: Callable[[], Sealer | None],
    progress: Progress | None = None,
) -> None:
    """Write the shards (blobs `groups[k]` in shard k), then the index at `path` (see the module's rules).
    `new_seal` gives each file of an encrypted set its own keys."""
    target = resolve_target(path)
    directory = os.path.dirname(target)
    names = shard_names(target, len(groups))
    for name in names:
        try:
            check_shard_file(name)
        except BadName:
            raise InvalidArgument(
                f"cannot name shards after {os.path.basename(target)!r}: {name!r} is not a name an index "
                "may hold (SPEC.md §5.10): save to another file name"
            ) from None
    index = finish([])
    sizes = [_size_of(s) for s in sources]
    digest_len = digests.digest_length(options.checksum)
    placeholder: list[ShardWire] = [
        {
            "file": n,
            "size": HEADER_SIZE + TRAILER_SIZE,
            "digest": bytes(digest_len),
            "blobs": sizes[g.start : g.stop],
        }
        for n, g in zip(names, groups, strict=True)
    ]
    raw = pack_manifest({**index, "shards": placeholder})
    checked = check_written(raw, HEADER_SIZE, options.seal is not None)
    if options.check is not None:
        options.check(checked)  # the modules rebuild on the meta device, before anything is written
    total, done = sum(sizes), 0
    records: list[ShardWire] = []
    for name, g, mine in zip(names, groups, _by_shard(index["tensors"], groups), strict=True):
        shard_path = os.path.join(directory, name)
        shard_options = replace(options, check=None, seal=new_seal())
        report = shifted(progress, done, total)
        write_atomic(shard_path, sources[g.start : g.stop], _shard_wire(index, mine), shard_options, report)
        records.append(_record(shard_path, name, options.checksum, sizes[g.start : g.stop]))
        done += sum(sizes[g.start : g.stop])

    def finish_index(_blobs: list[BlobWire]) -> ManifestWire:
        return {**index, "shards": records}

    write_atomic(target, [], finish_index, replace(options, check=None))
    remove_stale_shards(target, names)
