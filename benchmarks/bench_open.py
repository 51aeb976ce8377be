"""Issue 18's targets for a file of many small tensors: open + one get_tensor beside safetensors'
safe_open, save beside save_file (both durable: save_file's time includes an fsync of the file, as
tmodel.save fsyncs before it returns), and the first call's cost in a fresh process.

    .venv/bin/python benchmarks/bench_open.py [--tensors 100000] [--runs 3]

Each line is a median of --runs, measured side by side in this one process; the first-call rows time
`tmodel.open(p).get_tensor(k)` and `tmodel.load(p)` in fresh processes (torch imported before the clock
starts) minus the same call repeated in that process. See benchmarks/OPEN.md.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

import tmodel

KIB, MIB = 1 << 10, 1 << 20
DTYPES = (torch.float32, torch.bfloat16, torch.int64)


def state_dict(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """n tensors, mixed sizes: mostly 1-64 elements, 2% of 1-64 KiB, 1 in 10,000 of 1-4 MiB; fp32, bf16,
    int64 in turn at random."""
    rnd = random.Random(seed)
    out = {}
    for i in range(n):
        dtype = rnd.choice(DTYPES)
        itemsize = torch.empty(0, dtype=dtype).element_size()
        r = rnd.random()
        if r < 1e-4:
            numel = rnd.randint(1, 4) * MIB // itemsize
        elif r < 0.02:
            numel = rnd.randint(KIB, 64 * KIB) // itemsize
        else:
            numel = rnd.randint(1, 64)
        values = torch.randn(numel) * 100
        out[f"layers.{i}.w"] = values.to(dtype)
    return out


def median_of(runs: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _fsynced(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_FIRST = """
import sys, time
import torch
p, k, what = sys.argv[1], sys.argv[2], sys.argv[3]
def call():
    import tmodel
    if what == "open":
        with tmodel.open(p) as f:
            f.get_tensor(k)
    else:
        tmodel.load(p)
t0 = time.perf_counter(); call(); first = time.perf_counter() - t0
t0 = time.perf_counter(); call(); warm = time.perf_counter() - t0
print(first - warm)
"""


def first_call(path: Path, key: str, what: str, runs: int) -> float:
    """Median over fresh processes of (first call - the same call again) in seconds."""
    out = []
    for _ in range(runs):
        res = subprocess.run(
            [sys.executable, "-c", _FIRST, str(path), key, what], capture_output=True, text=True, check=True
        )
        out.append(float(res.stdout.strip()))
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tensors", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the files go (default: a temporary folder)")
    args = ap.parse_args()
    sd = state_dict(args.tensors)
    key = next(iter(sd))
    mib = sum(t.nbytes for t in sd.values()) / MIB
    print(f"{len(sd)} tensors, {mib:.1f} MiB, torch {torch.__version__}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tm, tm_raw, st = Path(tmp, "m.tmodel"), Path(tmp, "m-raw.tmodel"), Path(tmp, "m.safetensors")

        def st_save() -> None:
            save_file(sd, st)
            _fsynced(st)

        rows: list[tuple[str, float, float, float]] = []  # (target, tmodel s, safetensors s, limit)
        saves = [
            median_of(args.runs, lambda: tmodel.save(sd, tm)),
            median_of(args.runs, lambda: tmodel.save(sd, tm_raw, codec="raw")),
            median_of(args.runs, st_save),
        ]
        rows.append(("save (default codec) / save_file, both durable", saves[0], saves[2], 1.5))
        rows.append(("save (raw) / save_file, both durable", saves[1], saves[2], 1.5))

        def tm_open(path: Path) -> Callable[[], None]:
            def run() -> None:
                with tmodel.open(path) as f:
                    f.get_tensor(key)

            return run

        def st_open() -> None:
            with safe_open(st, "pt") as f:
                f.get_tensor(key)

        for _ in range(2):  # warm both (page cache, imports)
            tm_open(tm)()
            st_open()
        opens = [
            median_of(args.runs, tm_open(tm)),
            median_of(args.runs, tm_open(tm_raw)),
            median_of(args.runs, st_open),
        ]
        rows.append(("open+get_tensor (default codec) / safe_open+get_tensor", opens[0], opens[2], 2.0))
        rows.append(("open+get_tensor (raw) / safe_open+get_tensor", opens[1], opens[2], 2.0))
        small = Path(tmp, "small.tmodel")
        tmodel.save({"w": torch.ones(4), "b": torch.zeros(2)}, small)
        firsts = [
            first_call(small, "w", "open", max(args.runs, 5)),
            first_call(small, "w", "load", max(args.runs, 5)),
        ]
    print(f"{'target':58} {'tmodel':>9} {'other':>9} {'ratio':>7} {'limit':>6}")
    for target, a, b, limit in rows:
        ratio = a / b
        print(
            f"{target:58} {a:9.3f} {b:9.3f} {ratio:7.2f} {limit:6.2f} {'PASS' if ratio <= limit else 'FAIL'}"
        )
    for what, extra in zip(("open+get_tensor", "load (no modules)"), firsts, strict=True):
        mark = "PASS" if extra <= 0.030 else "FAIL"
        label = f"first call, fresh process - warm: {what}"
        print(f"{label:58} {extra * 1000:8.1f}ms {'':>9} {'':>7} {'30ms':>6} {mark}")


if __name__ == "__main__":
    main()
