"""Benchmark: loading a whole GPT-2 small model against loading its state dict and transformers' loader.

`python benchmarks/bench_whole_model.py` builds transformers' `GPT2LMHeadModel(GPT2Config())` (random
init, seed 0), saves it three ways in a temporary directory, then times in this one process (median of
--repeat runs after one warm-up, warm page cache):

1. `tmodel.load` of the whole model (rebuilt from its records: dry run on meta, then constructed with
   parameters on the meta device and filled with the file's tensors);
2. `tmodel.load` of its state dict file (tensors only, no module built);
3. `GPT2LMHeadModel.from_pretrained(folder)` of a `save_pretrained` safetensors folder.

It prints the ratios (1)/(2) (target <= 1.3) and (1)/(3) (target <= 2.0) with PASS/FAIL, and each
loader's peak RSS above the imports, measured in a fresh subprocess per loader (`ru_maxrss` only grows).
Both tmodel files are written with --codec (default raw: mapped, not decoded).

GPT-2 is saved whole through `tmodel.integrations.transformers`: its record is
`transformers.GPT2LMHeadModel` with its `GPT2Config` as data; every inner class is built by its parent.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import tmodel
import tmodel.nn.builtins  # torch.nn's layers registered before the probe below


def _registered_gpt2() -> Any:
    """GPT2LMHeadModel, registered through the shipped integration (the one import line a user writes)."""
    from transformers import GPT2LMHeadModel

    import tmodel.integrations.transformers  # noqa: F401

    return GPT2LMHeadModel


def _make(folder: Path, codec: str) -> None:
    from transformers import GPT2Config

    model_cls = _registered_gpt2()
    torch.manual_seed(0)
    model = model_cls(GPT2Config()).eval()
    tmodel.save(model, folder / "whole.tmodel", codec=codec)
    tmodel.save(model.state_dict(), folder / "sd.tmodel", codec=codec)
    model.save_pretrained(folder / "hf", safe_serialization=True)
    back = tmodel.load(folder / "whole.tmodel")
    sd, got = model.state_dict(), back.state_dict()
    assert sd.keys() == got.keys() and all(torch.equal(sd[k], got[k]) for k in sd), "round trip differs"
    assert back.lm_head.weight is back.transformer.wte.weight, "tie lost"


def _loader(which: str, folder: Path) -> Any:
    if which == "whole":
        _registered_gpt2()
        return lambda: tmodel.load(folder / "whole.tmodel")
    if which == "sd":
        return lambda: tmodel.load(folder / "sd.tmodel")
    model_cls = _registered_gpt2()
    return lambda: model_cls.from_pretrained(folder / "hf")


def _median_seconds(loaders: dict[str, Any], repeat: int) -> dict[str, float]:
    """Median seconds of each loader over `repeat` rounds, the loaders taking turns within each round
    (so that a slow spell of the machine falls on all of them), after one warm-up each."""
    for fn in loaders.values():
        fn()  # warm-up: page cache, lazy imports
    times: dict[str, list[float]] = {k: [] for k in loaders}
    for _ in range(repeat):
        for k, fn in loaders.items():
            began = time.perf_counter()
            out = fn()
            times[k].append(time.perf_counter() - began)
            del out
    return {k: statistics.median(v) for k, v in times.items()}


def _hwm_kb() -> int:
    """This process's peak RSS in KiB (VmHWM: unlike ru_maxrss, not inherited from a parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_mb(which: str, folder: Path) -> float:
    """Peak RSS of one load in a fresh process, above its peak after imports and registration (mapped
    file pages a loader touches count, as the kernel counts them)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import bench_whole_model as b; "
        "from pathlib import Path; fn = b._loader(sys.argv[2], Path(sys.argv[3])); "
        "base = b._hwm_kb(); out = fn(); print((b._hwm_kb() - base) / 1024)"
    )
    here = str(Path(__file__).resolve().parent)
    done = subprocess.run(
        [sys.executable, "-c", code, here, which, str(folder)], capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--codec", default="raw")
    parser.add_argument("--tmpdir", default=None)
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as d:
        folder = Path(d)
        _make(folder, args.codec)
        names = {
            "whole": "tmodel.load(whole model)",
            "sd": "tmodel.load(state dict)",
            "hf": "from_pretrained",
        }
        secs = _median_seconds({k: _loader(k, folder) for k in names}, args.repeat)
        peaks = {k: _peak_mb(k, folder) for k in names}
    print(
        f"GPT-2 small (GPT2Config()), codec={args.codec}, median of {args.repeat} runs, "
        f"torch {torch.__version__}"
    )
    for k, label in names.items():
        print(f"  {label:28s} {secs[k] * 1000:8.1f} ms   peak RSS +{peaks[k]:7.1f} MB")
    ok = True
    for num, den, target in (("whole", "sd", 1.3), ("whole", "hf", 2.0)):
        ratio = secs[num] / secs[den]
        passed = ratio <= target
        ok &= passed
        print(f"  ({num})/({den}) = {ratio:.2f}  target <= {target}  {'PASS' if passed else 'FAIL'}")
    print(f"  this process's peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
