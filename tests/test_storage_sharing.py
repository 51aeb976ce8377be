"""Property: tensors that share memory in any way (slices, transposes, dtype views of other item sizes,
.real/.imag, numpy storages over one buffer, overlapping as_strided views), anywhere in a nested
checkpoint, round-trip bit-exact with their sharing kept, or are refused at save with a code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tmodel

DTYPES = [torch.uint8, torch.int16, torch.float32, torch.float64, torch.complex64]
NUMPY = {torch.uint8: np.uint8, torch.int16: np.int16, torch.float32: np.float32, torch.float64: np.float64}
SIZE = 96  # bytes of the shared memory


@st.composite
def views(draw: st.DrawFn, base: torch.Tensor, buffer: bytearray) -> torch.Tensor:
    """One tensor reaching into `base`'s memory (or a numpy storage over `buffer`, the same bytes)."""
    dtype = draw(st.sampled_from(DTYPES))
    size = torch.empty(0, dtype=dtype).element_size()
    start = draw(st.integers(0, SIZE // size - 1))
    count = draw(st.integers(1, SIZE // size - start))
    if dtype in NUMPY and draw(st.booleans()):
        t = torch.from_numpy(np.frombuffer(buffer, dtype=NUMPY[dtype], count=count, offset=start * size))
    else:
        t = base.view(dtype)[start : start + count]
    kind = draw(st.sampled_from(["plain", "step", "transpose", "strided", "part"]))
    if kind == "step":
        t = t[:: draw(st.integers(1, 3))]
    elif kind == "transpose" and t.numel() % 2 == 0 and t.numel() > 1:
        t = t.view(2, -1).t()
    elif kind == "strided":
        n = draw(st.integers(1, t.numel()))
        t = t.as_strided((n,), (1,), t.storage_offset())  # overlapping windows of one storage
    elif kind == "part" and t.is_complex():
        t = t.real if draw(st.booleans()) else t.imag
    return t


@st.composite
def checkpoints(draw: st.DrawFn) -> tuple[Any, list[torch.Tensor]]:
    buffer = bytearray(draw(st.binary(min_size=SIZE, max_size=SIZE)))
    base = torch.frombuffer(buffer, dtype=torch.uint8)  # the same bytes as the numpy views
    tensors = draw(st.lists(views(base, buffer), min_size=1, max_size=5))
    obj: Any = {"a": [], "b": {"c": {}}}
    for i, t in enumerate(tensors):
        where = draw(st.sampled_from(["top", "list", "nested"]))
        if where == "top":
            obj[f"t{i}"] = t
        elif where == "list":
            obj["a"].append({"x": t})
        else:
            obj["b"]["c"][f"t{i}"] = t
    return obj, tensors


def _flat(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _flat(v)]
    return [t for v in obj for t in _flat(v)]


def _bits(t: torch.Tensor) -> bytes:
    return bytes(t.numpy().tobytes())


def _span(t: torch.Tensor) -> tuple[int, int]:
    lo = t.data_ptr()
    return lo, lo + t.element_size() * (
        1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride(), strict=True))
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(checkpoints())
def test_shared_memory_round_trips_or_is_refused(tmp_path_factory: Any, case: Any) -> None:
    obj, _ = case
    saved = _flat(obj)
    path: Path = tmp_path_factory.mktemp("s") / "x.tmodel"
    try:
        tmodel.save(obj, path)
    except tmodel.TModelError as exc:
        assert exc.code == "UNSUPPORTED_TYPE"
        assert "cannot be aligned" in str(exc)  # misaligned memory (SPEC.md §11), never a bad plan
        assert list(path.parent.iterdir()) == []
        return
    loaded = _flat(tmodel.load(path, mmap=False))
    assert len(loaded) == len(saved)
    for a, b in zip(saved, loaded, strict=True):
        assert (b.dtype, b.shape) == (a.dtype, a.shape)
        assert _bits(b) == _bits(a)
    for i, a in enumerate(saved):
        for j in range(i):
            (alo, ahi), (blo, bhi) = _span(a), _span(saved[j])
            if alo < bhi and blo < ahi:  # reached the same bytes at save: one storage after load
                assert loaded[i].untyped_storage().data_ptr() == loaded[j].untyped_storage().data_ptr()
                assert loaded[i].stride() == a.stride()
    # writing through one tensor is seen by every tensor it shared memory with, as before saving
    first = saved[0]
    if (
        all(s > 0 for s in first.stride())
        and len(set(zip(first.stride(), first.shape, strict=True))) == first.dim()
    ):
        first.fill_(7)
        loaded[0].fill_(7)
        for a, b in zip(saved, loaded, strict=True):
            assert _bits(b) == _bits(a)
