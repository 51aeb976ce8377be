"""Checking a whole DCP checkpoint folder (`tmodel verify DIR`): the metadata, then every shard."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch.distributed.checkpoint.metadata import TensorStorageMetadata

from ..errors import BadValue
from .storage import _values, open_shard, read_metadata_file


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
    by_file: dict[str, list[tuple[str, object]]] = {name: [] for name in shards}
    for index, info in metadata.storage_data.items():
        by_file[info["file"]].append((index.fqn, info))
    checked = 0
    for name, items in sorted(by_file.items()):
        with open_shard(root, name, shards[name]) as f:
            f.verify()
            checked += sum(b.nbytes for b in f.manifest.blobs)
            values = _values(f)
            for fqn, info in items:
                assert isinstance(info, dict)
                if "value" in info:
                    if info["value"] not in values:
                        raise BadValue(f"shard {name} has no value {info['value']!r}", path=f.reader.path)
                    continue
                key = f"tensors.{info['tensor']}"
                md = metadata.state_dict_metadata[fqn]
                if key not in f or not isinstance(md, TensorStorageMetadata):
                    raise BadValue(f"shard {name} has no tensor {key!r}", path=f.reader.path)
                sl = f.get_slice(key)
                sizes = {tuple(c.sizes) for c in md.chunks}
                if sl.get_dtype() != md.properties.dtype or tuple(sl.get_shape()) not in sizes:
                    raise BadValue(
                        f"shard {name}: tensor {key!r} is not of the recorded dtype and chunk size",
                        path=f.reader.path,
                    )
    return Verified(len(shards), len(metadata.storage_data), checked)
