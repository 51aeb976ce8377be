"""Checking a whole DCP checkpoint folder (`tmodel verify DIR`): the metadata, then every shard."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata

from ..errors import BadValue, TModelError
from .storage import _values, in_shard, open_shard, read_metadata_file


@dataclass(frozen=True)
class Verified:
    """What `verify_checkpoint` checked."""

    shards: int
    items: int
    bytes_checked: int


def verify_checkpoint(folder: str | os.PathLike[str]) -> Verified:
    """Check the metadata container's fields, then each shard: its recorded manifest digest, every chunk
    digest (decoding every chunk), and that it holds every item the metadata puts in it with the recorded
    dtype and chunk size. Raises the first problem as a TModelError naming its file."""
    root = Path(folder)
    metadata, shards = read_metadata_file(root)
    by_file: dict[str, list[tuple[str, Any]]] = {name: [] for name in shards}
    for index, info in metadata.storage_data.items():
        by_file[info["file"]].append((index.fqn, info))
    checked = 0
    for name, items in sorted(by_file.items()):
        try:
            checked += _verify_shard(root, name, shards[name], items, metadata)
        except TModelError as exc:
            raise in_shard(exc, name, root / name) from None
    return Verified(len(shards), len(metadata.storage_data), checked)


def _verify_shard(
    root: Path, name: str, recorded: dict[str, str], items: list[tuple[str, Any]], metadata: Metadata
) -> int:
    """One shard checked whole (errors are prefixed with its name by the caller); returns its blob bytes."""
    with open_shard(root, name, recorded) as f:
        f.verify()
        values = _values(f)
        for fqn, info in items:
            if "value" in info:
                if info["value"] not in values:
                    raise BadValue(f"no value {info['value']!r}")
                continue
            key = f"tensors.{info['tensor']}"
            md = metadata.state_dict_metadata[fqn]
            if key not in f or not isinstance(md, TensorStorageMetadata):
                raise BadValue(f"no tensor {key!r}")
            sl = f.get_slice(key)
            sizes = {tuple(c.sizes) for c in md.chunks}
            if sl.get_dtype() != md.properties.dtype or tuple(sl.get_shape()) not in sizes:
                raise BadValue(f"tensor {key!r} is not of the recorded dtype and chunk size")
        return sum(b.nbytes for b in f.manifest.blobs)
