"""`TModelWriter` / `TModelReader`: DCP storage as one tmodel container per rank and a metadata container.

Each rank writes `__{rank}_0.tmodel`, whose object tree is `{"tensors": {name: tensor}, "values": {fqn:
value}}`: the rank's write items' tensors as DCP gives them (a shard is a plain local tensor) and its
non-tensor items as tmodel values (with `TModelSavePlanner`; bytes otherwise, never a pickle). The
coordinator writes `.metadata.tmodel` (`layout`), which records every shard's manifest digest, so a shard
from another save is CHECKSUM_MISMATCH naming it. Reads decode only the chunks each read item needs.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import (
    LoadItemType,
    LoadPlan,
    LoadPlanner,
    ReadItem,
    SavePlan,
    SavePlanner,
    WriteItem,
    WriteItemType,
)
from torch.distributed.checkpoint.storage import StorageReader, StorageWriter, WriteResult
from torch.futures import Future

from ..api import TModelFile, load, open_file, save
from ..errors import BadValue, ChecksumMismatch, InvalidArgument, TModelError, UnsupportedType
from ..limits import DEFAULT_LIMITS
from ..manifest.names import check_name
from . import layout


def _done(value: Any) -> Future[Any]:
    fut: Future[Any] = Future()
    fut.set_result(value)
    return fut


def _tensor_name(fqn: str, i: int, taken: set[str]) -> str:
    """The key of an item's tensor: its fqn when `tensors.<fqn>` is a valid, free tensor name."""
    try:
        check_name(f"tensors.{fqn}", DEFAULT_LIMITS)
        name = fqn if fqn not in taken and not fqn.startswith("item.") else f"item.{i}"
    except TModelError:
        name = f"item.{i}"
    taken.add(name)
    return name


def _local(t: torch.Tensor) -> torch.Tensor:
    """A CPU tensor owning exactly its bytes (a view of a larger storage would save all of it)."""
    t = t.detach().cpu()
    if not t.is_contiguous() or t.untyped_storage().nbytes() != t.nbytes:
        t = t.contiguous().clone()
    return t


class TModelWriter(StorageWriter):
    """`dcp.save(state, storage_writer=TModelWriter(path), planner=TModelSavePlanner())`."""

    def __init__(self, path: str | os.PathLike[str], *, codec: str = "auto", checksum: str | None = None):
        self.path = Path(path)
        self.codec = codec
        self.checksum = checksum
        self.save_id = str(uuid.uuid4())
        self.rank = 0

    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        if checkpoint_id:
            self.path = Path(checkpoint_id)
        self.save_id = str(uuid.uuid4())

    def set_up_storage_writer(self, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        self.rank = int(kwargs.get("rank") or 0)

    def storage_meta(self) -> StorageMeta | None:
        return StorageMeta(checkpoint_id=str(self.path), save_id=self.save_id)

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        self.path.mkdir(parents=True, exist_ok=True)
        return plan

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        return [dataclasses.replace(p, storage_data=f"__{i}_") for i, p in enumerate(plans)]

    @staticmethod
    def _value(item: WriteItem, planner: SavePlanner) -> Any:
        """A BYTE_IO item's object, from a planner that gives it (TModelSavePlanner's `resolve_value`);
        DCP's default planner would hand over a pickle, which is refused."""
        resolve = getattr(planner, "resolve_value", None)
        if resolve is None:
            raise UnsupportedType(
                f"{item.index.fqn!r} is no tensor, and this planner would store it as a pickle: save with "
                "planner=tmodel.distributed.TModelSavePlanner()"
            )
        return resolve(item)

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        file = layout.shard_name(str(plan.storage_data), 0)
        tensors: dict[str, torch.Tensor] = {}
        values: dict[str, Any] = {}
        results: list[tuple[WriteItem, int, dict[str, Any]]] = []
        taken: set[str] = set()
        for i, item in enumerate(plan.items):
            if item.type == WriteItemType.BYTE_IO:
                values[item.index.fqn] = self._value(item, planner)
                results.append((item, 0, {"file": file, "value": item.index.fqn}))
            else:
                data = planner.resolve_data(item)
                assert isinstance(data, torch.Tensor)
                name = _tensor_name(item.index.fqn, i, taken)
                tensors[name] = _local(data)
                results.append((item, tensors[name].nbytes, {"file": file, "tensor": name}))
        shard = {"tensors": tensors, "values": values}
        meta = {"tmodel.dcp": {"rank": self.rank, "save_id": self.save_id}}
        save(shard, self.path / file, metadata=meta, codec=self.codec, checksum=self.checksum)
        with open_file(self.path / file) as f:
            digest = {"checksum": f.reader.manifest_checksum, "digest": f.reader.manifest_digest.hex()}
        return _done([WriteResult(item.index, n, {**info, "shard": digest}) for item, n, info in results])

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        shards: dict[str, dict[str, str]] = {}
        storage: dict[Any, dict[str, Any]] = {}
        for rank_results in results:
            for r in rank_results:
                info = dict(r.storage_data)
                shards[info["file"]] = info.pop("shard")
                storage[r.index] = info
        metadata = dataclasses.replace(
            metadata, storage_data=storage, storage_meta=self.storage_meta(), version="1.0.0"
        )
        save(layout.to_plain(metadata, shards), self.path / layout.METADATA_FILE)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        return "://" not in str(checkpoint_id)


def read_metadata_file(folder: Path) -> tuple[Metadata, dict[str, dict[str, str]]]:
    """The checkpoint's Metadata and recorded shard digests, every field checked."""
    path = folder / layout.METADATA_FILE
    raw = load(path)
    return layout.from_plain(raw, str(path))


def open_shard(folder: Path, name: str, recorded: dict[str, str]) -> TModelFile:
    """A shard opened and checked against the digest the metadata recorded for it."""
    path = folder / name
    f = open_file(path)
    r = f.reader
    if r.manifest_checksum != recorded["checksum"] or r.manifest_digest.hex() != recorded["digest"]:
        f.close()
        raise ChecksumMismatch(
            f"shard {name} is not the file this checkpoint wrote (its manifest digest differs from the "
            "one recorded in the metadata: a shard of another save?)",
            path=path,
        )
    return f


def in_shard(exc: TModelError, name: str, path: Path) -> TModelError:
    """The same error, its message starting with the shard's file name (DCP and the CLI show only the
    message) and its `path` set."""
    if exc.message.startswith(f"shard {name}"):
        return exc.add_context(path=path)
    named = type(exc)(f"shard {name}: {exc.message}", **exc.context)
    return named.add_context(path=path)


def _values(f: TModelFile) -> dict[str, Any]:
    root = f.load(map_location="meta")
    if not isinstance(root, dict) or not isinstance(root.get("values"), dict):
        raise BadValue("a DCP shard's object tree has no 'values' map", path=f.reader.path)
    values: dict[str, Any] = root["values"]
    return values


def read_tensor(f: TModelFile, name: str, req: ReadItem, md: Any) -> torch.Tensor:
    """The part of a stored chunk one read item needs, decoding only the chunks it lives in."""
    key = f"tensors.{name}"
    sl = f.get_slice(key)
    if sl.get_dtype() != md.properties.dtype:
        raise BadValue(f"tensor {key!r} is {sl.get_dtype()}, not {md.properties.dtype}", path=f.reader.path)
    shape = sl.get_shape()
    if len(shape) != len(req.storage_offsets) or any(
        o + n > s for o, n, s in zip(req.storage_offsets, req.lengths, shape, strict=True)
    ):
        raise BadValue(
            f"tensor {key!r} of shape {shape} does not hold the requested part", path=f.reader.path
        )
    index = tuple(slice(o, o + n) for o, n in zip(req.storage_offsets, req.lengths, strict=True))
    return sl[index]


class TModelReader(StorageReader):
    """`dcp.load(state, storage_reader=TModelReader(path), planner=TModelLoadPlanner())`."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.load_id = str(uuid.uuid4())
        self.storage_data: dict[Any, dict[str, Any]] = {}
        self.shards: dict[str, dict[str, str]] = {}
        self.metadata: Metadata | None = None

    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        self.storage_data = {}
        if checkpoint_id:
            self.path = Path(checkpoint_id)
        self.load_id = str(uuid.uuid4())

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        """The checkpoint's Metadata. DCP reports a failure here as an AssertionError holding only the
        message, so the message carries the code and the file (`tmodel verify FOLDER` raises the error)."""
        try:
            metadata, self.shards = read_metadata_file(self.path)
        except TModelError as exc:
            where = self.path / layout.METADATA_FILE
            coded = type(exc)(f"{where}: [{exc.code}] {exc.message}", **exc.context)
            raise coded.add_context(path=where) from None
        assert metadata.storage_meta is not None
        metadata.storage_meta.checkpoint_id = str(self.path)
        metadata.storage_meta.load_id = self.load_id
        return metadata

    def set_up_storage_reader(
        self, metadata: Metadata, is_coordinator: bool, *args: Any, **kwargs: Any
    ) -> None:
        self.storage_data = metadata.storage_data
        self.metadata = metadata
        if not self.shards:  # a metadata object given without read_metadata
            self.shards = {i["file"]: {} for i in self.storage_data.values()}

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        return plan

    def prepare_global_plan(self, plans: list[LoadPlan]) -> list[LoadPlan]:
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        assert self.metadata is not None
        per_file: dict[str, list[ReadItem]] = {}
        for req in plan.items:
            per_file.setdefault(self.storage_data[req.storage_index]["file"], []).append(req)
        for name, reqs in per_file.items():
            try:
                with open_shard(self.path, name, self.shards[name]) as f:
                    self._read_shard(f, reqs, planner)
            except TModelError as exc:
                raise in_shard(exc, name, self.path / name) from None
        return _done(None)

    def _read_shard(self, f: TModelFile, reqs: list[ReadItem], planner: LoadPlanner) -> None:
        assert self.metadata is not None
        values: dict[str, Any] | None = None
        for req in reqs:
            info = self.storage_data[req.storage_index]
            if req.type == LoadItemType.BYTE_IO:
                values = _values(f) if values is None else values
                if info["value"] not in values:
                    raise BadValue(f"a DCP shard has no value {info['value']!r}", path=f.reader.path)
                self._load_value(req, values[info["value"]], planner)
                continue
            md = self.metadata.state_dict_metadata[req.storage_index.fqn]
            tensor = read_tensor(f, info["tensor"], req, md)
            target = planner.resolve_tensor(req).detach()
            if target.size() != tensor.size():
                raise BadValue(
                    f"{req.storage_index.fqn!r}: read {list(tensor.size())}, need {list(target.size())}"
                )
            target.copy_(tensor)
            planner.commit_tensor(req, target)

    @staticmethod
    def _load_value(req: ReadItem, value: Any, planner: LoadPlanner) -> None:
        load_value = getattr(planner, "load_value", None)
        if load_value is None:
            raise InvalidArgument(
                f"{req.dest_index.fqn!r} is stored as a tmodel value: load with "
                "planner=tmodel.distributed.TModelLoadPlanner()"
            )
        load_value(req, value)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        return (Path(checkpoint_id) / layout.METADATA_FILE).is_file()


__all__ = ["TModelReader", "TModelWriter"]
