"""Early writeback: which ranges are handed to the disk, and that a refusing filesystem turns it off."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmodel import writeback
from tmodel.writeback import AHEAD, Writeback


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
