"""Atomic, durable, streaming writes: a failed save leaves the previous file untouched and no temporary
files behind; a successful one fsyncs the file before the rename and the directory after it; memory stays
bounded by chunk size × threads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

import tmodel
import tmodel.api
import tmodel.archive.writer
from tmodel.archive.reader import Reader
from tmodel.errors import TModelError


class Boom(Exception):
    pass


class HardStop(BaseException):  # like KeyboardInterrupt: not an Exception
    pass


@pytest.fixture
def previous(tmp_path: Path) -> tuple[Path, bytes]:
    """A directory holding one valid file, the target the failing saves try to replace."""
    target = tmp_path / "ckpt.tmodel"
    tmodel.save({"old": torch.arange(100, dtype=torch.float32)}, target, chunk_size=64)
    return target, target.read_bytes()


def assert_untouched(target: Path, before: bytes) -> None:
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temporary files
    assert torch.equal(tmodel.load(target)["old"], torch.arange(100, dtype=torch.float32))


def test_unsupported_value_is_refused_before_writing(
    previous: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, before = previous
    calls: list[Any] = []
    monkeypatch.setattr(tmodel.api, "write_atomic", lambda *a, **k: calls.append(a))
    with pytest.raises(TModelError) as info:
        tmodel.save({"new": torch.ones(1000), "bad": object()}, target)
    assert info.value.code == "UNSUPPORTED_TYPE"
    assert calls == []  # refused while flattening, before any file was created
    assert_untouched(target, before)


@pytest.mark.parametrize("exc", [Boom, HardStop])
@pytest.mark.parametrize("threads", [1, 2])
def test_encoder_failure_after_first_chunk(
    previous: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch, exc: type[BaseException], threads: int
) -> None:
    target, before = previous
    real = tmodel.archive.writer.encode_chunk
    lock = threading.Lock()
    count = [0]

    def failing(*args: Any) -> Any:
        with lock:
            count[0] += 1
            n = count[0]
        if n > 1:
            raise exc("encoder died")
        return real(*args)

    monkeypatch.setattr(tmodel.archive.writer, "encode_chunk", failing)
    with pytest.raises(exc, match="encoder died"):
        tmodel.save({"new": torch.randn(4096)}, target, chunk_size=256, threads=threads)
    assert count[0] >= 2
    monkeypatch.undo()
    assert_untouched(target, before)


def test_progress_callback_failure(previous: tuple[Path, bytes]) -> None:
    target, before = previous
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if len(seen) == 3:
            raise Boom("stop")

    with pytest.raises(Boom):
        tmodel.save({"new": torch.randn(1024)}, target, chunk_size=256, progress=progress)
    assert seen == [(256, 4096), (512, 4096), (768, 4096)]
    assert_untouched(target, before)


def test_manifest_failure_after_blobs(previous: tuple[Path, bytes]) -> None:
    """A string msgpack cannot encode fails only when the manifest is packed, after the blobs were
    written: the temporary file must still go away and the target stay untouched."""
    target, before = previous
    with pytest.raises(BaseException):  # noqa: B017 - the point is what remains on disk
        tmodel.save({"new": torch.randn(1024), "s": "\ud800"}, target)
    assert_untouched(target, before)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(TModelError) as info:
        tmodel.save({"x": torch.ones(2)}, tmp_path / "no" / "such" / "x.tmodel")
    assert info.value.code == "IO_ERROR"


def test_target_is_a_directory(tmp_path: Path) -> None:
    target = tmp_path / "dir.tmodel"
    target.mkdir()
    (target / "inside").write_bytes(b"keep")
    with pytest.raises((TModelError, OSError)):
        tmodel.save({"x": torch.ones(2)}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.tmodel"]
    assert (target / "inside").read_bytes() == b"keep"


def test_successful_save_leaves_only_the_target(previous: tuple[Path, bytes]) -> None:
    target, before = previous
    new = {"new": torch.randn(3000)}
    tmodel.save(new, target, chunk_size=512, threads=2)
    assert target.read_bytes() != before
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]
    assert torch.equal(tmodel.load(target)["new"], new["new"])


def test_fsync_file_then_rename_then_fsync_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.tmodel"
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", os.fspath(src)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    tmodel.save({"x": torch.randn(100)}, target)
    monkeypatch.undo()

    assert [kind for kind, _ in events] == ["fsync", "replace", "fsync"]
    (_, tmp_file), (_, renamed), (_, directory) = events
    assert tmp_file == renamed  # the temporary file was synced before it was renamed
    assert os.path.dirname(tmp_file) == str(tmp_path)  # same directory as the target: rename is atomic
    assert os.path.basename(tmp_file) != target.name
    assert directory == str(tmp_path)
    assert target.exists()


MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import torch, tmodel
    chunk, threads = 1 << 20, 2
    tmodel.save({"warm": torch.randn(1 << 16)}, sys.argv[1], chunk_size=chunk, threads=threads)
    x = torch.empty(256 << 20, dtype=torch.uint8).random_()  # every page touched, incompressible
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tmodel.save({"x": x}, sys.argv[1], chunk_size=chunk, threads=threads)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(peak - base)
    """
)


def test_save_memory_is_bounded(tmp_path: Path) -> None:
    chunk, threads = 1 << 20, 2
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "big.tmodel")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    growth = int(out.stdout.strip())
    assert growth < (64 << 20) + chunk * threads * 4, f"peak RSS grew by {growth / (1 << 20):.1f} MiB"
    assert (tmp_path / "big.tmodel").stat().st_size > 256 << 20
    with Reader(tmp_path / "big.tmodel") as r:
        assert [b.nbytes for b in r.manifest.blobs] == [256 << 20]
        assert len(r.manifest.blobs[0].chunks) == 256
