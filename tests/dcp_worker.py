"""One rank of tests/test_dcp.py's multi-process checks: gloo on CPU, DTensors on a 1-d mesh.

python dcp_worker.py RANK WORLD INIT_FILE FOLDER ACTIONS  (ACTIONS: "save", "load" or "save,load")
Saves or loads `expected()` sharded `Shard(0)` ("w", "h") and `Replicate()` ("b"), with two values;
a load checks every local shard and full tensor exactly and prints "ok RANK".
"""

from __future__ import annotations

import sys
import warnings

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.device_mesh import init_device_mesh
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


def main() -> None:
    rank, world, init, folder, actions = sys.argv[1:]
    warnings.simplefilter("ignore")
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=int(rank), world_size=int(world))
    mesh = init_device_mesh("cpu", (int(world),))
    if "save" in actions:
        dcp.save(sharded(mesh, False), storage_writer=TModelWriter(folder), planner=TModelSavePlanner())
    if "load" in actions:
        state = sharded(mesh, True)
        dcp.load(state, storage_reader=TModelReader(folder), planner=TModelLoadPlanner())
        for key, value in expected().items():
            got = state[key]
            if isinstance(got, DTensor):
                assert isinstance(value, torch.Tensor)
                local = distribute_tensor(value, mesh, [PLACEMENT[key]]).to_local()
                assert torch.equal(got.to_local(), local) and got.to_local().dtype == value.dtype, key
                assert torch.equal(got.full_tensor(), value), key
            else:
                assert got == value, (key, got)
        print(f"ok {rank}")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
