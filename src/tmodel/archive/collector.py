"""Python's cyclic garbage collector paused while a manifest becomes objects (reading, and the writer's
check of what it writes)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a manifest becomes objects: they are all alive and
    acyclic, and the collections their allocation triggers would scan the whole heap for nothing (in a
    process that has imported torch, that made some opens many times slower). It runs again afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
