"""The byte-group split and merge of SPEC.md §6.3 with torch, off the GIL; the codecs take them in place of
their pure-Python reference versions, and must produce the same bytes."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

import torch

from .memory import wrap

_SHIFT_OR = {2: torch.int16} if sys.byteorder == "little" else {}


def torch_merge(planes: Sequence[bytes | bytearray | memoryview], width: int, out: memoryview) -> None:
    """The byte-group merge of SPEC.md §6.3 with torch, off the GIL. On little-endian hosts, width 2 is
    built as integers (top plane, shifted left 8, or-ed with the low one), which measured faster than
    interleaving; wider widths interleave with `stack`, one pass over the output instead of shift-or's
    2w - 1 (figures: benchmarks/RESULTS.md)."""
    if len(out) == 0:
        return
    dst = torch.frombuffer(out, dtype=torch.uint8)
    wide = _SHIFT_OR.get(width)
    if wide is None:
        torch.stack([wrap(p) for p in planes], dim=1, out=dst.view(-1, width))
        return
    acc = dst.view(wide)
    acc.copy_(wrap(planes[-1]))
    for plane in reversed(planes[:-1]):
        acc.bitwise_left_shift_(8)
        acc.bitwise_or_(wrap(plane))


def torch_split(data: bytes | bytearray | memoryview, width: int) -> list[bytes | bytearray | memoryview]:
    """The byte planes of SPEC.md §6.3 with torch, off the GIL: one strided copy per plane, several times
    faster than slicing bytes. Planes are bytearrays, not torch tensors: torch's aligned allocations, freed
    on other threads, raised a save's peak RSS (figures: benchmarks/RESULTS.md)."""
    if width == 1:
        return [data]
    rows = wrap(data).view(-1, width)
    planes: list[bytes | bytearray | memoryview] = []
    for k in range(width):
        plane = bytearray(len(data) // width)
        torch.frombuffer(plane, dtype=torch.uint8).copy_(rows[:, k])
        planes.append(plane)
    return planes


_init_lock = threading.Lock()


def one_intra_op_thread() -> None:
    """Run as the initializer of tmodel's own encode / decode worker threads: their torch ops (the merges
    and splits above) then run on the worker alone, not also on torch's intra-op pool. The workers are
    the parallelism (`threads=`); each of them also fanning out to the pool put more threads than cores
    to work and made the pool's threads wait on each other: a compressed load at threads=1 ran about 4x
    slower than at threads=2 on a busy 2-CPU machine, and now runs within 2x of it (the test
    `test_threads_1_is_no_slower_than_twice_threads_2` holds that).

    torch.set_num_threads(n) sets the calling thread's count, and also the default that threads touching
    torch for the first time start with, and MKL's count. So the worker sets 1 for itself, then a short
    helper thread sets the previous value back, which restores the default and MKL for everyone else and
    leaves this worker at 1 (a default never set becomes explicit, at the same count). Under the lock no
    other worker starts in between; a thread elsewhere that first touches torch in that instant starts at
    1 thread, and MKL runs on 1 thread meanwhile (microseconds, once per worker)."""
    with _init_lock:
        keep = torch.get_num_threads()
        if keep == 1:
            return
        torch.set_num_threads(1)
        helper = threading.Thread(target=torch.set_num_threads, args=(keep,), name="tmodel-threads")
        helper.start()
        helper.join()
