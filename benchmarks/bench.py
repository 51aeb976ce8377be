"""Save / load / size / peak-RSS benchmark: torch.save, safetensors, tmodel raw and tmodel compressed.

    .venv/bin/python benchmarks/bench.py --datasets crepe,gpt2,gpt2-bf16,cold240,many --repeat 3
    .venv/bin/python benchmarks/bench.py --datasets 1b --repeat 1 --cold

Every (format, dataset, operation) runs in a fresh subprocess of this script (``--worker``), so each peak
RSS belongs to one operation. Markdown tables go to stdout, progress to stderr. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import bench_targets  # noqa: E402

RESULT_TAG = "BENCH_RESULT "
GET_FORMATS = ("safetensors", "tmodel", "tmodel-raw")
FIRST_FORMATS = ("tmodel", "tmodel-raw")  # first call in a fresh process vs warm (issue 18)
REFERENCES = ("torch", "safetensors")


# ==== worker: one operation in a fresh process ===========================================================
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _maxrss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux clear_refs 5); True when it took."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return abs(_maxrss_bytes() - _status_kib("VmRSS") * 1024) < (16 << 20)


def evict(path: str) -> None:
    """Drop the file's pages from the page cache: fsync (dirty pages cannot be dropped), then
    POSIX_FADV_DONTNEED over the whole file. Works without privileges on the files one can open."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_fraction(path: str) -> float:
    """The fraction of the file's pages in the page cache (mincore over a fresh read-only mapping, which
    faults nothing in); NaN where that cannot be asked (not Linux, no libc)."""
    import ctypes
    import ctypes.util
    import mmap

    size = os.path.getsize(path)
    if size == 0:
        return 0.0
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return float("nan")
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    finally:
        os.close(fd)
    if addr in (None, ctypes.c_void_p(-1).value):
        return float("nan")
    try:
        vec = (ctypes.c_ubyte * pages)()
        if libc.mincore(addr, size, vec) != 0:
            return float("nan")
        return sum(1 for v in vec if v & 1) / pages
    finally:
        libc.munmap(addr, size)


def _tensors(obj: Any) -> list[tuple[str, Any]]:
    import torch

    out: list[tuple[str, Any]] = []

    def walk(prefix: str, o: Any) -> None:
        if isinstance(o, torch.Tensor):
            out.append((prefix, o))
        elif isinstance(o, dict):
            for k, v in o.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(o, (list, tuple)):
            for i, v in enumerate(o):
                walk(f"{prefix}.{i}", v)

    walk("", obj)
    return out


def touch(obj: Any) -> int:
    """Read every byte of every tensor: a wrapping sum of each tensor viewed as same-width integers.

    (A uint8 view summed into int64 runs at ~0.25 GB/s here; same-width integer sums run at ~24 GB/s, so
    this adds ~0.1 s per 2 GB and the load column measures the load, not the check.)
    """
    import torch

    ints = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    acc = 0
    for _, t in _tensors(obj):
        if t.numel() == 0:
            continue
        flat = t.reshape(-1)
        it = ints[min(flat.element_size(), 8)]
        acc += int(flat.view(it).sum(dtype=it))
    return acc


def digest(obj: Any) -> str:
    """xxh3-128 over the names, dtypes, shapes and bytes of every tensor (sorted by name): bit-exactness."""
    import torch
    import xxhash

    h = xxhash.xxh3_128()
    for name, t in sorted(_tensors(obj), key=lambda nt: nt[0]):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def make_shim(src: str, parent: str) -> str:
    """A directory to put first on sys.path so that `tmodel` is a fixed checkout's, not the install: the
    checkout's src/ (or, for checkouts before the package moved, reference/ plus migrations/)."""
    layout = os.path.join(os.path.abspath(src), "src")
    if os.path.isfile(os.path.join(layout, "tmodel", "__init__.py")):
        return layout
    pkg = os.path.join(os.path.abspath(src), "reference")
    if not os.path.isfile(os.path.join(pkg, "__init__.py")):
        raise SystemExit(f"--tmodel-src: neither {layout}/tmodel nor {pkg} is a package")
    shim = os.path.join(parent, "shim")
    target = os.path.join(shim, "tmodel")
    os.makedirs(target, exist_ok=True)
    for entry in os.listdir(pkg):  # the old package was reference/ plus the folders pyproject.toml mapped in
        os.symlink(os.path.join(pkg, entry), os.path.join(target, entry))
    for sub in ("migrations", "conformance"):
        folder = os.path.join(os.path.abspath(src), sub)
        if os.path.isdir(folder):
            os.symlink(folder, os.path.join(target, sub))
    return shim


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import gc

    if spec.get("shim"):
        sys.path.insert(0, spec["shim"])

    import torch  # noqa: F401  (imported identically by every worker, so baselines compare)
    from bench_datasets import DATASETS

    path = spec["path"]
    res: dict[str, Any] = {"op": spec["op"], "format": spec["format"], "dataset": spec["dataset"]}
    if spec["op"] == "first":  # before bench_formats: tmodel is not imported yet, the clock includes it
        from bench_extra import first_op

        res.update(first_op(spec["what"], path, spec["name"], touch))
        return res

    from bench_formats import FORMATS

    if spec["op"] == "zipnn":
        from bench_extra import zipnn_op

        res.update(zipnn_op(_tensors(DATASETS[spec["dataset"]].build()), cpus(), path or None))
        return res
    if spec["op"] == "get":
        from bench_extra import get_op

        res.update(get_op(spec["format"], path, touch))
        return res
    fmt = FORMATS[spec["format"]]
    if spec["op"] == "save":
        t = time.perf_counter()
        sd = DATASETS[spec["dataset"]].build()
        gc.collect()
        res["build_s"] = time.perf_counter() - t
        tensors = _tensors(sd)
        res["tensors"] = len(tensors)
        res["params"] = sum(t.numel() for _, t in tensors)
        res["raw_bytes"] = sum(t.numel() * t.element_size() for _, t in tensors)
        dtypes: dict[str, int] = {}
        for _, t in tensors:
            key = str(t.dtype).removeprefix("torch.")
            dtypes[key] = dtypes.get(key, 0) + 1
        res["dtypes"] = dtypes
        os.sync()
        res["rss_reset"] = _reset_peak()
        base = _maxrss_bytes()
        res["base_rss"] = base
        t0 = time.perf_counter()
        fmt.save(sd, path)
        t1 = time.perf_counter()
        res["peak_rss"] = _maxrss_bytes()
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        t2 = time.perf_counter()
        res["save_s"] = t1 - t0
        res["fsync_s"] = t2 - t1
        res["file_bytes"] = os.path.getsize(path)
        res["digest"] = digest(sd)
    else:
        res["file_bytes"] = os.path.getsize(path)
        os.sync()
        if spec.get("cold"):
            res["resident_before"] = resident_fraction(path)
            evict(path)
            res["resident_after"] = resident_fraction(path)
        gc.collect()
        res["rss_reset"] = _reset_peak()
        base = _maxrss_bytes()
        res["base_rss"] = base
        t0 = time.perf_counter()
        obj = fmt.load(path)
        t1 = time.perf_counter()
        res["touch_sum"] = touch(obj)
        t2 = time.perf_counter()
        res["peak_rss"] = _maxrss_bytes()
        res["call_s"] = t1 - t0
        res["touch_s"] = t2 - t1
        res["load_s"] = t2 - t0
        res["digest"] = digest(obj)
    return res


# ==== orchestrator ======================================================================================
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_worker(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    tail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:]).replace("|", "/")
    return {"error": f"exit {proc.returncode}: {tail}"}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run_dataset(ds: str, fmts: list[str], args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    from bench_datasets import DATASETS
    from bench_formats import FORMATS

    paths = {f: os.path.join(tmp, f"{ds}.{f}.{FORMATS[f].ext}") for f in fmts}
    cold = args.cold or DATASETS[ds].cold
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        f: {op: [] for op in ("save", "load", "get", "cold", "first_get", "first_load")} for f in fmts
    }
    zipnn_runs: list[dict[str, Any]] = []
    errors: dict[str, str] = {}

    def one(fmt: str, rep: int | None) -> None:
        tag = "warm-up" if rep is None else f"rep {rep + 1}/{args.repeat}"
        if fmt in errors:
            return
        if os.path.exists(paths[fmt]):
            os.unlink(paths[fmt])
        base = {"format": fmt, "dataset": ds, "path": paths[fmt], "shim": args.shim}
        steps: list[tuple[str, dict[str, Any]]] = [("save", {"op": "save"}), ("load", {"op": "load"})]
        if fmt in GET_FORMATS:
            steps.append(("get", {"op": "get"}))
        if rep is not None and fmt in FIRST_FORMATS and args.first:
            steps += [
                ("first_get", {"op": "first", "what": "get"}),
                ("first_load", {"op": "first", "what": "load"}),
            ]
        if rep is not None and cold:  # last: it evicts the file that the steps above read warm
            steps.append(("cold", {"op": "load", "cold": True}))
        median_name = ""
        for key, extra in steps:
            time.sleep(args.pause)
            spec = {**base, **extra, "name": median_name}
            r = run_worker(spec, args.timeout)
            if "error" in r:
                errors[fmt] = f"{key}: {r['error']}"
                log(f"[{ds}] {tag} {fmt} {key}: ERROR {r['error']}")
                return
            if key == "get":
                median_name = r["get_median_name"]
                log(
                    f"[{ds}] {tag} {fmt:12s} get: largest {r['get_largest_s']:.3f} s, "
                    f"median {r['get_median_s']:.4f} s, open {r['open_s']:.4f} s"
                )
            elif key.startswith("first"):
                log(
                    f"[{ds}] {tag} {fmt:12s} {key}: first {r['first_s']:.3f} s "
                    f"(import tmodel {r['first_import_s']:.3f} s), warm {r['warm_s']:.3f} s"
                )
            elif key == "cold":
                log(
                    f"[{ds}] {tag} {fmt:12s} cold load: {r['load_s']:7.3f} s  peak RSS "
                    f"{r['peak_rss'] / 1e6:8.0f} MB  (cached {r['resident_before']:.0%} -> "
                    f"{r['resident_after']:.0%})"
                )
            else:
                t = r["save_s"] if key == "save" else r["load_s"]
                log(f"[{ds}] {tag} {fmt:12s} {key}: {t:7.3f} s  peak RSS {r['peak_rss'] / 1e6:8.0f} MB")
            if rep is not None:
                runs[fmt][key].append(r)

    for fmt in fmts:  # unmeasured: warms the page cache, .pyc files and shared libraries
        one(fmt, None)
    for rep in range(args.repeat):
        k = rep % len(fmts)  # rotate the order so no format always runs first
        for fmt in fmts[k:] + fmts[:k]:
            one(fmt, rep)
        if args.zipnn and DATASETS[ds].zipnn:
            tm = paths["tmodel"] if "tmodel" in paths and "tmodel" not in errors else ""
            spec = {"op": "zipnn", "format": "zipnn", "dataset": ds, "path": tm, "shim": args.shim}
            time.sleep(args.pause)
            r = run_worker(spec, args.timeout)
            if "error" in r:
                errors["zipnn"] = r["error"]
                log(f"[{ds}] zipnn: ERROR {r['error']}")
            else:
                zipnn_runs.append(r)
                log(
                    f"[{ds}] rep {rep + 1} zipnn: {r['zipnn_bytes'] / 1e6:,.0f} MB, "
                    f"decode {r['zipnn_decode_s']:.3f} s"
                    + (f"; tmodel decode {r['tmodel_decode_s']:.3f} s" if "tmodel_decode_s" in r else "")
                )
    for p in paths.values():
        if os.path.exists(p):
            os.unlink(p)
    return {
        "runs": runs,
        "errors": errors,
        "zipnn": zipnn_runs,
        "cold": cold,
        "zipnn_wanted": DATASETS[ds].zipnn,
    }


def summarize(ds: str, data: dict[str, Any], fmts: list[str]) -> dict[str, Any]:
    """Medians per format, plus consistency checks."""
    out: dict[str, Any] = {
        "formats": {},
        "problems": [],
        "cold": data.get("cold", False),
        "zipnn_wanted": data.get("zipnn_wanted", False),
    }
    info: dict[str, Any] | None = None
    digests: set[str] = set()
    for fmt in fmts:
        saves, loads = data["runs"][fmt]["save"], data["runs"][fmt]["load"]
        if not saves or not loads:
            continue
        info = info or saves[0]
        digests.update(r["digest"] for r in saves)
        for r in loads:
            if r["digest"] != saves[0]["digest"]:
                out["problems"].append(f"{fmt}: loaded tensors differ from the saved ones (digest mismatch)")
        bases = [r["base_rss"] for r in saves]
        if max(bases) > 1.2 * min(bases):
            out["problems"].append(
                f"{fmt}: RSS after building the dataset varied from {min(bases) / 1e6:,.0f} to "
                f"{max(bases) / 1e6:,.0f} MB over save runs (skews 'save peak RSS', not 'above baseline')"
            )
        if not all(r["rss_reset"] for r in saves + loads):
            out["problems"].append(f"{fmt}: the peak-RSS reset did not take in some run (peaks may be high)")
        out["formats"][fmt] = {
            "file_bytes": median([r["file_bytes"] for r in saves]),
            "save_s": median([r["save_s"] for r in saves]),
            "save_all": [r["save_s"] for r in saves],
            "fsync_s": median([r["fsync_s"] for r in saves]),
            "save_fsync_s": median([r["save_s"] + r["fsync_s"] for r in saves]),
            "save_peak": median([r["peak_rss"] for r in saves]),
            "save_base": median([r["base_rss"] for r in saves]),
            "save_over": median([r["peak_rss"] - r["base_rss"] for r in saves]),
            "load_s": median([r["load_s"] for r in loads]),
            "load_all": [r["load_s"] for r in loads],
            "call_s": median([r["call_s"] for r in loads]),
            "touch_s": median([r["touch_s"] for r in loads]),
            "load_peak": median([r["peak_rss"] for r in loads]),
            "load_base": median([r["base_rss"] for r in loads]),
            "load_over": median([r["peak_rss"] - r["base_rss"] for r in loads]),
            "build_s": median([r["build_s"] for r in saves]),
        }
        v = out["formats"][fmt]
        gets = data["runs"][fmt].get("get", [])
        if gets:
            for which in ("largest", "median"):
                v[f"get_{which}_s"] = median([r[f"get_{which}_s"] for r in gets])
                v[f"get_{which}_name"] = gets[0][f"get_{which}_name"]
            v["open_s"] = median([r["open_s"] for r in gets])
        colds = data["runs"][fmt].get("cold", [])
        if colds:
            v["cold_load_s"] = median([r["load_s"] for r in colds])
            v["cold_all"] = [r["load_s"] for r in colds]
            v["cold_call_s"] = median([r["call_s"] for r in colds])
            v["cold_touch_s"] = median([r["touch_s"] for r in colds])
            v["cold_over"] = median([r["peak_rss"] - r["base_rss"] for r in colds])
            v["cold_resident"] = max(r["resident_after"] for r in colds)
            for r in colds:
                if r["digest"] != saves[0]["digest"]:
                    out["problems"].append(f"{fmt}: cold-loaded tensors differ from the saved ones")
            if not v["cold_resident"] <= 0.05:  # NaN too: eviction could not be checked
                out["problems"].append(
                    f"{fmt}: after the eviction, up to {v['cold_resident']:.0%} of the file was still cached "
                    "(posix_fadvise DONTNEED did not take: tmpfs? try --tmpdir on a disk)"
                )
        for what in ("get", "load"):
            firsts = data["runs"][fmt].get(f"first_{what}", [])
            if firsts:
                v[f"first_{what}"] = {
                    k: median([r[k] for r in firsts]) for k in ("first_s", "warm_s", "first_import_s")
                }
                v[f"first_{what}"]["extra_s"] = median([r["first_s"] - r["warm_s"] for r in firsts])
    if data.get("zipnn"):
        z = data["zipnn"]
        keys = ["zipnn_compress_s", "zipnn_decode_s"] + (
            ["tmodel_decode_s"] if "tmodel_decode_s" in z[0] else []
        )
        out["zipnn"] = {k: median([r[k] for r in z]) for k in keys}
        out["zipnn"].update({k: z[0][k] for k in ("zipnn_bytes", "zipnn_coded_raw", "zipnn_threads")})
        if "tmodel_decode_raw" in z[0]:
            out["zipnn"]["tmodel_decode_raw"] = z[0]["tmodel_decode_raw"]
    if len(digests) > 1:
        out["problems"].append("the dataset was not built identically in every save worker")
    out["info"] = info
    return out


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f}" if n >= 10e6 else f"{n / 1e6:,.1f}"


def _x(ref: float | None, t: float) -> str:
    """How many times faster than the reference (ref time / this time)."""
    return "—" if ref is None or t <= 0 else f"{ref / t:.2f}x"


def render(
    ds: str, desc: str, s: dict[str, Any], fmts: list[str], repeat: int, errors: dict[str, str]
) -> str:
    from bench_formats import FORMATS

    lines: list[str] = [f"### {ds}: {desc}", ""]
    info = s["info"]
    if info is None:
        lines += ["No format completed.", ""]
        for f, e in errors.items():
            lines.append(f"- {FORMATS[f].label if f in FORMATS else f}: {e}")
        return "\n".join(lines) + "\n"
    raw = info["raw_bytes"]
    dt = ", ".join(f"{k} x{v}" for k, v in sorted(info["dtypes"].items()))
    fm = s["formats"]
    lines.append(
        f"{info['tensors']} tensors, {info['params'] / 1e6:,.1f} M params, raw tensor bytes {_mb(raw)} MB "
        f"({dt}); median of {repeat} run(s) each; RSS baseline before save (imports + dataset) "
        f"{_mb(median([v['save_base'] for v in fm.values()]))} MB, before load (imports only) "
        f"{_mb(median([v['load_base'] for v in fm.values()]))} MB; dataset build time (not measured) "
        f"{median([v['build_s'] for v in fm.values()]):.2f} s."
    )
    lines.append("")
    ref = {k: fm.get(k) for k in REFERENCES}
    head = [
        "format",
        "file MB",
        "raw/file",
        "save s",
        "save GB/s",
        "save vs torch.save",
        "save vs safetensors",
        "save+fsync s",
        "save peak RSS MB",
        "save RSS above baseline MB",
        "load s",
        "load GB/s",
        "load vs torch.load",
        "load vs safetensors",
        "load peak RSS MB",
        "load RSS above baseline MB",
    ]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for f in fmts:
        if f not in fm:
            lines.append(
                f"| {FORMATS[f].label} | error: {errors.get(f, 'no result')} |" + " |" * (len(head) - 2)
            )
            continue
        v = fm[f]
        rt = ref["torch"]
        rs = ref["safetensors"]
        row = [
            FORMATS[f].label,
            _mb(v["file_bytes"]),
            f"{raw / v['file_bytes']:.3f}",
            f"{v['save_s']:.3f}",
            f"{raw / v['save_s'] / 1e9:.2f}",
            _x(rt and rt["save_s"], v["save_s"]),
            _x(rs and rs["save_s"], v["save_s"]),
            f"{v['save_fsync_s']:.3f}",
            _mb(v["save_peak"]),
            f"{_mb(v['save_over'])} ({v['save_over'] / raw:.2f}x data)",
            f"{v['load_s']:.3f}",
            f"{raw / v['load_s'] / 1e9:.2f}",
            _x(rt and rt["load_s"], v["load_s"]),
            _x(rs and rs["load_s"], v["load_s"]),
            _mb(v["load_peak"]),
            f"{_mb(v['load_over'])} ({v['load_over'] / raw:.2f}x data)",
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Details (all runs, seconds):")
    lines.append("")
    lines.append("| format | save runs | save+fsync fsync part | load runs | load = call + touch |")
    lines.append("|---|---|---:|---|---|")
    for f in fmts:
        if f in fm:
            v = fm[f]
            lines.append(
                f"| {FORMATS[f].label} | {', '.join(f'{x:.3f}' for x in v['save_all'])} | {v['fsync_s']:.3f} "
                f"| {', '.join(f'{x:.3f}' for x in v['load_all'])} | {v['call_s']:.3f} + {v['touch_s']:.3f} |"
            )
    if any("cold_load_s" in fm[f] for f in fmts if f in fm):
        lines += [
            "",
            "Cold cache (each file evicted with posix_fadvise DONTNEED, after an fsync, just before the "
            "load; load = call + touch of every byte):",
            "",
            "| format | cold load s | cold load GB/s | vs torch.load (cold) | vs safetensors (cold) "
            "| load RSS above baseline MB | cold load runs | call + touch | cached after eviction |",
            "|---|---:|---:|---:|---:|---:|---|---|---:|",
        ]
        ct = fm.get("torch", {}).get("cold_load_s")
        cs = fm.get("safetensors", {}).get("cold_load_s")
        for f in fmts:
            if f in fm and "cold_load_s" in fm[f]:
                v = fm[f]
                lines.append(
                    f"| {FORMATS[f].label} | {v['cold_load_s']:.3f} | {raw / v['cold_load_s'] / 1e9:.2f} "
                    f"| {_x(ct, v['cold_load_s'])} | {_x(cs, v['cold_load_s'])} | {_mb(v['cold_over'])} "
                    f"| {', '.join(f'{x:.3f}' for x in v['cold_all'])} "
                    f"| {v['cold_call_s']:.3f} + {v['cold_touch_s']:.3f} | {v['cold_resident']:.1%} |"
                )
    for p in s["problems"]:
        lines.append(f"\n**PROBLEM**: {p}")
    for f, e in errors.items():
        lines.append(f"\n**ERROR** {FORMATS[f].label if f in FORMATS else f}: {e}")
    return "\n".join(lines) + "\n"


def render_summary(summaries: dict[str, dict[str, Any]], fmts: list[str]) -> str:
    from bench_formats import FORMATS

    lines = [
        "### Summary (medians; 'vs' = times faster than the reference, >1 is better)",
        "",
        "| dataset | format | raw/file | save GB/s | load GB/s | save vs torch.save | save vs safetensors "
        "| load vs torch.load | load vs safetensors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ds, s in summaries.items():
        if s["info"] is None:
            continue
        raw = s["info"]["raw_bytes"]
        fm = s["formats"]
        rt, rs = fm.get("torch"), fm.get("safetensors")
        for f in fmts:
            if f not in fm:
                continue
            v = fm[f]
            lines.append(
                f"| {ds} | {FORMATS[f].label} | {raw / v['file_bytes']:.3f} | {raw / v['save_s'] / 1e9:.2f} "
                f"| {raw / v['load_s'] / 1e9:.2f} | {_x(rt and rt['save_s'], v['save_s'])} "
                f"| {_x(rs and rs['save_s'], v['save_s'])} | {_x(rt and rt['load_s'], v['load_s'])} "
                f"| {_x(rs and rs['load_s'], v['load_s'])} |"
            )
    return "\n".join(lines) + "\n"


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def environment() -> str:
    import safetensors
    import torch
    import zstandard

    import tmodel

    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.1f} GiB RAM"
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    src = os.path.dirname(os.path.realpath(tmodel.__file__))

    def git(*a: str) -> str:
        r = subprocess.run(["git", "-C", src, *a], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    where = src
    try:
        rev = git("rev-parse", "--short", "HEAD")
        if rev:
            dirty = git("status", "--porcelain", "--", ".")
            where += f" (git {rev}{', with uncommitted changes' if dirty else ''})"
        else:
            where += " (not a git checkout)"
    except OSError:
        pass
    return (
        f"tmodel source: {where}  \n"
        f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"safetensors {safetensors.__version__}, tmodel {tmodel.__version__}, "
        f"zstandard {zstandard.__version__}; "
        f"{cpus} CPUs, {mem}; {platform.platform()}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--datasets",
        default="crepe,gpt2,gpt2-bf16,cold240,many",
        help="comma list of crepe,gpt2,gpt2-bf16,1b,cold240,many",
    )
    p.add_argument(
        "--formats",
        default="torch,safetensors,tmodel-raw,tmodel",
        help="comma list of torch,safetensors,tmodel-raw,tmodel (the default: all)",
    )
    p.add_argument("--repeat", type=int, default=3, help="measured runs per (format, dataset, op); medians")
    p.add_argument("--pause", type=float, default=1.0, help="seconds to sleep before each subprocess")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before a subprocess is killed")
    p.add_argument("--tmpdir", default="/tmp", help="parent of the temporary directory for the files")
    p.add_argument(
        "--tmodel-src",
        metavar="DIR",
        help="import tmodel from DIR/src (e.g. a `git worktree` of one commit) instead of the install",
    )
    p.add_argument(
        "--note", help="a line of text to print in the header (e.g. which commit --tmodel-src holds)"
    )
    p.add_argument("--json", metavar="PATH", help="also write every run's raw measurements here")
    p.add_argument("--no-zipnn", dest="zipnn", action="store_false", help="skip the ZipNN reference runs")
    p.add_argument(
        "--cold",
        action="store_true",
        help="also time every load from a cold page cache (the file evicted first) on every dataset; "
        "cold240 always does",
    )
    p.add_argument(
        "--no-first",
        dest="first",
        action="store_false",
        help="skip the first-call workers (tmodel.open + get_tensor and tmodel.load, fresh vs warm process)",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        res = worker(json.loads(args.worker))
        print(RESULT_TAG + json.dumps(res), flush=True)
        return 0
    if args.repeat < 1:
        p.error("--repeat must be >= 1")

    started = time.time()
    tmp = tempfile.mkdtemp(prefix="tmodel-bench-", dir=args.tmpdir)
    summaries: dict[str, dict[str, Any]] = {}
    raw_runs: dict[str, Any] = {}
    try:
        args.shim = None
        if args.tmodel_src:
            args.shim = make_shim(args.tmodel_src, tmp)
            sys.path.insert(0, args.shim)
        from bench_datasets import DATASETS  # after the shim: bench_formats imports tmodel
        from bench_formats import FORMATS

        if args.zipnn and importlib.util.find_spec("zipnn") is None:
            log("zipnn is not installed (pip install --no-deps zipnn): its reference runs are skipped")
            args.zipnn = False
        datasets = [d for d in args.datasets.split(",") if d]
        fmts = [f for f in args.formats.split(",") if f]
        bad = [d for d in datasets if d not in DATASETS] + [f for f in fmts if f not in FORMATS]
        if bad:
            p.error(f"unknown dataset or format: {', '.join(bad)}")
        print("## tmodel benchmark\n")
        print(f"Command: `{' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}`  ")
        if args.note:
            print(f"Note: {args.note}  ")
        print(f"Environment: {environment()}\n", flush=True)
        for ds in datasets:
            why = DATASETS[ds].available()
            if why:
                log(why)
                print(f"### {ds}: skipped\n\n{why}\n", flush=True)
                continue
            t = time.time()
            data = run_dataset(ds, fmts, args, tmp)
            raw_runs[ds] = data
            summaries[ds] = summarize(ds, data, fmts)
            print(render(ds, DATASETS[ds].description, summaries[ds], fmts, args.repeat, data["errors"]))
            print(bench_targets.render(ds, summaries[ds], cpus()))
            print(f"({ds}: {time.time() - t:.0f} s wall)\n", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if summaries:
        print(render_summary(summaries, fmts))
        print(bench_targets.render_all(summaries, cpus()))
    print(f"Total wall time {time.time() - started:.0f} s.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw_runs, f, indent=1)
    problems = any(s["problems"] for s in summaries.values()) or any(d["errors"] for d in raw_runs.values())
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
