"""Benchmark: what encryption at rest (AES-256-GCM per chunk) adds to loading and saving (issue 16).

`python benchmarks/bench_encryption.py` builds three ~1 GB state dicts (64 tensors each, N(0, 0.02) values
from a seeded generator): `bf16` (LLM-like weights, default codec: auto = byte-grouped zstd), `fp32`
(default codec) and `raw` (the fp32 values, codec="raw", for reference: an encrypted raw file cannot be
memory-mapped, so it is decrypted into fresh memory). Each is saved three ways: plain, encrypted with a raw
32-byte key, and encrypted with a passphrase (scrypt N=2**17, r=8, p=1: a one-off cost per save and per
load, reported apart). In this one process, after an unmeasured warm-up of every save and load (warm page
cache), `--repeat` rounds time every save (the call, which fsyncs) and every load with `threads=2` and the
default threads, the order rotating from one round to the next; the tables show medians (and each load's
process CPU time, user + sys over all threads, which other processes disturb less). A load's time is
the `tmodel.load` call; touching every byte afterwards (a sum of each tensor viewed as integers) is timed
apart, since a mapped raw load reads nothing until touched. Peak RSS is measured in a fresh subprocess per
(file, operation): the kernel's high-water mark (VmHWM) reset with `/proc/self/clear_refs` just before the
operation, read after it, minus the RSS at the reset (imports, and for a save the dataset, already in).

Prints one line per target (encrypted / plain compressed load time <= 1.3) with PASS/FAIL, then the
informational ratios. `--gb` scales every dataset; the default run takes ~4-5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

import tmodel

TARGET = 1.3
N_TENSORS = 64
PASSPHRASE = "correct horse battery staple"
DATASETS = {
    "bf16": ("bf16 N(0, 0.02), codec auto (bytegroup-zstd)", torch.bfloat16, "auto"),
    "fp32": ("fp32 N(0, 0.02), codec auto (bytegroup-zstd)", torch.float32, "auto"),
    "raw": ("fp32 N(0, 0.02), codec raw", torch.float32, "raw"),
}
VARIANTS = ("plain", "key", "passphrase")
INT_VIEW = {torch.bfloat16: torch.int16, torch.float32: torch.int32}


def build(name: str, gb: float) -> dict[str, torch.Tensor]:
    """The dataset: N_TENSORS tensors of N(0, 0.02) values, about `gb` GB in all, one tensor at a time."""
    _, dtype, _ = DATASETS[name]
    width = torch.empty((), dtype=dtype).element_size()
    n = int(gb * 1e9 / width / N_TENSORS)
    g = torch.Generator().manual_seed(0)
    out = {}
    for i in range(N_TENSORS):
        t = torch.randn(n, generator=g).mul_(0.02)
        out[f"layers.{i}.weight"] = t.to(dtype) if dtype != torch.float32 else t
    return out


def key_of(variant: str, raw_key: bytes) -> Any:
    return {"plain": None, "key": raw_key, "passphrase": PASSPHRASE}[variant]


def save(obj: Any, path: str, codec: str, key: Any) -> None:
    if os.path.exists(path):
        os.remove(path)
    tmodel.save(obj, path, codec=codec, encrypt_with=key)


def touch(obj: dict[str, torch.Tensor]) -> int:
    """Read every byte: a wrapping sum of each tensor viewed as same-width integers, summed in that width
    (summing int16 into int64 runs ~6x slower here and would measure the sum, not the load)."""
    return sum(int(t.view(INT_VIEW[t.dtype]).sum(dtype=INT_VIEW[t.dtype])) for t in obj.values())


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def worker(args: argparse.Namespace) -> None:
    """One measured operation in a fresh process; prints "peak_kib base_kib seconds"."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: F401  (imported for every run)

    key = None
    if args.key_hex:
        key = bytes.fromhex(args.key_hex)
    elif args.passphrase:
        key = PASSPHRASE
    obj = build(args.dataset, args.gb) if args.worker == "save" else None
    os.sync()
    _reset_peak()
    base = _status_kib("VmRSS")
    t0 = time.perf_counter()
    if args.worker == "save":
        save(obj, args.path, DATASETS[args.dataset][2], key)
    else:
        out = tmodel.load(args.path, key=key, threads=2)
        touch(out)
    dt = time.perf_counter() - t0
    print(_status_kib("VmHWM"), base, dt)


def peak_rss(op: str, dataset: str, gb: float, path: str, variant: str, raw_key: bytes) -> float:
    """MB above the RSS at the reset, for one save or load (with threads=2, then touched) in a fresh
    subprocess."""
    cmd = [sys.executable, __file__, "--worker", op, "--dataset", dataset, "--gb", str(gb), "--path", path]
    if variant == "key":
        cmd += ["--key-hex", raw_key.hex()]
    elif variant == "passphrase":
        cmd += ["--passphrase"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    peak, base, _ = done.stdout.split()
    return (int(peak) - int(base)) * 1024 / 1e6


def scrypt_seconds(repeat: int) -> float:
    """One derivation with the default Passphrase parameters, as every passphrase save and load does."""
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    p = tmodel.Passphrase(PASSPHRASE)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        Scrypt(salt=b"s" * 16, length=32, n=1 << p.log_n, r=p.r, p=p.p).derive(PASSPHRASE.encode())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def n_chunks(path: str, key: Any) -> int:
    with tmodel.open(path, key=key) as f:
        return sum(len(b.chunks) for b in f.reader.manifest.blobs)


def rotate(items: list[Any], r: int) -> list[Any]:
    k = r % len(items)
    return items[k:] + items[:k]


def run_dataset(name: str, args: argparse.Namespace, tmp: str, raw_key: bytes) -> dict[str, Any]:
    label, _, codec = DATASETS[name]
    t0 = time.perf_counter()
    obj = build(name, args.gb)
    build_s = time.perf_counter() - t0
    raw_bytes = sum(t.numel() * t.element_size() for t in obj.values())
    paths = {v: os.path.join(tmp, f"{name}-{v}.tmodel") for v in VARIANTS}
    print(f"[{name}] built {raw_bytes / 1e9:.2f} GB in {build_s:.1f} s", file=sys.stderr, flush=True)

    saves: dict[str, Callable[[], None]] = {
        v: (lambda v=v: save(obj, paths[v], codec, key_of(v, raw_key))) for v in VARIANTS
    }
    loads: dict[str, tuple[str, int, bool]] = {}  # label -> (variant, threads, mmap)
    for v in VARIANTS:
        for threads in (2, 0):
            loads[f"{v} t={threads or 'default'}"] = (v, threads, True)
    if codec == "raw":
        loads["plain t=2 mmap=False"] = ("plain", 2, False)

    def do_load(lbl: str) -> dict[str, torch.Tensor]:
        v, threads, mmap = loads[lbl]
        return tmodel.load(paths[v], key=key_of(v, raw_key), threads=threads, mmap=mmap)

    # warm-up: every save once, every load once, checked bit-exact against the dataset
    for v in VARIANTS:
        saves[v]()
    for lbl in loads:
        out = do_load(lbl)
        if out.keys() != obj.keys() or not all(
            torch.equal(out[k].view(INT_VIEW[out[k].dtype]), obj[k].view(INT_VIEW[obj[k].dtype])) for k in obj
        ):
            raise SystemExit(f"PROBLEM: {name} {lbl} loaded different tensors")
        del out
    print(f"[{name}] warm-up done", file=sys.stderr, flush=True)

    save_t: dict[str, list[float]] = {v: [] for v in VARIANTS}
    load_t: dict[str, list[float]] = {lbl: [] for lbl in loads}
    touch_t: dict[str, list[float]] = {lbl: [] for lbl in loads}
    cpu_t: dict[str, list[float]] = {lbl: [] for lbl in loads}
    load_avg = [os.getloadavg()[0]]
    for r in range(args.repeat):
        for v in rotate(list(VARIANTS), r):
            t0 = time.perf_counter()
            saves[v]()
            save_t[v].append(time.perf_counter() - t0)
        for lbl in rotate(list(loads), r):
            c0, t0 = time.process_time(), time.perf_counter()
            out = do_load(lbl)
            t1, c1 = time.perf_counter(), time.process_time()
            touch(out)
            t2 = time.perf_counter()
            del out
            load_t[lbl].append(t1 - t0)
            touch_t[lbl].append(t2 - t1)
            cpu_t[lbl].append(c1 - c0)
        print(f"[{name}] round {r + 1}/{args.repeat}", file=sys.stderr, flush=True)
    load_avg.append(os.getloadavg()[0])
    obj.clear()  # free the dataset before the RSS subprocesses

    sizes = {v: os.path.getsize(paths[v]) for v in VARIANTS}
    chunks = n_chunks(paths["key"], raw_key)
    rss: dict[tuple[str, str], float] = {}
    if not args.no_rss:
        for v in VARIANTS:
            rss[("load", v)] = peak_rss("load", name, args.gb, paths[v], v, raw_key)
        for v in VARIANTS:
            rss[("save", v)] = peak_rss("save", name, args.gb, paths[v], v, raw_key)
        print(f"[{name}] RSS workers done", file=sys.stderr, flush=True)
    for p in paths.values():
        os.remove(p)
    return {
        "name": name,
        "label": label,
        "codec": codec,
        "raw_bytes": raw_bytes,
        "sizes": sizes,
        "chunks": chunks,
        "save": save_t,
        "load": load_t,
        "touch": touch_t,
        "cpu": cpu_t,
        "load_avg": load_avg,
        "rss": rss,
    }


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def report(res: dict[str, Any], repeat: int) -> list[tuple[str, float, float | None]]:
    """Print a dataset's tables; return its (description, ratio, limit or None) lines."""
    name, raw = res["name"], res["raw_bytes"]
    sizes, chunks = res["sizes"], res["chunks"]
    print(f"\n### {name}: {res['label']}, {raw / 1e9:.2f} GB raw, {N_TENSORS} tensors, {chunks} chunks")
    la = res["load_avg"]
    print(
        f"\nmedian of {repeat} runs after a warm-up (1-min load average {la[0]:.2f} before the rounds, "
        f"{la[1]:.2f} after); GB/s = raw tensor bytes / load call s; CPU s = this process's user + sys "
        "time over the call, all threads (less sensitive than wall time to other processes)\n"
    )
    print(
        "| load | median s | GB/s | vs plain (same threads) "
        "| CPU s | CPU vs plain | touch s | runs (call s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    lines: list[tuple[str, float, float | None]] = []
    for lbl, runs in res["load"].items():
        rest = lbl.partition(" ")[2]
        base = "plain " + rest if "plain " + rest in res["load"] else lbl
        ratio = med(runs) / med(res["load"][base])
        cpu, cpu_ratio = med(res["cpu"][lbl]), med(res["cpu"][lbl]) / med(res["cpu"][base])
        joined = ", ".join(f"{x:.3f}" for x in runs)
        print(
            f"| {lbl} | {med(runs):.3f} | {raw / med(runs) / 1e9:.2f} | {ratio:.3f} | {cpu:.3f} | "
            f"{cpu_ratio:.3f} | {med(res['touch'][lbl]):.3f} | {joined} |"
        )
    print("\n| save | median s | GB/s | vs plain | file MB | overhead vs plain, bytes | runs |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for v, runs in res["save"].items():
        joined = ", ".join(f"{x:.3f}" for x in runs)
        ratio = med(runs) / med(res["save"]["plain"])
        print(
            f"| {v} | {med(runs):.3f} | {raw / med(runs) / 1e9:.2f} | {ratio:.3f} | "
            f"{sizes[v] / 1e6:.1f} | {sizes[v] - sizes['plain']:+,} | {joined} |"
        )
    overhead = sizes["key"] - sizes["plain"]
    print(
        f"\nencrypted overhead (raw key): {overhead:,} bytes = {chunks} chunks x 16 B tag "
        f"({16 * chunks:,}) {overhead - 16 * chunks:+,} B (envelope, blob nonces, manifest) "
        f"({overhead / sizes['plain'] * 100:.4f} % of the file)"
    )
    if res["rss"]:
        print("\n| peak RSS above baseline, MB | plain | key | passphrase |")
        print("|---|---:|---:|---:|")
        for op in ("load", "save"):
            vals = " | ".join(f"{res['rss'][(op, v)]:.0f}" for v in VARIANTS)
            print(f"| {op} | {vals} |")
        print(f"\n(data: {raw / 1e6:.0f} MB; load: threads=2 then touched; save: default threads)")
    compressed = res["codec"] != "raw"
    for t in ("2", "default"):
        r = med(res["load"][f"key t={t}"]) / med(res["load"][f"plain t={t}"])
        what = f"{name}: encrypted / plain load, threads={t}"
        lines.append((what + ("" if compressed else " (raw, reference)"), r, TARGET if compressed else None))
    c = med(res["cpu"]["key t=2"]) / med(res["cpu"]["plain t=2"])
    lines.append((f"{name}: encrypted / plain load CPU time (user + sys), threads=2", c, None))
    if not compressed:
        r = med(res["load"]["key t=2"]) / med(res["load"]["plain t=2 mmap=False"])
        lines.append((f"{name}: encrypted / plain load, threads=2, plain read with mmap=False", r, None))
        tk = med(res["load"]["key t=2"]) + med(res["touch"]["key t=2"])
        tp = med(res["load"]["plain t=2"]) + med(res["touch"]["plain t=2"])
        lines.append((f"{name}: encrypted / plain (mapped) load + touch, threads=2", tk / tp, None))
    r = med(res["load"]["passphrase t=2"]) / med(res["load"]["plain t=2"])
    lines.append((f"{name}: passphrase / plain load, threads=2 (includes one scrypt)", r, None))
    r = med(res["save"]["key"]) / med(res["save"]["plain"])
    lines.append((f"{name}: encrypted / plain save", r, None))
    lines.append((f"{name}: encrypted / plain file size", sizes["key"] / sizes["plain"], None))
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=1.0, help="GB of tensor data per dataset (default 1)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--datasets", default="bf16,fp32,raw")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    ap.add_argument("--tmpdir", default="/tmp")
    ap.add_argument("--worker", choices=("save", "load"), help=argparse.SUPPRESS)
    ap.add_argument("--dataset", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--key-hex", help=argparse.SUPPRESS)
    ap.add_argument("--passphrase", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    import cryptography
    import zstandard

    began = time.perf_counter()
    load0 = os.getloadavg()[0]
    raw_key = bytes(range(32))
    results = []
    with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="tmodel-bench-enc-") as tmp:
        for name in args.datasets.split(","):
            results.append(run_dataset(name, args, tmp, raw_key))
    kdf = scrypt_seconds(3)
    p = tmodel.Passphrase(PASSPHRASE)
    print(
        f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"cryptography {cryptography.__version__}, zstandard {zstandard.__version__}; "
        f"{os.cpu_count()} CPUs; load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end"
    )
    lines = []
    for res in results:
        lines += report(res, args.repeat)
    print(
        f"\nscrypt (log_n={p.log_n}, r={p.r}, p={p.p}) alone: {kdf:.3f} s, once per passphrase save or load"
    )
    for res in results:
        d = med(res["load"]["passphrase t=2"]) - med(res["load"]["key t=2"])
        print(f"  {res['name']}: passphrase load - raw-key load (threads=2) = {d:+.3f} s")
    print("\n#### Targets\n")
    failed = 0
    for what, ratio, limit in lines:
        if limit is None:
            print(f"{what} = {ratio:.3f} (no target)")
        else:
            ok = ratio <= limit
            failed += not ok
            print(f"{what} = {ratio:.3f} (target <= {limit}): {'PASS' if ok else 'FAIL'}")
    n_targets = sum(limit is not None for _, _, limit in lines)
    print(f"\n{n_targets - failed}/{n_targets} targets pass; {time.perf_counter() - began:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
