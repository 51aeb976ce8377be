"""tmodel.distributed: DCP save / load through tmodel containers, in one process (no_dist) and with gloo
workers (tests/dcp_worker.py) at world sizes 1, 2 and 4, resharding between them; shards changed or
swapped in from another save are coded errors naming the shard; no file holds a pickle."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException

import tmodel
from tmodel.cli.main import main
from tmodel.container.framing import MAGIC
from tmodel.distributed import (
    TModelLoadPlanner,
    TModelReader,
    TModelSavePlanner,
    TModelWriter,
    verify_checkpoint,
)
from tmodel.errors import TModelError

sys.path.insert(0, str(Path(__file__).parent))
from dcp_worker import expected

WORKER = Path(__file__).parent / "dcp_worker.py"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def save(state: dict[str, Any], folder: Path, **options: Any) -> None:
    dcp.save(state, storage_writer=TModelWriter(folder, **options), planner=TModelSavePlanner(), no_dist=True)


def load(state: dict[str, Any], folder: Path) -> None:
    dcp.load(state, storage_reader=TModelReader(folder), planner=TModelLoadPlanner(), no_dist=True)


def zeros_like(state: Any) -> Any:
    """A load target of the same tree: tensors zeroed, other leaves None."""
    if isinstance(state, dict):
        return {k: zeros_like(v) for k, v in state.items()}
    return torch.zeros_like(state) if isinstance(state, torch.Tensor) else None


def failure(exc: pytest.ExceptionInfo[CheckpointException]) -> TModelError:
    """The one rank's error DCP wrapped."""
    (err, _trace), *_ = exc.value.failures.values()
    assert isinstance(err, TModelError), err
    return err


def run_workers(world: int, folder: Path, actions: str, tmp: Path) -> None:
    init = tmp / f"init-{world}-{actions}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(r), str(world), str(init), str(folder), actions],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for r, (p, (out, err)) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0, err[-3000:]
        assert out.split() == (["ok", str(r)] if actions != "save" else []), out


def check_full(state: dict[str, Any]) -> None:
    for key, value in expected().items():
        got = state[key]
        if isinstance(value, torch.Tensor):
            assert got.dtype == value.dtype and got.shape == value.shape, key
            assert torch.equal(got, value), key
        else:
            assert got == value, key


def test_round_trip_in_one_process(tmp_path: Path) -> None:
    state = {
        **expected(),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "mask": torch.arange(10) % 3 == 0,
        "empty": torch.zeros(0, 4),
        "view": torch.arange(40, dtype=torch.int16).reshape(5, 8)[1:4, ::2],
    }
    save(state, tmp_path)
    assert sorted(os.listdir(tmp_path)) == [".metadata.tmodel", "__0_0.tmodel"]
    back = zeros_like(state)
    load(back, tmp_path)
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            assert back[key].dtype == value.dtype and back[key].shape == value.shape, key
            assert torch.equal(back[key], value), key
        else:
            assert back[key] == value, key
    # the shard is a complete tmodel file of its own: the rank's tensors and values, readable directly
    shard = tmodel.load(tmp_path / "__0_0.tmodel")
    assert torch.equal(shard["tensors"]["w"], state["w"])
    assert shard["values"] == {"step": 7, "cfg.betas": (0.9, 0.99), "cfg.name": "adamw"}


def test_no_file_holds_a_pickle(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    save({"model": model.state_dict(), "optim": opt.state_dict()}, tmp_path, codec="raw")
    for path in tmp_path.rglob("*"):
        data = path.read_bytes()
        assert data.startswith(MAGIC), path  # every file is a tmodel container
        for marker in (b"_rebuild_tensor", b"torch._utils", b"collections\nOrderedDict", b"\x80\x02c"):
            assert marker not in data, (path, marker)
    assert not (tmp_path / ".metadata").exists()
    # bytes items are tmodel values, decoded without pickle
    values = tmodel.load(tmp_path / "__0_0.tmodel")["values"]
    assert values["optim.param_groups.0.betas"] == (0.9, 0.999)
    assert values["optim.param_groups.0.params"] == [0, 1]


def test_model_and_adamw_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.8, 0.95), weight_decay=0.1)
    for _ in range(2):
        model(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
    saved = {"model": model.state_dict(), "optim": opt.state_dict()}
    save(saved, tmp_path)
    target = copy.deepcopy(saved)
    for t in [*target["model"].values(), *(v for s in target["optim"]["state"].values() for v in s.values())]:
        t.zero_()
    target["optim"]["param_groups"][0].update(lr=1.0, betas=(0.0, 0.0), weight_decay=0.0)
    load(target, tmp_path)
    for k, v in saved["model"].items():
        assert torch.equal(target["model"][k], v), k
    for i, s in saved["optim"]["state"].items():
        for k, v in s.items():
            got = target["optim"]["state"][i][k]
            assert got.dtype == v.dtype and torch.equal(got, v), (i, k)
    assert target["optim"]["param_groups"] == saved["optim"]["param_groups"]
    assert target["optim"]["param_groups"][0]["betas"] == (0.8, 0.95)


def test_two_ranks_resharded_to_one(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    run_workers(2, ckpt, "save,load", tmp_path)  # saved and loaded at 2 ranks
    assert sorted(os.listdir(ckpt)) == [".metadata.tmodel", "__0_0.tmodel", "__1_0.tmodel"]
    full = expected()
    for rank in (0, 1):  # each rank's file is independently readable and holds that rank's rows
        shard = tmodel.load(ckpt / f"__{rank}_0.tmodel")
        assert torch.equal(shard["tensors"]["w"], full["w"][4 * rank : 4 * rank + 4])  # type: ignore[index]
        assert torch.equal(shard["tensors"]["h"], full["h"][4 * rank : 4 * rank + 4])  # type: ignore[index]
    assert verify_checkpoint(ckpt).shards == 2
    back = zeros_like(full)
    load(back, ckpt)  # at world size 1
    check_full(back)


def test_saved_at_one_two_or_four_ranks_loads_at_one_two_three_and_four(tmp_path: Path) -> None:
    """The whole matrix: rows 8 and 7 split by 1, 2 or 4 ranks on save and by 1, 2, 3 or 4 on load (at 3,
    rows 3, 3, 2 and 3, 3, 1: every rank's piece straddles the saved ones); DTensors Shard(0) and
    Replicate, plain values; world size 1 loads in this process, into plain tensors. Each load world loads
    the three saves in one process group."""
    saves = {n: tmp_path / f"saved-at-{n}" for n in (1, 2, 4)}
    save(expected(), saves[1])
    for n in (2, 4):
        run_workers(n, saves[n], "save", tmp_path)
    for n, ckpt in saves.items():
        assert len(list(ckpt.glob("__*_0.tmodel"))) == n and verify_checkpoint(ckpt).shards == n
        back = zeros_like(expected())
        load(back, ckpt)
        check_full(back)
    for world in (2, 3, 4):
        run_workers(world, Path(os.pathsep.join(map(str, saves.values()))), "load", tmp_path)


def test_a_part_decodes_only_the_chunks_it_lies_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rank's part of a saved tensor (the rows a resharded load asks for) decodes the chunks those rows
    live in, not the whole blob: rows 1024..2047 of 4096 rows of 4 KiB, in 4 MiB chunks, are chunk 1."""
    from torch.distributed.checkpoint.metadata import MetadataIndex
    from torch.distributed.checkpoint.planner import LoadItemType, ReadItem

    from tmodel.archive.reader import Reader
    from tmodel.distributed.storage import open_shard, read_metadata_file, read_tensor

    big = torch.arange(4096 * 1024, dtype=torch.float32).reshape(4096, 1024)
    save({"big": big}, tmp_path)
    metadata, recorded = read_metadata_file(tmp_path)
    index = MetadataIndex("big", torch.Size([0, 0]))
    req = ReadItem(
        LoadItemType.TENSOR, index, torch.Size([0, 0]), index, torch.Size([1024, 0]), torch.Size([1024, 1024])
    )
    decoded: list[int] = []
    real = Reader._decode_chunk

    def counting(self: Reader, b: Any, blob: int, j: int, *args: Any, **kwargs: Any) -> None:
        decoded.append(j)
        real(self, b, blob, j, *args, **kwargs)

    monkeypatch.setattr(Reader, "_decode_chunk", counting)
    info = metadata.storage_data[index]
    with open_shard(tmp_path, info["file"], recorded[info["file"]]) as f:
        part = read_tensor(f, info["tensor"], req, metadata.state_dict_metadata["big"])
        assert len(f.manifest.blobs[0].chunks) == 4
    assert torch.equal(part, big[1024:2048]) and decoded == [1]


def test_fsdp2_model_and_adamw_at_two_ranks(tmp_path: Path) -> None:
    run_workers(2, tmp_path / "ckpt", "fsdp", tmp_path)
    assert verify_checkpoint(tmp_path / "ckpt").shards == 2


def test_async_save(tmp_path: Path) -> None:
    future = dcp.async_save(
        expected(), storage_writer=TModelWriter(tmp_path), planner=TModelSavePlanner(), no_dist=True
    )
    future.result()  # type: ignore[union-attr]
    back = zeros_like(expected())
    load(back, tmp_path)
    check_full(back)


def test_changed_shard_is_named(tmp_path: Path) -> None:
    save(expected(), tmp_path, codec="raw")
    shard = tmp_path / "__0_0.tmodel"
    data = bytearray(shard.read_bytes())
    data[64] ^= 1  # the first byte of the first blob
    shard.write_bytes(bytes(data))
    with pytest.raises(CheckpointException) as exc:
        load(zeros_like(expected()), tmp_path)
    err = failure(exc)
    assert err.code == "CHECKSUM_MISMATCH" and err.path == str(shard)
    assert str(err) == "shard __0_0.tmodel: blob 0 chunk 0: checksum mismatch"


def test_shard_of_another_save_is_refused(tmp_path: Path) -> None:
    other = {**expected(), "w": torch.ones(8, 3)}
    save(expected(), tmp_path / "a")
    save(other, tmp_path / "b")
    shutil.copyfile(tmp_path / "b" / "__0_0.tmodel", tmp_path / "a" / "__0_0.tmodel")
    with pytest.raises(CheckpointException) as exc:
        load(zeros_like(expected()), tmp_path / "a")
    err = failure(exc)
    assert err.code == "CHECKSUM_MISMATCH" and err.path == str(tmp_path / "a" / "__0_0.tmodel")
    assert "shard __0_0.tmodel is not the file this checkpoint wrote" in str(err)


def test_default_planner_would_pickle_and_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointException) as exc:
        dcp.save({"step": 3}, storage_writer=TModelWriter(tmp_path), no_dist=True)
    assert failure(exc).code == "UNSUPPORTED_TYPE"
    save({"step": 3}, tmp_path)
    with pytest.raises(CheckpointException) as exc:
        dcp.load({"step": 0}, storage_reader=TModelReader(tmp_path), no_dist=True)
    assert failure(exc).code == "INVALID_ARGUMENT"


def _edit(plain: dict[str, Any], what: str) -> None:
    state, storage = plain["state"], plain["storage"]
    if what == "dtype":
        state["w"]["dtype"] = "float99"
    elif what == "size":
        state["w"]["size"] = [8, -3]
    elif what == "bool_size":
        state["w"]["size"] = [True, 3]
    elif what == "chunk_bounds":
        state["w"]["chunks"][0]["offsets"] = [1, 0]
    elif what == "chunk_dims":
        state["w"]["chunks"][0]["sizes"] = [8]
    elif what == "kind":
        state["step"]["kind"] = "pickle"
    elif what == "extra":
        plain["extra"] = 1
    elif what == "format":
        plain["format"] = "other"
    elif what == "shard_name":
        plain["shards"]["../x.tmodel"] = plain["shards"].pop("__0_0.tmodel")
    elif what == "missing_storage":
        del storage[0]
    elif what == "storage_file":
        storage[0]["file"] = "__9_0.tmodel"
    elif what == "planner":
        plain["planner"]["w"] = [1.5]
    elif what == "digest":
        plain["shards"]["__0_0.tmodel"]["digest"] = "XYZ"
    elif what == "state_key":
        state[3] = {"kind": "bytes"}
    elif what == "storage_entry":
        storage[0] = [1]


EDITS = [
    "dtype",
    "size",
    "bool_size",
    "chunk_bounds",
    "chunk_dims",
    "kind",
    "extra",
    "format",
    "shard_name",
    "missing_storage",
    "storage_file",
    "planner",
    "digest",
    "state_key",
    "storage_entry",
]


def test_a_damaged_metadata_file_names_its_code_through_dcp(tmp_path: Path) -> None:
    """DCP reports a metadata read failure by its message alone: the code and the file are in it."""
    save(expected(), tmp_path)
    meta = tmp_path / ".metadata.tmodel"
    data = bytearray(meta.read_bytes())
    data[100] ^= 1
    meta.write_bytes(bytes(data))
    with pytest.raises((AssertionError, CheckpointException)) as wrapped:  # DCP's wrapper, by version
        load(zeros_like(expected()), tmp_path)
    assert f"{meta}: [CHECKSUM_MISMATCH] manifest checksum mismatch" in str(wrapped.value)
    with pytest.raises(TModelError) as err:
        TModelReader(tmp_path).read_metadata()
    assert err.value.code == "CHECKSUM_MISMATCH" and err.value.path == str(meta)


@pytest.mark.parametrize("what", EDITS)
def test_bad_metadata_is_bad_value(tmp_path: Path, what: str) -> None:
    save(expected(), tmp_path)
    path = tmp_path / ".metadata.tmodel"
    plain = tmodel.load(path)
    _edit(plain, what)
    tmodel.save(plain, path)
    with pytest.raises(TModelError) as exc:
        TModelReader(tmp_path).read_metadata()
    assert exc.value.code == "BAD_VALUE" and exc.value.path == str(path)


def test_cli_verify_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save(expected(), tmp_path, codec="raw")
    assert main(["verify", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {tmp_path} (DCP checkpoint: 1 shards, 6 items, ")
    shard = tmp_path / "__0_0.tmodel"
    data = bytearray(shard.read_bytes())
    data[64] ^= 1
    shard.write_bytes(bytes(data))
    assert main(["verify", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error[CHECKSUM_MISMATCH]: ") and "__0_0.tmodel" in err


def test_cli_verify_swapped_shard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save(expected(), tmp_path / "a")
    save({**expected(), "step": 8}, tmp_path / "b")
    shutil.copyfile(tmp_path / "b" / "__0_0.tmodel", tmp_path / "a" / "__0_0.tmodel")
    assert main(["verify", str(tmp_path / "a")]) == 1
    assert capsys.readouterr().err.startswith("error[CHECKSUM_MISMATCH]: shard __0_0.tmodel is not")


def test_readme_example_runs() -> None:
    """README "Distributed checkpoints (DCP)" runs as written."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.findall(r"```python\n(.*?)```", text.split("## Distributed checkpoints (DCP)")[1], re.S)[0]
    exec(compile(block, "README.md", "exec"), {})
