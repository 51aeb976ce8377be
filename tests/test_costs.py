"""Costs grow with the file, not faster (issue 13 point 7): work is counted in line events executed inside
the tmodel package, which is deterministic on a loaded machine, and compared for inputs of size N and 4N."""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import torch
from test_corruption import build, split
from torch import nn

import tmodel
from tmodel.archive.reader import Reader
from tmodel.errors import LimitExceeded, UnsupportedType
from tmodel.interop.convert import convert
from tmodel.limits import Limits
from tmodel.manifest.chunks import ChunkTable

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
    small()  # once untraced: first-call costs (imports, caches) are not the input's
    return lines_run(large) / lines_run(small)


def test_many_module_roots_rebuild_in_linear_time(tmp_path: Path) -> None:
    def work(n: int) -> Callable[[], Any]:
        path = tmp_path / f"roots{n}.tmodel"
        tmodel.save({f"m{i}": nn.Identity() for i in range(n)}, path)
        return lambda: tmodel.load(path)

    assert ratio(work, 200) < 4.4


def _doubling(levels: int) -> list[Any]:
    """A list whose two items are one list, `levels` times: 2**levels leaves in a few bytes of pickle."""
    a: list[Any] = [0]
    for _ in range(levels):
        a = [a, a]
    return a


def test_saving_shared_sub_lists_is_refused_in_linear_time(tmp_path: Path) -> None:
    def attempt(levels: int) -> Callable[[], Any]:
        def run() -> None:
            with pytest.raises(UnsupportedType, match=r"expands to more than 268435456 nodes"):
                tmodel.save(_doubling(levels), tmp_path / "x.tmodel")

        return run

    attempt(60)()  # once untraced: first-call costs (imports, caches) are not the input's
    assert lines_run(attempt(240)) < 4.4 * lines_run(attempt(60))
    assert not (tmp_path / "x.tmodel").exists()


def test_convert_of_a_pickle_with_shared_sub_lists_is_refused_fast(tmp_path: Path) -> None:
    src = tmp_path / "x.pt"
    torch.save(_doubling(60), src)
    assert src.stat().st_size < 2000
    caught: list[UnsupportedType] = []

    def run() -> None:
        with pytest.raises(UnsupportedType) as exc:
            convert(src, tmp_path / "x.tmodel")
        caught.append(exc.value)

    assert lines_run(run) < 20_000
    assert caught[0].code == "UNSUPPORTED_TYPE"
    assert not (tmp_path / "x.tmodel").exists()


def test_shared_sub_lists_within_the_limit_are_stored_once_per_place(tmp_path: Path) -> None:
    path = tmp_path / "x.tmodel"
    tmodel.save(_doubling(3), path)
    back = tmodel.load(path)
    assert back == [[[[0], [0]], [[0], [0]]], [[[0], [0]], [[0], [0]]]]
    assert back[0] is not back[1]


def _doubling_records(path: Path, levels: int) -> Path:
    """A file whose record i has the children "0" and "1", both record i + 1: 2**levels paths to the last."""
    tmodel.save({"t": torch.zeros(1)}, path)
    header, region, wire = split(path.read_bytes())
    wire["modules"] = [
        {
            "type": "torch.nn.Sequential",
            "version": 1,
            "config": {},
            "parameters": {},
            "buffers": {},
            "children": {"0": i + 1, "1": i + 1},
            "training": True,
        }
        for i in range(levels)
    ] + [
        {
            "type": "torch.nn.Identity",
            "version": 1,
            "config": {},
            "parameters": {},
            "buffers": {},
            "children": {},
            "training": True,
        }
    ]
    wire["root"] = {"dict": [["t", {"tensor": 0}], ["m", {"module": 0}]]}
    return build(path, wire, region, header)


def test_shared_module_records_are_refused_past_max_module_paths_fast(tmp_path: Path) -> None:
    path = _doubling_records(tmp_path / "dag.tmodel", 60)

    def run() -> None:
        with pytest.raises(LimitExceeded, match=r"more than 1000000 paths from the object tree"):
            tmodel.open(path)

    assert lines_run(run) < 200_000


def test_shared_module_records_within_max_module_paths_are_walked_once_per_path(tmp_path: Path) -> None:
    path = _doubling_records(tmp_path / "dag.tmodel", 3)  # 1 + 2 + 4 + 8 = 15 paths
    assert tmodel.load(path, limits=Limits(max_module_paths=15))["m"][1][0][1] is not None
    with pytest.raises(LimitExceeded):
        tmodel.open(path, limits=Limits(max_module_paths=14))


def test_decoding_one_byte_chunks_keeps_memory_to_threads_times_chunk(tmp_path: Path) -> None:
    """Beyond the manifest and the output, decoding holds 8 bytes a chunk (its file offset) and a few jobs
    per thread, not an object per chunk."""
    n = 1 << 15
    path = tmp_path / "bytes.tmodel"
    values = torch.randint(0, 255, (n,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    tmodel.save({"w": values}, path, chunk_size=1)
    with Reader(path) as r:
        assert len(r.manifest.blobs[0].chunks) == n
        out = bytearray(n)
        r.decode(0, memoryview(out))  # the thread pool, once
        tracemalloc.start()
        try:
            r.decode(0, memoryview(out))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert bytes(out) == values.numpy().tobytes()
    assert peak < 16 * n


def test_a_parsed_manifest_holds_chunks_packed(tmp_path: Path) -> None:
    """A blob's chunk list is kept as bytes and arrays (tens of bytes a chunk), written back unchanged."""
    n = 1 << 15
    path = tmp_path / "bytes.tmodel"
    tmodel.save({"w": torch.zeros(n, dtype=torch.uint8)}, path, chunk_size=1)
    _, _, wire = split(path.read_bytes())
    tracemalloc.start()
    try:
        r = Reader(path)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    with r:
        chunks = r.manifest.blobs[0].chunks
        assert isinstance(chunks, ChunkTable)
        assert r.manifest.to_wire() == wire
        last = wire["blobs"][0]["chunks"][-1]
        assert chunks[-1] == (last["digest"], tuple(last["segments"]))
    assert held < 48 * n


def test_chunk_tables_refuse_what_the_chunk_schema_refuses() -> None:
    good = {"digest": b"12345678", "segments": [1]}
    assert list(ChunkTable([good])) == [(b"12345678", (1,))]
    assert ChunkTable([good]) == ChunkTable([dict(good)])
    assert ChunkTable([good]) != ChunkTable([good, good])
    for bad in (
        [{"digest": "12345678", "segments": [1]}],
        [{"digest": b"", "segments": [True]}],
        [{"digest": b"", "segments": [-1]}],
        [{"digest": b"", "segments": [1 << 63]}],
        [{"digest": b"", "segments": (1,)}],
        [{"digest": b"", "segments": [1], "x": 1}],
        [{"digest": b""}],
        [[b"", [1]]],
        ({"digest": b"", "segments": [1]},),
    ):
        with pytest.raises(ValueError):
            ChunkTable(bad)


def test_opening_a_file_of_one_byte_chunks_peaks_at_a_few_times_its_manifest(tmp_path: Path) -> None:
    """The manifest is decoded with each blob's chunk maps packed a batch at a time (never a Python map
    per chunk): peak memory while opening stays within a few times the manifest's own bytes."""
    n = 1 << 17
    path = tmp_path / "bytes.tmodel"
    tmodel.save({"w": torch.zeros(n, dtype=torch.uint8)}, path, chunk_size=1)
    Reader(path).close()  # imports and caches, once
    tracemalloc.start()
    try:
        with Reader(path) as r:
            assert len(r.manifest.blobs[0].chunks) == n
            peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * path.stat().st_size  # the file is its manifest here; a map per chunk was 17 times
