"""Long structure-aware fuzz campaign against the reference reader (run by hand, not in CI).

    python benchmarks/fuzz_campaign.py --inputs 1000000 [--seed S] [--workers 2] [--seconds 480]

Uses the mutators of tests/fuzz_mutators.py with a plain random.Random loop (much faster than hypothesis).
Every input must make tmodel.load(path) and Reader(path).verify() raise nothing but TModelError (or succeed),
each within --time-limit seconds, and the process peak RSS must grow less than --max-rss-mb. Each failing
input is saved to --out (default fuzz-findings/) as <layer>-<worker>-<n>.tmodel, with a .txt describing it.
Prints inputs, time, inputs/s, counts per layer and outcome, the slowest input, and every finding.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fuzz_mutators as fm


def worker(args: tuple[int, int, int, float, float, float, str, str]) -> dict[str, Any]:
    index, n_inputs, seed, seconds, time_limit, max_rss_mb, out_dir, seed_dir = args
    seeds = fm.seed_files(Path(seed_dir) / f"w{index}")
    names = sorted(seeds)
    fm.install_hang_guard()
    rng = random.Random(seed * 1000003 + index)
    tmp_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    work = Path(tempfile.mkdtemp(prefix="tmodel-fuzz-", dir=tmp_root))
    path = work / "input.tmodel"
    counts: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    findings: list[str] = []
    slowest = (0.0, "")
    rss0 = fm.maxrss_mb()
    t0 = time.perf_counter()
    done = 0
    try:
        while done < n_inputs and (not seconds or time.perf_counter() - t0 < seconds):
            layer = fm.LAYERS[rng.randrange(len(fm.LAYERS))]
            seed_name = rng.choice(names)
            try:
                data = fm.mutate(rng, seeds[seed_name], layer)
            except Exception as exc:  # a mutator bug, not a reader bug: count it and move on
                counts[f"{layer}:mutator-error"] += 1
                outcomes[f"mutator {type(exc).__name__}"] += 1
                continue
            path.write_bytes(data)
            result = fm.check_file(path, time_limit=time_limit)
            done += 1
            counts[layer] += 1
            outcomes[f"{layer} {result.outcome.split(' ')[0] if result.ok else 'FINDING'}"] += 1
            if result.seconds > slowest[0]:
                slowest = (result.seconds, f"{layer}/{seed_name}: {result.outcome}")
            growth = fm.maxrss_mb() - rss0
            if not result.ok or growth > max_rss_mb:
                what = result.outcome if not result.ok else f"!Memory: peak RSS grew {growth:.0f} MB"
                name = f"{layer}-w{index}-{done}"
                Path(out_dir).mkdir(parents=True, exist_ok=True)
                (Path(out_dir) / f"{name}.tmodel").write_bytes(data)
                (Path(out_dir) / f"{name}.txt").write_text(
                    f"layer={layer} seed={seed_name} input_number={done}\n{what}\n"
                )
                findings.append(f"{name}: {what}")
                rss0 = fm.maxrss_mb()  # report each growth once
    finally:
        path.unlink(missing_ok=True)
        work.rmdir()
    return {
        "inputs": done,
        "seconds": time.perf_counter() - t0,
        "counts": counts,
        "outcomes": outcomes,
        "slowest": slowest,
        "findings": findings,
        "rss_growth_mb": fm.maxrss_mb() - rss0,
        "maxrss_mb": fm.maxrss_mb(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=1_000_000, help="total inputs over all workers")
    ap.add_argument("--seconds", type=float, default=0.0, help="stop after this wall time (0: no limit)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=1.0, help="seconds allowed per call")
    ap.add_argument("--max-rss-mb", type=float, default=256.0)
    ap.add_argument("--out", default="fuzz-findings")
    opts = ap.parse_args()

    seed_dir = tempfile.mkdtemp(prefix="tmodel-fuzz-seeds-")
    per = [opts.inputs // opts.workers + (i < opts.inputs % opts.workers) for i in range(opts.workers)]
    jobs = [
        (i, per[i], opts.seed, opts.seconds, opts.time_limit, opts.max_rss_mb, opts.out, seed_dir)
        for i in range(opts.workers)
    ]
    t0 = time.perf_counter()
    if opts.workers == 1:
        results = [worker(jobs[0])]
    else:
        with mp.get_context("spawn").Pool(opts.workers) as pool:
            results = pool.map(worker, jobs)
    wall = time.perf_counter() - t0

    total = sum(r["inputs"] for r in results)
    counts: Counter[str] = sum((r["counts"] for r in results), Counter())
    outcomes: Counter[str] = sum((r["outcomes"] for r in results), Counter())
    findings = [f for r in results for f in r["findings"]]
    slowest = max(r["slowest"] for r in results)
    print(f"inputs: {total}  wall time: {wall:.1f} s  inputs/s: {total / wall:.0f}  workers: {opts.workers}")
    print("per layer:", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    print(f"slowest input: {slowest[0] * 1000:.1f} ms ({slowest[1]})")
    print("peak RSS per worker (MB):", ", ".join(f"{r['maxrss_mb']:.0f}" for r in results))
    print("outcomes:")
    for k, v in sorted(outcomes.items()):
        print(f"  {k}: {v}")
    print(f"findings: {len(findings)}" + (f" (saved in {opts.out}/)" if findings else ""))
    for f in findings:
        print("  " + f)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
