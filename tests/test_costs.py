"""Costs grow with the file, not faster (issue 13 point 7): work is counted in line events executed inside
the tmodel package, which is deterministic on a loaded machine, and compared for inputs of size N and 4N."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from torch import nn

import tmodel

PACKAGE = str(Path(tmodel.__file__).parent)


def lines_run(fn: Callable[[], Any]) -> int:
    """Line events executed inside the tmodel package while `fn` runs."""
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def call(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename.startswith(PACKAGE) else None

    sys.settrace(call)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


def ratio(work: Callable[[int], Callable[[], Any]], n: int) -> float:
    """Work for an input of size 4n over work for size n: 4 when linear, 16 when quadratic."""
    small, large = work(n), work(4 * n)
    return lines_run(large) / lines_run(small)


def test_many_module_roots_rebuild_in_linear_time(tmp_path: Path) -> None:
    def work(n: int) -> Callable[[], Any]:
        path = tmp_path / f"roots{n}.tmodel"
        tmodel.save({f"m{i}": nn.Identity() for i in range(n)}, path)
        return lambda: tmodel.load(path)

    assert ratio(work, 200) < 4.4
