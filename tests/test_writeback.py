"""Early writeback: which ranges are handed to the disk, and that a refusing filesystem turns it off."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmodel.container import writeback
from tmodel.container.writeback import AHEAD, Writeback


def test_pieces_started_in_order_and_oldest_awaited(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[int, int, int]] = []

    def record(fd: int, off: int, n: int, flags: int) -> int:
        calls.append((off, n, flags))
        return 0

    monkeypatch.setattr(writeback, "_sync_file_range", record)
    with open(tmp_path / "f", "wb") as f:
        wb = Writeback(f, piece=10)
        f.write(b"x" * 9)
        wb.written(9)
        assert calls == []
        f.write(b"x" * 36)
        wb.written(45)
    starts = [(off, n) for off, n, flags in calls if flags == 2]
    waits = [(off, n) for off, n, flags in calls if flags == 7]
    assert starts == [(0, 10), (10, 10), (20, 10), (30, 10)]
    assert waits == [(0, 10), (10, 10)][: 4 - AHEAD]
    assert (tmp_path / "f").read_bytes() == b"x" * 45


def test_refused_call_disables_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[int] = []
    monkeypatch.setattr(writeback, "_sync_file_range", lambda fd, off, n, flags: calls.append(off) or -1)
    with open(tmp_path / "f", "wb") as f:
        wb = Writeback(f, piece=4)
        f.write(b"y" * 40)
        wb.written(40)
        wb.written(40)
    assert calls == [0]


def test_real_call_on_this_platform(tmp_path: Path) -> None:
    with open(tmp_path / "f", "wb") as f:
        wb = Writeback(f, piece=4096)
        for i in range(8):
            f.write(bytes([i]) * 4096)
            wb.written((i + 1) * 4096)
    assert (tmp_path / "f").read_bytes() == b"".join(bytes([i]) * 4096 for i in range(8))


def test_saves_and_migration_copies_start_writeback_as_they_go(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With a 64 KiB piece, a ~1 MB save (encoded chunks) and a migration (copied blobs) hand every
    full piece to the disk in order, and the files are exactly what they would be without it."""
    import torch

    import tmodel

    calls: list[tuple[int, int]] = []
    real = writeback._sync_file_range

    def spy(fd: int, off: int, n: int, flags: int) -> int:
        calls.append((off, flags))
        return real(fd, off, n, flags) if real is not None else 0

    state = {f"w{i}": torch.arange(i, i + 65536, dtype=torch.float32) for i in range(4)}
    tmodel.save(state, tmp_path / "plain.tmodel", codec="raw")
    monkeypatch.setattr(writeback, "PIECE", 1 << 16)
    monkeypatch.setattr(writeback, "_sync_file_range", spy)
    tmodel.save(state, tmp_path / "raw.tmodel", codec="raw")
    assert (tmp_path / "raw.tmodel").read_bytes() == (tmp_path / "plain.tmodel").read_bytes()
    starts = [off for off, flags in calls if flags == 2]
    assert starts == [k << 16 for k in range(len(starts))] and len(starts) >= 15
    got = tmodel.load(tmp_path / "raw.tmodel")
    assert all(torch.equal(got[k], v) for k, v in state.items())

    # The migration path: every blob copied file to file (StoredBlob), the same manifest: the same bytes.
    from tmodel.archive.reader import Reader
    from tmodel.archive.writer import Options, write_atomic
    from tmodel.rewrite import _stored

    calls.clear()
    with Reader(tmp_path / "plain.tmodel") as r:
        m = r.manifest
        sources = [_stored(r, m, b) for b in range(len(m.blobs))]
        write_atomic(
            tmp_path / "copy.tmodel", sources, lambda blobs: {**m.to_wire(), "blobs": blobs}, Options()
        )
    assert (tmp_path / "copy.tmodel").read_bytes() == (tmp_path / "plain.tmodel").read_bytes()
    starts = [off for off, flags in calls if flags == 2]
    assert starts == [k << 16 for k in range(len(starts))] and len(starts) >= 15
