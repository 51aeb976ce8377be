"""Conversion between .tmodel, safetensors (single file or Hugging Face sharded index) and torch.save files.

`.pt/.pth/.bin` are read only with `torch.load(..., weights_only=True)`; one it cannot read is BAD_SOURCE
(one holding objects outside its allow-list, UNSUPPORTED_TYPE). torch.save files have no metadata,
so reading one gives none and writing one drops it (the only place metadata is lost). Safetensors mapping
rules are in `safetensors_io`. A whole model written as safetensors is its state dict; `key` picks one entry
of a checkpoint first. A model folder (Hugging Face's layout: `config.json` beside its weights) converts to
a folder: an HF folder's weights become `model.tmodel`, a tmodel folder's `model.safetensors`; the files
that describe the model (`FOLDER_FILES`) are copied as they are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import api
from ..archive.progress import Progress, ProgressArg, progress_for
from ..archive.sharding import by_name, by_size, parse_size, runs
from ..codecs.table import CHOICES
from ..container.atomic import replace_atomically
from ..container.files import open_regular
from ..errors import BadSourceFile, InvalidArgument, UnsupportedType
from .safetensors import (
    index_shards,
    metadata_from_safetensors,
    metadata_to_safetensors,
    naming,
    read_safetensors,
    read_safetensors_index,
    write_safetensors,
    write_safetensors_index,
)

PathLike = str | os.PathLike[str]


# -- torch.save files -------------------------------------------------------------------------------------
def read_torch(path: PathLike) -> Any:
    """Read a .pt/.pth/.bin file with the weights-only unpickler only; its errors become TModelErrors."""
    fd, _ = open_regular(path)
    name = os.fspath(path)
    with os.fdopen(fd, "rb") as f:
        try:
            return torch.load(f, map_location="cpu", weights_only=True)
        except Exception as exc:
            unsafe = _unsafe_globals(f)
            if unsafe:  # told apart by torch's own scan of the pickle, never by its message's wording
                raise UnsupportedType(
                    f"{name!r} holds objects outside the weights-only allow-list: {', '.join(unsafe)}",
                    path=name,
                ) from None
            detail = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
            raise BadSourceFile(
                f"{name!r} is not a readable torch checkpoint: {type(exc).__name__}: {detail}", path=name
            ) from None


def _unsafe_globals(f: Any) -> list[str]:
    """The globals a torch.save file's pickle names that the weights-only unpickler does not allow (torch's
    `get_unsafe_globals_in_checkpoint`); none for a file it cannot scan (a legacy or broken file)."""
    try:
        f.seek(0)
        return sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(f)))
    except Exception:
        return []


def write_torch(obj: Any, path: PathLike) -> None:
    """torch.save a plain object atomically."""
    replace_atomically(path, lambda f: torch.save(obj, f))


# -- convert ------------------------------------------------------------------------------------------------
def _kind(path: PathLike, role: str) -> str:
    name = os.fspath(path).lower()
    if name.endswith(".index.json"):
        return "index"
    for suffix, kind in ((".tmodel", "tmodel"), (".safetensors", "safetensors")):
        if name.endswith(suffix):
            return kind
    if name.endswith((".pt", ".pth", ".bin")):
        return "torch"
    raise InvalidArgument(
        f"cannot tell the {role} format of {os.fspath(path)!r}: use .tmodel, .safetensors, "
        ".safetensors.index.json, .pt, .pth or .bin"
    )


def convert(
    src: PathLike,
    dst: PathLike,
    *,
    codec: str = "auto",
    key: str | None = None,
    progress: ProgressArg = None,
    max_shard_size: int | str | None = None,
) -> None:
    """Convert between formats, chosen by suffix (or between model folders); `codec` applies to .tmodel
    destinations only; `key` picks one entry of the source (`"model"`; a dotted path `"model.backbone"` when
    no entry is named so). `progress=True` draws a bar on a terminal; a callable gets (done, total).
    Sharded sets convert both ways (a Hugging Face `*.safetensors.index.json` and a sharded .tmodel index,
    SPEC.md §5.10): a sharded source keeps its split unless `max_shard_size` is given; a single-file source
    is split by `max_shard_size` (for a .safetensors.index.json destination, "5GB" unless given).

    >>> convert("model.safetensors.index.json", "model.tmodel", codec="bytegroup-zstd")
    >>> convert("model.tmodel", "model.safetensors.index.json", max_shard_size="2GB")
    >>> convert("checkpoint.tmodel", "model.safetensors", key="model")
    """
    limit = None if max_shard_size is None else parse_size(max_shard_size)
    with progress_for(progress, "convert") as report:
        if os.path.isdir(src):
            _convert_folder(Path(src), Path(dst), codec, key, report, limit)
        else:
            _convert(src, dst, codec, key, report, limit)


#: what a model folder holds beside its weights, copied as it is
FOLDER_FILES = ("config.json", "generation_config.json")
#: a folder's weights file by format, in the order a source folder is searched
FOLDER_WEIGHTS = {
    "tmodel": "model.tmodel",
    "safetensors": "model.safetensors",
    "index": "model.safetensors.index.json",
    "torch": "pytorch_model.bin",
}


def _convert_folder(
    src: Path, dst: Path, codec: str, key: str | None, progress: Progress | None, limit: int | None
) -> None:
    if not (src / "config.json").is_file():
        raise BadSourceFile(f"{os.fspath(src)!r} is not a model folder: it has no config.json")
    kind = next((k for k, name in FOLDER_WEIGHTS.items() if (src / name).is_file()), None)
    if kind is None:
        raise BadSourceFile(f"{os.fspath(src)!r} holds none of {', '.join(FOLDER_WEIGHTS.values())}")
    if dst.exists() and not dst.is_dir():
        raise InvalidArgument(f"{os.fspath(dst)!r} is not a folder: a model folder converts to a folder")
    dst.mkdir(parents=True, exist_ok=True)
    target = "tmodel"
    if kind == "tmodel":  # a sharded .tmodel (or a split asked for) becomes Hugging Face's sharded layout
        with api.open_file(src / FOLDER_WEIGHTS[kind]) as f:
            target = "index" if f.reader.shards is not None or limit is not None else "safetensors"
    _convert(src / FOLDER_WEIGHTS[kind], dst / FOLDER_WEIGHTS[target], codec, key, progress, limit)
    for name in FOLDER_FILES:
        if (src / name).is_file():
            _copy(src / name, dst / name)


def _copy(src: Path, dst: Path) -> None:
    data = src.read_bytes()

    def write(f: Any) -> None:
        f.write(data)

    replace_atomically(dst, write)


def _convert(
    src: PathLike,
    dst: PathLike,
    codec: str,
    key: str | None,
    progress: Progress | None,
    limit: int | None = None,
) -> None:
    src_kind, dst_kind = _kind(src, "source"), _kind(dst, "destination")
    if limit is not None and dst_kind in ("safetensors", "torch"):
        raise InvalidArgument("max_shard_size applies to a .tmodel or .safetensors.index.json destination")
    if codec not in CHOICES:
        raise InvalidArgument(f"codec must be one of {CHOICES}, not {codec!r}")
    if codec != "auto" and dst_kind != "tmodel":
        raise InvalidArgument(f"codec {codec!r} applies only to a .tmodel destination")
    obj, metadata, split_of = _read(src, src_kind, progress)
    if key is not None:
        obj = pick(obj, key)
    kept = split_of if limit is None and key is None else None
    if kept is not None and isinstance(obj, dict):  # tensors in shard order, so each shard is one run
        obj = dict(sorted(obj.items(), key=lambda item: kept.get(item[0], 0) if type(item[0]) is str else 0))
    if dst_kind == "tmodel":
        split = by_size(limit) if limit is not None else None if kept is None else by_name(kept)
        api.save_split(obj, dst, split, metadata=metadata, codec=codec, progress=progress)
    elif dst_kind == "index":
        tensors = _flat_tensors(obj)
        shards = _split_tensors(tensors, kept, DEFAULT_SHARD if limit is None else limit)
        write_safetensors_index(shards, dst, metadata=metadata, progress=progress)
    elif dst_kind == "safetensors":
        write_safetensors(
            _flat_tensors(obj), dst, metadata=metadata_to_safetensors(metadata), progress=progress
        )
    else:
        write_torch(obj, dst)


#: a source: its object, its metadata, and each tensor's shard when it is a sharded set (else None)
Loaded = tuple[Any, dict[str, Any], dict[str, int] | None]


def _read(src: PathLike, kind: str, progress: Progress | None) -> Loaded:
    with naming(src):  # an error while reading the source names it (a shard's names the shard)
        return _read_source(src, kind, progress)


def _read_source(src: PathLike, kind: str, progress: Progress | None) -> Loaded:
    if kind == "tmodel":
        with api.open_file(src) as f:
            return f.load(), f.metadata, _tmodel_split(f)
    if kind == "safetensors":
        tensors, raw_meta = read_safetensors(src, progress=progress)
        return tensors, metadata_from_safetensors(raw_meta), None
    if kind == "index":
        tensors, metadata = read_safetensors_index(src, progress=progress)
        return tensors, metadata, index_shards(src)
    return read_torch(src), {}, None


#: the shard size of a Hugging Face sharded destination when the source has no split and none is given
DEFAULT_SHARD = 5 * 10**9


def _tmodel_split(f: api.TModelFile) -> dict[str, int] | None:
    """Each tensor's shard in an open .tmodel index, or None for a single file (empty tensors, in no
    shard, go with the first)."""
    shards = f.reader.shards
    if shards is None:
        return None
    named = enumerate(f.reader.validated.tensors)
    return {t.name: shards.tensor_shard[i] for i, t in named if shards.tensor_shard[i] >= 0}


def _split_tensors(
    tensors: dict[str, torch.Tensor], kept: dict[str, int] | None, limit: int
) -> list[dict[str, torch.Tensor]]:
    """The shards of a safetensors set: the source's split, or runs of at most `limit` bytes."""
    if kept is not None:
        by_shard: dict[int, dict[str, torch.Tensor]] = {}
        for name, t in tensors.items():
            by_shard.setdefault(kept.get(name, 0), {})[name] = t
        return [by_shard[k] for k in sorted(by_shard)]
    items = list(tensors.items())
    groups = runs([t.numel() * t.element_size() for _, t in items], limit)
    return [dict(items[g.start : g.stop]) for g in groups] or [{}]


def pick(obj: Any, key: str) -> Any:
    """The entry `key` of a checkpoint (a dict), or the entry a dotted path names when no entry is named
    `key`; INVALID_ARGUMENT naming the entries there are."""
    if isinstance(obj, dict) and key in obj:
        return obj[key]
    at = obj
    for i, part in enumerate(key.split(".")):
        if not isinstance(at, dict) or part not in at:
            where = ".".join(key.split(".")[:i]) or "the source"
            keys = [k for k in at if isinstance(k, str)] if isinstance(at, dict) else []
            shown = ", ".join(repr(k) for k in keys[:20]) + (", ..." if len(keys) > 20 else "")
            what = f"its entries are {shown}" if keys else f"it is a {type(at).__name__}, not a dict"
            raise InvalidArgument(f"--key {key!r}: {where} has no entry {part!r}; {what}")
        at = at[part]
    return at


def _flat_tensors(obj: Any) -> dict[str, torch.Tensor]:
    """safetensors holds one flat str -> tensor map (a model: its state dict); anything else is refused,
    naming the first misfit."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise UnsupportedType(
            f"safetensors holds a flat dict of str -> tensor; the source is a {type(obj).__name__}"
        )
    for key, value in obj.items():
        if type(key) is not str or not isinstance(value, torch.Tensor):
            raise UnsupportedType(
                f"safetensors holds a flat dict of str -> tensor; entry {key!r} is a {type(value).__name__}"
            )
    return dict(obj)
