"""End-to-end example (`make demo`): save a training checkpoint, inspect it, verify it, load it back."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn

import tmodel


def build() -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(1000, 64), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 1000))
    model[3].weight = model[0].weight  # tied input/output embeddings
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10)
    for _ in range(3):
        x = torch.randint(0, 1000, (8, 16))
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model, opt, sched


def cli(*args: str) -> None:
    print(f"$ tmodel {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "tmodel.cli", *args], check=True)


def main() -> None:
    model, opt, sched = build()
    checkpoint = {
        "model": model,  # the module itself: architecture, configs and weights
        "optim": opt.state_dict(),
        "sched": sched.state_dict(),
        "step": 3,
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "checkpoint.tmodel")
        t0 = time.perf_counter()
        tmodel.save(checkpoint, path, metadata={"run": "demo", "epochs": 1, "lr": 1e-3, "tags": ["example"]})
        unique = {t.data_ptr(): t for t in model.state_dict().values()}.values()  # the tied weight once
        raw = sum(t.numel() * t.element_size() for t in unique)
        print(f"saved {path} in {time.perf_counter() - t0:.3f}s: {os.path.getsize(path):,} bytes on disk")
        print(f"(the model's parameters alone are {raw:,} bytes raw; the tied weight is stored once)\n")
        cli("inspect", path)
        cli("verify", path)
        loaded = tmodel.load(path)
        rebuilt = loaded["model"]
        state = rebuilt.state_dict()
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
        assert rebuilt[3].weight is rebuilt[0].weight  # still one tied Parameter
        fresh_opt = torch.optim.AdamW(rebuilt.parameters(), lr=1e-3)
        fresh_opt.load_state_dict(loaded["optim"])
        fresh_sched = torch.optim.lr_scheduler.StepLR(fresh_opt, step_size=10)
        fresh_sched.load_state_dict(loaded["sched"])
        assert loaded["rng"]["python"] == checkpoint["rng"]["python"]
        print("\nloaded it back: the model rebuilt from its architecture, every tensor bit-exact,")
        print("tied weights still one Parameter; optimizer and scheduler restored into fresh objects.")
        with tmodel.open(path) as f:
            rows = f.get_slice("model.0.weight")[:2, :4]
            shape = tuple(rows.shape)
            print(f"lazy read of model.0.weight[:2, :4] -> {shape}; {len(f.keys())} tensors in the file")


if __name__ == "__main__":
    main()
