"""Crash safety: a save killed with SIGKILL at random moments leaves the target holding either the previous
complete file or the new complete file (both verify), and the next successful save leaves no stray
temporary files. CI runs a reduced count; TMODEL_CRASH_KILLS raises it (the issue asks for >= 200 by hand)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

import tmodel
from tmodel.archive.reader import Reader

KILLS = int(os.environ.get("TMODEL_CRASH_KILLS", "12"))
SAVER = """
import sys, torch, tmodel
torch.manual_seed(int(sys.argv[2]))
state = {f"w{i}": torch.randn(256, 1024) for i in range(24)}
print("ready", flush=True)
tmodel.save(state, sys.argv[1], chunk_size=1 << 18)
"""


def _tmp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_sigkill_at_random_moments_never_leaves_a_partial_target(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.tmodel"
    tmodel.save({"generation": torch.tensor(0)}, target)
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    rng = random.Random(1234)
    probe = tmp_path / "probe.tmodel"  # how long one save takes here: kills land across that window
    proc = subprocess.Popen([sys.executable, str(script), str(probe), "0"], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    t0 = time.monotonic()
    assert proc.wait() == 0
    window = time.monotonic() - t0
    completed = 0
    for k in range(KILLS):
        proc = subprocess.Popen([sys.executable, str(script), str(target), str(k)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.9 * window))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        completed += proc.returncode == 0
        with Reader(target) as reader:  # the previous or the new complete file: both verify
            reader.verify()
            names = [t.name for t in reader.manifest.tensors]
        assert names in (["generation"], [f"w{i}" for i in range(24)])
    assert completed < KILLS, "no save was interrupted: the kill window missed every write"
    probe.unlink()
    tmodel.save({"generation": torch.tensor(1)}, target)
    assert _tmp_files(tmp_path) == []
    assert int(tmodel.load(target)["generation"]) == 1


def test_a_live_writers_temporary_file_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "x.tmodel"
    mine = tmp_path / f".x.tmodel.{os.getpid()}.0123abcd.tmp"
    mine.write_bytes(b"in progress")
    dead = tmp_path / ".x.tmodel.999999999.0123abcd.tmp"
    dead.write_bytes(b"left by a killed writer")
    tmodel.save({"a": torch.ones(1)}, target)
    assert mine.exists() and not dead.exists()
