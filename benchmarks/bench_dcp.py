"""DCP save and load at 2 ranks (gloo on CPU): tmodel.distributed beside DCP's FileSystemWriter/Reader.

A state of `--gb` GB (equal float32 tensors, random, sharded Shard(0) over the 2 ranks as DTensors) is
saved and loaded by each backend into a fresh temporary folder; printed per backend: save and load time
(the slowest rank's, best of `--repeat`) and the bytes on disk. Random data does not compress, so tmodel
writes it raw unless `--codec`.

    .venv/bin/python benchmarks/bench_dcp.py --gb 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings


def _worker(rank: int, world: int, init: str, folder: str, backend: str, gb: float, codec: str) -> None:
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from tmodel.distributed import TModelLoadPlanner, TModelReader, TModelSavePlanner, TModelWriter

    warnings.simplefilter("ignore")
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    n = 16
    rows = int(gb * 2**30 / 4 / n / 1024)
    g = torch.Generator().manual_seed(0)
    state = {
        f"layer{i}.weight": distribute_tensor(torch.rand(rows, 1024, generator=g), mesh, [Shard(0)])
        for i in range(n)
    }
    target = {k: distribute_tensor(torch.zeros(rows, 1024), mesh, [Shard(0)]) for k in state}
    if backend == "tmodel":
        writer, reader = TModelWriter(folder, codec=codec), TModelReader(folder)
        save_planner, load_planner = TModelSavePlanner(), TModelLoadPlanner()
    else:
        writer, reader = dcp.FileSystemWriter(folder), dcp.FileSystemReader(folder)
        save_planner, load_planner = None, None
    dist.barrier()
    t0 = time.perf_counter()
    dcp.save(state, storage_writer=writer, planner=save_planner)
    dist.barrier()
    t1 = time.perf_counter()
    dcp.load(target, storage_reader=reader, planner=load_planner)
    dist.barrier()
    t2 = time.perf_counter()
    assert all(torch.equal(target[k].to_local(), v.to_local()) for k, v in state.items())
    if rank == 0:
        print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
    dist.destroy_process_group()


def _run(backend: str, gb: float, codec: str, scratch: str) -> tuple[float, float, int]:
    folder = tempfile.mkdtemp(dir=scratch)
    init = os.path.join(folder, ".init")
    argv = [sys.executable, __file__, "--worker", backend, init, folder, str(gb), codec]
    procs = [subprocess.Popen([*argv, str(r)], stdout=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"{backend}: a worker failed")
    save_s, load_s = (float(v) for v in outs[0].split())
    size = sum(e.stat().st_size for e in os.scandir(folder) if e.is_file() and e.name != ".init")
    shutil.rmtree(folder)
    return save_s, load_s, size


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        backend, init, folder, gb, codec, rank = sys.argv[2:]
        _worker(int(rank), 2, init, folder, backend, float(gb), codec)
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gb", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--codec", default="raw")
    p.add_argument("--dir", default=None, help="scratch folder (default: the system's temporary folder)")
    args = p.parse_args()
    scratch = tempfile.mkdtemp(dir=args.dir)
    try:
        print(f"{args.gb} GB at 2 ranks, best of {args.repeat}")
        print(f"{'backend':<14}{'save s':>9}{'load s':>9}{'bytes on disk':>16}")
        for backend in ("filesystem", "tmodel"):
            runs = [_run(backend, args.gb, args.codec, scratch) for _ in range(args.repeat)]
            save_s, load_s, size = min(r[0] for r in runs), min(r[1] for r in runs), runs[0][2]
            print(f"{backend:<14}{save_s:>9.3f}{load_s:>9.3f}{size:>16,}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
