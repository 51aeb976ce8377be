"""Atomic, durable, streaming writes: a failed save leaves the previous file untouched and no temporary
files behind; a successful one fsyncs the file before the rename and the directory after it (and says so
when the directory's fsync fails); memory stays bounded by chunk size × threads. The replaced file's mode
and owner are kept; temporary names fit any valid target name; symbolic links are followed; an unclosed
`tmodel.open` handle is released, with a ResourceWarning, when collected."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import stat
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import torch

import tmodel
import tmodel.api
import tmodel.archive.writer
from tmodel.archive.reader import Reader
from tmodel.container import atomic
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


# -- the replaced file's mode and owner; a new file's mode ------------------------------------------------
def test_saving_over_a_0600_file_keeps_0600(previous: tuple[Path, bytes]) -> None:
    target, _ = previous
    target.chmod(0o600)
    tmodel.save({"new": torch.ones(3)}, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert torch.equal(tmodel.load(target)["new"], torch.ones(3))


@pytest.mark.parametrize("mode", [0o640, 0o444, 0o755, 0o2750])
def test_the_replaced_files_mode_is_kept(previous: tuple[Path, bytes], mode: int) -> None:
    target, _ = previous
    target.chmod(mode)
    tmodel.save({"new": torch.ones(3)}, target)
    assert stat.S_IMODE(target.stat().st_mode) == mode


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o027, 0o002])
def test_a_new_file_gets_the_mode_open_gives_under_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain", "w"):
            pass
        tmodel.save({"x": torch.ones(2)}, tmp_path / "new.tmodel")
    finally:
        os.umask(old)
    want = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert want == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "new.tmodel").stat().st_mode) == want


def test_the_temporary_file_is_private_while_it_is_written(previous: tuple[Path, bytes]) -> None:
    target, _ = previous
    target.chmod(0o644)
    seen: list[int] = []

    def write(f: BinaryIO) -> None:
        seen.append(stat.S_IMODE(os.fstat(f.fileno()).st_mode))
        f.write(b"new bytes")

    atomic.replace_atomically(target, write)
    assert seen == [0o600]  # the new bytes were never readable by others before they were complete
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 and target.read_bytes() == b"new bytes"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_as_root_the_owner_and_group_are_kept(previous: tuple[Path, bytes]) -> None:
    target, _ = previous
    os.chown(target, 12345, 23456)
    target.chmod(0o4750)
    tmodel.save({"new": torch.ones(3)}, target)
    st = target.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12345, 23456, 0o4750)


def test_without_permission_the_group_is_kept_where_it_can_be_and_setid_bits_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a user who may not give files away: fchown(uid, gid) fails, fchown(-1, gid) (a group the user
    is in) works; the set-user-ID bit of a file owned by someone else is not carried over."""
    target = tmp_path / "t.tmodel"
    target.write_bytes(b"old")
    me = os.stat(target)
    old = os.stat_result((0o100000 | 0o4750, *me[1:4], me.st_uid + 1, me.st_gid + 1, *me[6:]))
    calls: list[tuple[int, int]] = []

    def fchown(fd: int, uid: int, gid: int) -> None:
        calls.append((uid, gid))
        if uid != -1:
            raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchown", fchown)
    monkeypatch.setattr(atomic, "_existing_regular", lambda given, target: old)
    atomic.replace_atomically(target, lambda f: f.write(b"new"))
    monkeypatch.undo()
    assert calls == [(me.st_uid + 1, me.st_gid + 1), (-1, me.st_gid + 1)]
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode == 0o750  # setuid dropped (the owner could not be kept), setgid dropped (nor the group)
    assert target.read_bytes() == b"new"


# -- temporary file names ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a" * 248 + ".tmodel", "é" * 124 + ".tmodel", "x" * 255])
def test_a_target_name_of_255_bytes_saves(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(os.fsencode(name)) == 255
    target = tmp_path / name
    temps: list[str] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        temps.append(os.path.basename(os.fspath(src)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    tmodel.save({"x": torch.ones(2)}, target)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert torch.equal(tmodel.load(target)["x"], torch.ones(2))
    (temp,) = temps
    assert len(os.fsencode(temp)) <= 255 and temp.startswith(".") and temp.endswith(".tmp")
    stem = atomic.temp_stem(str(tmp_path), name)
    assert temp.startswith(f".{stem}.{os.getpid()}.") and stem != name
    assert name.startswith(stem.rsplit("~", 1)[0])  # a prefix of the name, then a hash of all of it
    os.fsencode(temp).decode("utf-8")  # cut at a character boundary


def test_shortened_stems_are_deterministic_and_tell_names_apart(tmp_path: Path) -> None:
    d = str(tmp_path)
    long_a, long_b = "m" * 240 + "-a.tmodel", "m" * 240 + "-b.tmodel"
    assert atomic.temp_stem(d, "ckpt.tmodel") == "ckpt.tmodel"  # short names are used as they are
    assert atomic.temp_stem(d, long_a) == atomic.temp_stem(d, long_a)
    assert atomic.temp_stem(d, long_a) != atomic.temp_stem(d, long_b)


def test_the_sweep_finds_dead_temporary_files_of_a_long_name(tmp_path: Path) -> None:
    name = "n" * 250 + ".pt.x"
    stem = atomic.temp_stem(str(tmp_path), name)
    dead = tmp_path / f".{stem}.4194304.0123abcd.tmp"  # the longest PID Linux gives
    assert len(dead.name.encode()) <= 255
    dead.write_bytes(b"left by a killed writer")
    tmodel.save({"x": torch.ones(2)}, tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_symlink_named_like_a_temporary_file_is_neither_followed_nor_removed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    planted = tmp_path / ".x.tmodel.1.0123abcd.tmp"
    planted.symlink_to(victim)
    tmodel.save({"x": torch.ones(2)}, tmp_path / "x.tmodel")
    assert planted.is_symlink() and victim.read_bytes() == b"keep"


# -- durability ------------------------------------------------------------------------------------------
def test_a_failing_directory_fsync_is_reported_and_the_new_file_stays(
    previous: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, before = previous
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(TModelError) as info:
        tmodel.save({"new": torch.ones(5)}, target)
    monkeypatch.undo()
    assert info.value.code == "IO_ERROR"
    message = str(info.value)
    assert "in place" in message and "directory" in message and "Input/output error" in message
    assert "crash" in message  # what is not guaranteed
    assert target.read_bytes() != before
    assert torch.equal(tmodel.load(target)["new"], torch.ones(5))
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


# -- symbolic links: followed, as torch.save and open(path, "w") do -------------------------------------
def test_saving_through_a_symlink_replaces_the_file_it_leads_to(tmp_path: Path) -> None:
    real_dir = tmp_path / "store"
    real_dir.mkdir()
    real = real_dir / "ckpt.tmodel"
    tmodel.save({"old": torch.zeros(4)}, real)
    link = tmp_path / "latest.tmodel"
    link.symlink_to("store/ckpt.tmodel")  # relative to the link's directory
    inode = real.stat().st_ino
    with tmodel.open(link) as before:  # opened before the save: still the old complete file after it
        tmodel.save({"new": torch.ones(4)}, link)
        assert torch.equal(before.get_tensor("old"), torch.zeros(4))
    assert link.is_symlink() and os.readlink(link) == "store/ckpt.tmodel"
    assert real.stat().st_ino != inode  # a new file renamed over the old one, not rewritten in place
    assert tmodel.load(real).keys() == {"new"}
    assert sorted(p.name for p in real_dir.iterdir()) == ["ckpt.tmodel"]  # the temporary file was there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.tmodel", "store"]


def test_saving_through_a_chain_of_links_keeps_the_targets_mode(tmp_path: Path) -> None:
    real = tmp_path / "real.tmodel"
    tmodel.save({"old": torch.zeros(1)}, real)
    real.chmod(0o600)
    (tmp_path / "b").symlink_to(real)
    (tmp_path / "a").symlink_to("b")
    tmodel.save({"new": torch.ones(1)}, tmp_path / "a")
    assert (tmp_path / "a").is_symlink() and (tmp_path / "b").is_symlink()
    assert stat.S_IMODE(real.stat().st_mode) == 0o600 and tmodel.load(real).keys() == {"new"}


def test_a_dangling_link_gets_its_file_created(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    link = tmp_path / "link.tmodel"
    link.symlink_to(tmp_path / "d" / "new.tmodel")
    tmodel.save({"x": torch.ones(2)}, link)
    assert link.is_symlink() and torch.equal(tmodel.load(tmp_path / "d" / "new.tmodel")["x"], torch.ones(2))


def test_a_link_to_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inside").write_bytes(b"keep")
    link = tmp_path / "link.tmodel"
    link.symlink_to("dir")
    with pytest.raises(TModelError) as info:
        tmodel.save({"x": torch.ones(2)}, link)
    assert info.value.code == "NOT_REGULAR_FILE" and "directory" in str(info.value)
    assert link.is_symlink() and sorted(os.listdir(tmp_path / "dir")) == ["inside"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "link.tmodel"]


def test_other_non_regular_targets_and_link_loops_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(TModelError) as info:
        tmodel.save({"x": torch.ones(2)}, tmp_path / "fifo")
    assert info.value.code == "NOT_REGULAR_FILE"
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(TModelError) as info:
        tmodel.save({"x": torch.ones(2)}, tmp_path / "a")
    assert info.value.code == "IO_ERROR" and "symbolic links" in str(info.value)
    with pytest.raises(TModelError) as info:
        tmodel.save({"x": torch.ones(2)}, f"{tmp_path}/")
    assert info.value.code == "NOT_REGULAR_FILE"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "fifo"]


# -- handles nobody closed -----------------------------------------------------------------------------------
def _open_fds_on(path: Path) -> list[int]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                out.append(int(fd))
    return out


def test_an_unclosed_handle_is_released_with_a_resource_warning(tmp_path: Path) -> None:
    path = tmp_path / "m.tmodel"
    tmodel.save({"w": torch.arange(1000, dtype=torch.float32), "z": torch.ones(100)}, path, codec="raw")
    f = tmodel.open(path)
    mapped = f.get_tensor("w")  # a view of the file mapping
    f.get_slice("z")[:10]
    f.load()  # starts the worker threads
    fd = f.reader.fd
    assert fd in _open_fds_on(path)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        del f
        gc.collect()
    assert [w.category for w in seen] == [ResourceWarning]
    assert str(path) in str(seen[0].message) and "unclosed" in str(seen[0].message)
    assert fd not in _open_fds_on(path)  # the handle's descriptor went
    assert torch.equal(mapped, torch.arange(1000, dtype=torch.float32))  # still valid: it holds the mapping
    del mapped
    gc.collect()
    assert _open_fds_on(path) == []  # and the mapping (with the descriptor mmap keeps) went with the tensor


def test_closed_and_context_managed_handles_warn_nothing(tmp_path: Path) -> None:
    path = tmp_path / "m.tmodel"
    tmodel.save({"w": torch.arange(10, dtype=torch.float32)}, path, codec="raw")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with tmodel.open(path) as f:
            w = f.get_tensor("w")
        del f
        g = tmodel.open(path)
        g.get_tensor("w")
        g.close()
        g.close()
        del g
        tmodel.load(path)
        gc.collect()
    assert seen == []
    assert torch.equal(w, torch.arange(10, dtype=torch.float32))
