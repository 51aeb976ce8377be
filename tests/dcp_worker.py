"""One rank of tests/test_dcp.py's multi-process checks: gloo on CPU, DTensors on a 1-d mesh.

python dcp_worker.py RANK WORLD INIT_FILE FOLDER ACTIONS  (ACTIONS: "save", "load", "save,load" or "fsdp")
Saves or loads `expected()` sharded `Shard(0)` ("w", "h") and `Replicate()` ("b"), with two values;
a load checks every local shard and full tensor exactly and prints "ok RANK". "fsdp": an FSDP2
(`fully_shard`) model and its AdamW state saved and loaded into a fresh copy, compared exactly.
"""

from __future__ import annotations

import os
import sys
import warnings

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor

from tmodel.distributed import TModelLoadPlanner, TModelReader, TModelSavePlanner, TModelWriter


def expected() -> dict[str, object]:
    """The full state every test saves: three dtypes, a row count no world size divides, two values."""
    return {
        "w": torch.arange(24, dtype=torch.float32).reshape(8, 3) / 4,
        "h": torch.arange(7 * 2, dtype=torch.int64).reshape(7, 2) - 5,
        "b": torch.tensor([1.5, -2.0, 3.25], dtype=torch.bfloat16),
        "step": 7,
        "cfg": {"betas": (0.9, 0.99), "name": "adamw"},
    }


PLACEMENT = {"w": Shard(0), "h": Shard(0), "b": Replicate()}


def sharded(mesh: object, zero: bool) -> dict[str, object]:
    state = expected()
    out: dict[str, object] = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            full = torch.zeros_like(value) if zero else value
            out[key] = distribute_tensor(full, mesh, [PLACEMENT[key]])  # type: ignore[arg-type]
        else:
            out[key] = value
    if zero:
        out.update(step=0, cfg={"betas": (0.0, 0.0), "name": ""})
    return out


def fsdp_model(mesh: DeviceMesh) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    for layer in (model[0], model[2]):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.9))


def full(value: object) -> object:
    return value.full_tensor() if isinstance(value, DTensor) else value


def fsdp_round_trip(mesh: DeviceMesh, folder: str) -> None:
    """Train one step, save model and optimizer state, load it into a fresh model, compare exactly."""
    model, opt = fsdp_model(mesh)
    torch.manual_seed(1)
    model(torch.randn(4, 6)).sum().backward()
    opt.step()
    msd, osd = get_state_dict(model, opt)
    dcp.save({"model": msd, "optim": osd}, storage_writer=TModelWriter(folder), planner=TModelSavePlanner())
    model2, opt2 = fsdp_model(mesh)
    msd2, osd2 = get_state_dict(model2, opt2)
    state = {"model": msd2, "optim": osd2}
    dcp.load(state, storage_reader=TModelReader(folder), planner=TModelLoadPlanner())
    set_state_dict(model2, opt2, model_state_dict=state["model"], optim_state_dict=state["optim"])
    for (key, a), b in zip(model.state_dict().items(), model2.state_dict().values(), strict=True):
        assert torch.equal(full(a), full(b)), key  # type: ignore[arg-type]
    o1, o2 = get_state_dict(model, opt)[1], get_state_dict(model2, opt2)[1]
    assert o1["param_groups"] == o2["param_groups"], o2["param_groups"]
    assert sorted(o1["state"]) == sorted(o2["state"]) and len(o1["state"]) == 4
    for fqn, entries in o1["state"].items():
        for key, value in entries.items():
            assert torch.equal(full(value), full(o2["state"][fqn][key])), (fqn, key)  # type: ignore[arg-type]
    print(f"ok {dist.get_rank()}")


def main() -> None:
    rank, world, init, folder, actions = sys.argv[1:]
    warnings.simplefilter("ignore")
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=int(rank), world_size=int(world))
    mesh = init_device_mesh("cpu", (int(world),))
    if actions == "fsdp":
        fsdp_round_trip(mesh, folder)
    if "save" in actions:
        dcp.save(sharded(mesh, False), storage_writer=TModelWriter(folder), planner=TModelSavePlanner())
    for each in folder.split(os.pathsep) if "load" in actions else ():  # one or more saves, in turn
        state = sharded(mesh, True)
        dcp.load(state, storage_reader=TModelReader(each), planner=TModelLoadPlanner())
        for key, value in expected().items():
            got = state[key]
            if isinstance(got, DTensor):
                assert isinstance(value, torch.Tensor)
                local = distribute_tensor(value, mesh, [PLACEMENT[key]]).to_local()
                assert torch.equal(got.to_local(), local) and got.to_local().dtype == value.dtype, key
                assert torch.equal(got.full_tensor(), value), key
            else:
                assert got == value, (key, got)
    if "load" in actions:
        print(f"ok {rank}")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
