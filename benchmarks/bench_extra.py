"""The benchmark's extra operations, each run in a fresh worker like save and load:

- `zipnn`: ZipNN's size and decode speed on the same tensors (the compression reference of issue 6), and
  in the same worker, at the same thread count, tmodel's decode of its compressed file (issue 18);
- `get`: reading one tensor from a saved file through the lazy API (`safe_open` / `tmodel.open`), for the
  largest tensor and a median-sized one; and the open alone (open, list the names, close);
- `first`: the first `tmodel.open` + `get_tensor` (or `tmodel.load`) in a fresh process, `import tmodel`
  included, against the same call repeated in the now warm process (`first_op`; it imports nothing of
  tmodel before its clock starts, so this module must not either).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

#: decode runs timed (after one unmeasured) per worker for ZipNN and for tmodel; the median is kept
DECODE_RUNS = 3
#: warm calls timed after the first one in a `first` worker (the median is the warm figure): at most
#: WARM_CALLS, and no more than 2 once they took WARM_BUDGET_S seconds in all
WARM_CALLS = 5
WARM_BUDGET_S = 3.0
#: each get (open + get_tensor + touch) and open timing: the median of up to GET_RUNS calls in one worker,
#: fewer once they took GET_BUDGET_S seconds in all
GET_RUNS = 3
GET_BUDGET_S = 1.0

#: ZipNN's name for the dtypes it byte-groups; other tensors are counted at their raw size.
_ZIPNN_DTYPES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}


def _median_time(fn: Callable[[], Any], runs: int) -> float:
    """One unmeasured call (faults in code and allocator pools alike for every contender), then the median
    wall time of `runs` calls; each result is dropped before the next call."""
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        del out
    return statistics.median(times)


def zipnn_op(
    tensors: list[tuple[str, torch.Tensor]], threads: int, tmodel_path: str | None = None
) -> dict[str, Any]:
    """Compress every float tensor with ZipNN on `threads` threads (on a copy: zipnn 0.5.4 scrambles its
    input), then decode them all (median of DECODE_RUNS after one unmeasured); sizes in bytes, times in
    seconds. With `tmodel_path` (the compressed tmodel file of the same tensors), then also time
    `tmodel.load(path, threads=threads)` the same way, from the warm page cache: tmodel's decode of every
    blob into fresh memory, checksums included, for the same data at the same thread count."""
    import zipnn

    coders: dict[str, Any] = {}
    frames: list[tuple[Any, bytes, int]] = []
    size = 0
    compress_s = 0.0
    for _, t in tensors:
        raw = t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        kind = _ZIPNN_DTYPES.get(t.dtype)
        if kind is None or not raw:
            size += len(raw)
            continue
        if kind not in coders:
            coders[kind] = zipnn.ZipNN(input_format="byte", bytearray_dtype=kind, threads=threads)
        t0 = time.perf_counter()
        frame = coders[kind].compress(bytearray(raw))
        compress_s += time.perf_counter() - t0
        frames.append((coders[kind], bytes(frame), len(raw)))
        size += len(frame)
    raw_bytes = sum(t.numel() * t.element_size() for _, t in tensors)

    def decode_all() -> list[Any]:
        outs = []
        for coder, frame, n in frames:
            out = coder.decompress(frame)
            if len(out) != n:
                raise RuntimeError(f"zipnn decoded {len(out)} bytes, expected {n}")
            outs.append(out)
        return outs

    res: dict[str, Any] = {
        "zipnn_bytes": size,
        "zipnn_compress_s": compress_s,
        "zipnn_decode_s": _median_time(decode_all, DECODE_RUNS),
        "zipnn_coded_raw": sum(n for _, _, n in frames),
        "zipnn_threads": threads,
    }
    frames.clear()
    if tmodel_path:
        import tmodel

        res["tmodel_decode_s"] = _median_time(lambda: tmodel.load(tmodel_path, threads=threads), DECODE_RUNS)
        res["tmodel_decode_raw"] = raw_bytes
    return res


def pick_names(shapes: dict[str, list[int]]) -> dict[str, str]:
    """The largest tensor, the median-sized one and the smallest (by element count, ties by name)."""
    order = sorted(shapes, key=lambda k: (_numel(shapes[k]), k))
    return {"largest": order[-1], "median": order[len(order) // 2], "smallest": order[0]}


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def get_op(fmt: str, path: str, touch: Any) -> dict[str, Any]:
    """Open the file, read one tensor, touch every byte of it: seconds per picked tensor."""
    res: dict[str, Any] = {}
    if fmt == "safetensors":
        from safetensors import safe_open

        def opener() -> Any:
            return safe_open(path, framework="pt")
    else:
        import tmodel

        def opener() -> Any:
            return tmodel.open(path)

    with opener() as f:  # unmeasured: lists the shapes, and reads the smallest tensor once, so that what
        shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        picks = pick_names(shapes)  # a first read imports or starts lazily is not in the timings
        touch({"t": f.get_tensor(picks["smallest"])})

    def timed(fn: Callable[[], Any]) -> float:
        """Median of up to GET_RUNS calls (fewer once they took GET_BUDGET_S); each result dropped
        outside the clock (unmapping 200 MB takes milliseconds)."""
        times: list[float] = []
        while len(times) < GET_RUNS and sum(times) < GET_BUDGET_S:
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
            del out
        return statistics.median(times)

    def open_names() -> int:  # the open alone: parse the header / manifest, list the names, close
        with opener() as f:
            return len(f.keys())

    res["open_s"] = timed(open_names)
    res["open_names"] = len(shapes)
    for label in ("largest", "median"):
        name = picks[label]

        def get(name: str = name, label: str = label) -> Any:
            with opener() as f:
                t = f.get_tensor(name)
            touch({"t": t})
            res[f"get_{label}_bytes"] = t.numel() * t.element_size()
            return t

        res[f"get_{label}_s"] = timed(get)
        res[f"get_{label}_name"] = name
    return res


def first_op(what: str, path: str, name: str, touch: Any) -> dict[str, Any]:
    """`what` = "get": `import tmodel`, `tmodel.open(path)`, `get_tensor(name)`, touch, close; "load":
    `import tmodel`, `tmodel.load(path)`, touch. torch is imported before (outside the clock); tmodel must
    not be imported yet. The first call is timed, then up to WARM_CALLS more in the same process (median)."""
    if "tmodel" in sys.modules or "tmodel.api" in sys.modules:
        raise RuntimeError("first_op: tmodel was imported before the clock started")

    def call() -> None:
        if what == "get":
            with tmodel.open(path) as f:
                t = f.get_tensor(name)
            touch({"t": t})
        else:
            touch(tmodel.load(path))

    t0 = time.perf_counter()
    import tmodel  # timed: part of the first call's cost

    t1 = time.perf_counter()
    call()
    t2 = time.perf_counter()
    warm: list[float] = []
    while len(warm) < WARM_CALLS and (len(warm) < 2 or sum(warm) < WARM_BUDGET_S):
        t3 = time.perf_counter()
        call()
        warm.append(time.perf_counter() - t3)
    return {
        "first_import_s": t1 - t0,
        "first_s": t2 - t0,
        "warm_s": statistics.median(warm),
        "warm_calls": len(warm),
        "first_name": name,
    }
