"""Benchmark: migrating a >= 1 GB training checkpoint in which one layer changes, against a full rewrite.

`python benchmarks/bench_migrate.py` writes a ~1.2 GB bf16 checkpoint with the v1 code (6 MLP blocks and
one attention layer whose fused qkv weight is split by the v1 -> v2 step, plus the AdamW state of every
parameter after one step: `{"model": model, "optim": optimizer, "step": 1}`), then, with the v2 code, times
`tmodel.migrate_file` (untouched blobs copied byte for byte) against a full rewrite (`tmodel.load` of the
file, which upgrades in memory, then `tmodel.save`). Medians of --repeat interleaved runs, warm page
cache, os.sync() before each timed run. Prints the ratio and a pass/fail mark for the target
(migrate <= 0.1 x rewrite). The split carries the qkv weight's AdamW moments with it (SPEC.md §5.8); every
other blob, optimizer state included, is copied byte for byte.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn

import tmodel

DIM, HIDDEN, BLOCKS = 2048, 8192, 8


class Block(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.up = nn.Parameter(torch.empty(hidden, dim, dtype=torch.bfloat16).normal_(0, 0.02))
        self.down = nn.Parameter(torch.empty(dim, hidden, dtype=torch.bfloat16).normal_(0, 0.02))


class AttnV1(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Parameter(torch.empty(3 * dim, dim, dtype=torch.bfloat16).normal_(0, 0.02))


class AttnV2(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        for name in "qkv":
            setattr(self, name, nn.Parameter(torch.empty(dim, dim, dtype=torch.bfloat16)))


def register(version: int) -> None:
    tmodel.register("bench.Block", version=1)(Block)
    if version == 1:
        tmodel.register("bench.Attn", version=1)(AttnV1)
    else:
        tmodel.register("bench.Attn", version=2)(AttnV2)

        @tmodel.migration("bench.Attn", from_version=1)
        def split_qkv(rec: tmodel.nn.steps.LayerRecord) -> None:  # type: ignore[name-defined]
            dim = rec.config["dim"]
            rec.split("qkv", {"q": dim, "k": dim, "v": dim})


def write_v1(path: str) -> None:
    register(1)
    torch.manual_seed(0)
    model = nn.Sequential(*[Block(DIM, HIDDEN) for _ in range(BLOCKS)], AttnV1(DIM))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.empty_like(p).normal_(0, 1e-3)
    opt.step()  # AdamW state (step, exp_avg, exp_avg_sq) for every parameter
    tmodel.save({"model": model, "optim": opt, "step": 1}, path)


def timed(fn: object, out: str) -> float:
    """One timed run writing a new `out` (the previous one is removed, untimed, as `-o NEW` would find it)."""
    if os.path.exists(out):
        os.unlink(out)
    os.sync()
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--write-v1", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.write_v1:
        write_v1(args.write_v1)
        return
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        src = os.path.join(tmp, "v1.tmodel")
        subprocess.run([sys.executable, __file__, "--write-v1", src], check=True)
        size = os.path.getsize(src)
        register(2)
        import tmodel.nn.steps

        out = os.path.join(tmp, "out.tmodel")

        def migrate() -> None:
            tmodel.migrate_file(src, out)

        def rewrite() -> None:
            model = tmodel.load(src)
            tmodel.save(model, out)

        migrate()  # warm-up, unmeasured
        rewrite()
        m: list[float] = []
        r: list[float] = []
        for _ in range(args.repeat):  # interleaved, so a slow spell of the disk hits both alike
            m.append(timed(migrate, out))
            r.append(timed(rewrite, out))
        migrate()
        with tmodel.open(out) as f:
            names = [t.name for t in f.manifest.tensors]
        assert f"model.{BLOCKS}.q" in names and f"model.{BLOCKS}.qkv" not in names, names[-4:]
        state = tmodel.load(out)["optim"]["state"]
        assert len(state) == 2 * BLOCKS + 3 and all("exp_avg" in s for s in state.values())
    mm, rr = statistics.median(m), statistics.median(r)
    ratio = mm / rr
    print(
        f"checkpoint: {size / 1e9:.2f} GB ({BLOCKS} blocks of bf16 MLP weights + one attention layer, v1, "
        "with AdamW state)"
    )
    print("| operation | median s | runs |")
    print("|---|---:|---|")
    for label, med, runs in (
        ("tmodel migrate (one layer v1->v2, other blobs copied)", mm, m),
        ("full rewrite (tmodel.load + tmodel.save)", rr, r),
    ):
        print(f"| {label} | {med:.3f} | {', '.join(f'{x:.3f}' for x in runs)} |")
    print(f"migrate / rewrite = {ratio:.3f} (target <= 0.1): {'PASS' if ratio <= 0.1 else 'FAIL'}")


if __name__ == "__main__":
    main()
