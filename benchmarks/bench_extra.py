"""The benchmark's two extra operations, each run in a fresh worker like save and load:

- `zipnn`: ZipNN's size and decode speed on the same tensors (the compression reference of issue 6);
- `get`: reading one tensor from a saved file through the lazy API (`safe_open` / `tmodel.open`), for the
  largest tensor and a median-sized one.
"""

from __future__ import annotations

import time
from typing import Any

import torch

#: ZipNN's name for the dtypes it byte-groups; other tensors are counted at their raw size.
_ZIPNN_DTYPES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}


def zipnn_op(tensors: list[tuple[str, torch.Tensor]], threads: int) -> dict[str, Any]:
    """Compress every float tensor with ZipNN on `threads` threads (on a copy: zipnn 0.5.4 scrambles its
    input), then decode them all; sizes in bytes, times in seconds."""
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
    t0 = time.perf_counter()
    for coder, frame, n in frames:
        out = coder.decompress(frame)
        if len(out) != n:
            raise RuntimeError(f"zipnn decoded {len(out)} bytes, expected {n}")
    decode_s = time.perf_counter() - t0
    return {
        "zipnn_bytes": size,
        "zipnn_compress_s": compress_s,
        "zipnn_decode_s": decode_s,
        "zipnn_coded_raw": sum(n for _, _, n in frames),
        "zipnn_threads": threads,
    }


def pick_names(shapes: dict[str, list[int]]) -> dict[str, str]:
    """The largest tensor and the median-sized one (by element count, ties by name)."""
    order = sorted(shapes, key=lambda k: (_numel(shapes[k]), k))
    return {"largest": order[-1], "median": order[len(order) // 2]}


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

    with opener() as f:
        shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    for label, name in pick_names(shapes).items():
        t0 = time.perf_counter()
        with opener() as f:
            t = f.get_tensor(name)
        touch({"t": t})
        res[f"get_{label}_s"] = time.perf_counter() - t0
        res[f"get_{label}_name"] = name
        res[f"get_{label}_bytes"] = t.numel() * t.element_size()
        del t  # freed here, not inside the next pick's timing (unmapping 200 MB takes milliseconds)
    return res
