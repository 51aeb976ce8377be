"""Files that are not paths: save into and load from binary file objects (BytesIO, real files opened
"wb"/"rb", any seekable object) and bytes, with every reading rule applied exactly as to paths: the
conformance corpus gives the same outcome through bytes, BytesIO and a real file object as through its
path."""

from __future__ import annotations

import gzip
import io
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import small_checkpoint

import tmodel
from tmodel.archive.reader import Reader
from tmodel.conformance import make_cases
from tmodel.container import streams
from tmodel.container.sources import BufferSource, FileSource, StreamSource, open_source
from tmodel.errors import TModelError

CASES = Path(__file__).resolve().parents[1] / "conformance" / "cases"


def _code(fn: Any) -> str:
    try:
        fn()
    except TModelError as exc:
        return exc.code
    return "OK"


def _bits(t: torch.Tensor) -> torch.Tensor:
    flat = t.contiguous().reshape(-1)
    return flat.view(torch.uint8) if flat.numel() else torch.empty(0, dtype=torch.uint8)


def _same(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.stride() == b.stride()
        assert a.shape == b.shape and a.is_meta == b.is_meta and a.__dict__.keys() == b.__dict__.keys()
        assert a.is_meta or torch.equal(_bits(a), _bits(b))  # bits: also dtypes torch cannot compare
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, torch.nn.Module):
        assert type(a) is type(b)
        _same(a.state_dict(), b.state_dict())
    elif isinstance(a, tmodel.RNGState):  # training state: its fields compared as values
        assert type(b) is tmodel.RNGState
        _same(a.as_state(), b.as_state())
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, (float, complex)):  # NaN payloads and signed zeros compare by their bits
        assert type(a) is type(b)
        parts = (lambda z: (z.real, z.imag)) if isinstance(a, complex) else (lambda x: (x,))
        assert struct.pack("<" + "d" * len(parts(a)), *parts(a)) == struct.pack(
            "<" + "d" * len(parts(b)), *parts(b)
        )
    elif hasattr(a, "tobytes") and hasattr(a, "dtype"):  # numpy arrays and scalars
        assert type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    else:
        assert a == b and type(a) is type(b)


# -- round trips ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["auto", "raw"])
def test_bytes_round_trip_equals_the_file(tmp_path: Path, codec: str) -> None:
    ckpt = small_checkpoint()
    data = tmodel.save_bytes(ckpt, codec=codec, chunk_size=128, metadata={"k": 1})
    tmodel.save(ckpt, tmp_path / "x.tmodel", codec=codec, chunk_size=128, metadata={"k": 1})
    assert isinstance(data, bytes) and data == (tmp_path / "x.tmodel").read_bytes()
    for blob in (data, bytearray(data), memoryview(data)):
        got = tmodel.load_bytes(blob)
        _same(ckpt, got)
        assert got["w_tied"].untyped_storage().data_ptr() == got["w"].untyped_storage().data_ptr()


def test_bytes_io_round_trip_from_its_position() -> None:
    """As torch.save / torch.load: written at the object's position, read from there to its end."""
    ckpt = small_checkpoint()
    buf = io.BytesIO()
    buf.write(b"preamble")
    tmodel.save(ckpt, buf)
    assert buf.tell() == len(buf.getvalue())
    assert buf.getvalue()[8:] == tmodel.save_bytes(ckpt)
    buf.seek(8)
    _same(ckpt, tmodel.load(buf))
    buf.seek(8)
    with tmodel.open(buf) as f:
        assert f.keys() == ["w", "w_tied", "noise", "mask", "ids"]
        assert torch.equal(f.get_slice("ids")[3:5], torch.tensor([3, 4]))
        f.verify()
    buf.seek(0)
    with pytest.raises(TModelError) as info:
        tmodel.load(buf)  # from position 0 the preamble is where the magic should be
    assert info.value.code == "BAD_MAGIC"


@pytest.mark.parametrize("codec", ["auto", "raw"])
@pytest.mark.parametrize("mmap", [True, False])
def test_real_file_objects_wb_and_rb(tmp_path: Path, codec: str, mmap: bool) -> None:
    ckpt = small_checkpoint()
    path = tmp_path / "x.tmodel"
    with open(path, "wb") as f:
        tmodel.save(ckpt, f, codec=codec)
        assert not f.closed
    assert path.read_bytes() == tmodel.save_bytes(ckpt, codec=codec)
    with open(path, "rb") as f:
        got = tmodel.load(f, mmap=mmap)
    _same(ckpt, got)  # tensors outlive the file object (mapped views keep their own mapping)
    with open(path, "rb") as f, tmodel.open(f, mmap=mmap) as t:
        assert isinstance(t.reader.source, FileSource)  # pread on a duplicate of the descriptor
        w = t.get_tensor("w")
        assert (t.reader._map is not None) == (mmap and codec == "raw")
    assert torch.equal(w, ckpt["w"])  # type: ignore[arg-type]
    with open(path, "rb", buffering=0) as f:  # a raw FileIO
        _same(ckpt, tmodel.load(f))


def test_a_real_file_object_is_read_from_its_position(tmp_path: Path) -> None:
    ckpt = small_checkpoint()
    path = tmp_path / "x.tmodel"
    with open(path, "wb") as f:
        f.write(b"x" * 100)
        tmodel.save(ckpt, f)
    with open(path, "rb") as f:
        f.read(100)
        _same(ckpt, tmodel.load(f))
    with open(path, "rb") as f:
        assert _code(lambda: tmodel.load(f)) == "BAD_MAGIC"


def test_any_seekable_object_is_read_through_its_methods(tmp_path: Path) -> None:
    """A file object whose descriptor holds other bytes (gzip's is the compressed file's) is read through
    its own read/seek, never through that descriptor."""
    ckpt = small_checkpoint()
    data = tmodel.save_bytes(ckpt)
    path = tmp_path / "x.tmodel.gz"
    with gzip.open(path, "wb") as g:
        g.write(data)
    with gzip.open(path, "rb") as g:
        with tmodel.open(g) as f:  # type: ignore[arg-type]
            assert isinstance(f.reader.source, StreamSource)
            _same(ckpt, f.load())
        g.seek(0)
        _same(ckpt, tmodel.load(g, threads=2))  # type: ignore[arg-type]

    class ReadOnly:  # no readinto: read() is used; short reads are completed
        def __init__(self, raw: bytes) -> None:
            self._b = io.BytesIO(raw)

        def read(self, n: int = -1) -> bytes:
            return self._b.read(min(n, 7) if n >= 0 else n)

        def seek(self, pos: int, whence: int = 0) -> int:
            return self._b.seek(pos, whence)

        def tell(self) -> int:
            return self._b.tell()

    _same(ckpt, tmodel.load(ReadOnly(data)))  # type: ignore[arg-type]


def test_a_file_object_that_fails_gives_io_error() -> None:
    data = tmodel.save_bytes(small_checkpoint())

    class Flaky(io.BytesIO):
        reads = 0

        def readinto(self, b: Any) -> int:
            Flaky.reads += 1
            if Flaky.reads > 3:
                raise OSError(5, "Input/output error")
            return super().readinto(b)

    assert _code(lambda: tmodel.load(Flaky(data))) == "IO_ERROR"

    class Liar(io.BytesIO):
        def readinto(self, b: Any) -> int:
            return len(b) + 5

    assert _code(lambda: tmodel.load(Liar(data))) == "IO_ERROR"

    class Shrinks(io.BytesIO):  # reports the full size, then ends early
        def readinto(self, b: Any) -> int:
            n = super().readinto(b)
            return 0 if self.tell() > len(data) // 2 else n

    assert _code(lambda: tmodel.load(Shrinks(data))) == "TRUNCATED"


@pytest.mark.parametrize(
    ("target", "code"),
    [
        (b"abc", "INVALID_ARGUMENT"),  # bytes are data or a path: ambiguous, so load_bytes takes them
        (io.StringIO("x"), "INVALID_ARGUMENT"),  # text mode
        (3, "INVALID_ARGUMENT"),
        (object(), "INVALID_ARGUMENT"),
    ],
)
def test_what_load_and_save_refuse(target: Any, code: str) -> None:
    assert _code(lambda: tmodel.load(target)) == code
    assert _code(lambda: tmodel.open(target)) == code
    assert _code(lambda: tmodel.save({"x": torch.ones(2)}, target)) == code


def test_closed_unreadable_unwritable_and_unseekable_objects(tmp_path: Path) -> None:
    path = tmp_path / "x.tmodel"
    tmodel.save({"x": torch.ones(2)}, path)
    closed = io.BytesIO(path.read_bytes())
    closed.close()
    assert _code(lambda: tmodel.load(closed)) == "INVALID_ARGUMENT"
    assert _code(lambda: tmodel.save({}, closed)) == "INVALID_ARGUMENT"
    with open(path, "ab") as f:
        assert _code(lambda: tmodel.load(f)) == "INVALID_ARGUMENT"  # not open for reading
    with open(path, "rb") as f:
        assert _code(lambda: tmodel.save({}, f)) == "INVALID_ARGUMENT"  # not open for writing

    class Pipe(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

    assert _code(lambda: tmodel.load(Pipe())) == "INVALID_ARGUMENT"  # type: ignore[arg-type]
    assert _code(lambda: tmodel.load_bytes("text")) == "INVALID_ARGUMENT"  # type: ignore[arg-type]
    assert _code(lambda: tmodel.load_bytes(memoryview(bytes(8))[::2])) == "INVALID_ARGUMENT"


def test_a_fifo_opened_as_a_file_object_is_refused(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        assert _code(lambda: tmodel.load(f)) == "NOT_REGULAR_FILE"  # as its path would be
    assert _code(lambda: tmodel.load(fifo)) == "NOT_REGULAR_FILE"
    with open("/dev/zero", "rb") as f:  # seekable, but no regular file
        assert _code(lambda: tmodel.load(f)) == "NOT_REGULAR_FILE"


# -- what a file object receives on failure --------------------------------------------------------------
def test_a_failed_save_leaves_the_object_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    """Errors while the file is built (here: the manifest, written last) reach the object as nothing."""
    from tmodel.archive import writer

    buf = io.BytesIO(b"keep")
    buf.seek(4)
    monkeypatch.setattr(writer, "pack_manifest", lambda wire: (_ for _ in ()).throw(TModelError("boom")))
    with pytest.raises(TModelError, match="boom"):
        tmodel.save({"x": torch.randn(1000)}, buf, chunk_size=256)
    assert buf.getvalue() == b"keep" and buf.tell() == 4


def test_unsupported_values_write_nothing() -> None:
    buf = io.BytesIO()
    with pytest.raises(TModelError) as info:
        tmodel.save({"x": object()}, buf)
    assert info.value.code == "UNSUPPORTED_TYPE" and buf.getvalue() == b""


def test_the_objects_own_write_error_is_io_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Full(io.BytesIO):
        def write(self, b: Any) -> int:
            if self.tell() > 1000:
                raise OSError(28, "No space left on device")
            return super().write(b)

    monkeypatch.setattr(streams, "_COPY", 512)
    target = Full()
    assert _code(lambda: tmodel.save({"x": torch.randn(4000)}, target)) == "IO_ERROR"
    assert 0 < len(target.getvalue()) < 4000 * 4  # a prefix, which no reader accepts
    target.seek(0)
    assert _code(lambda: tmodel.load(target)) == "TRUNCATED"


def test_raw_streams_that_take_part_of_a_write_get_all_of_it(monkeypatch: pytest.MonkeyPatch) -> None:
    class Trickle(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            take = bytes(b)[:100]
            self.data += take
            return len(take)

    out = Trickle()
    obj = {"x": torch.randn(3000)}
    tmodel.save(obj, out)  # type: ignore[arg-type]
    assert bytes(out.data) == tmodel.save_bytes(obj)


def test_big_saves_spool_to_a_temporary_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "SPOOL", 4096)
    rolled: list[bool] = []
    spooled = streams.tempfile.SpooledTemporaryFile

    def spy(*args: Any, **kwargs: Any) -> Any:
        f = spooled(*args, **kwargs)
        rolled.append(False)
        original = f.rollover

        def rollover() -> None:
            rolled[-1] = True
            original()

        f.rollover = rollover  # type: ignore[method-assign]
        return f

    monkeypatch.setattr(streams.tempfile, "SpooledTemporaryFile", spy)
    obj = {"x": torch.randn(10_000)}
    buf = io.BytesIO()
    tmodel.save(obj, buf)
    assert rolled == [True] and buf.getvalue() == tmodel.save_bytes(obj)


# -- the same rules for every source ----------------------------------------------------------------------
def _cases(kind: str) -> list[Path]:
    return sorted((CASES / kind).glob("*.tmodel"))


def _through(how: str, path: Path) -> Any:
    """Load a case's file from this kind of source, with what its read request gives (key, trust)."""
    case = json.loads(path.with_suffix(".json").read_text())
    kw = make_cases.load_options(case.get("read_with", {}))
    if how == "bytes":
        return lambda: tmodel.load_bytes(path.read_bytes(), **kw)
    if how == "bytesio":
        return lambda: tmodel.load(io.BytesIO(path.read_bytes()), **kw)
    if how == "file":

        def run() -> Any:
            with open(path, "rb") as f:
                return tmodel.load(f, **kw)

        return run
    return lambda: tmodel.load(path, **kw)


@pytest.mark.parametrize("path", _cases("hostile"), ids=lambda p: p.stem)
def test_hostile_cases_fail_alike_through_every_source(path: Path) -> None:
    codes = json.loads(path.with_suffix(".json").read_text())["expect"]["error"]["codes"]
    by_path = _code(_through("path", path))
    assert by_path in codes
    for how in ("bytes", "bytesio", "file"):
        assert _code(_through(how, path)) == by_path, how


@pytest.mark.parametrize("path", _cases("valid"), ids=lambda p: p.stem)
def test_valid_cases_load_alike_through_every_source(path: Path) -> None:
    want = _through("path", path)()
    for how in ("bytes", "bytesio", "file"):
        _same(want, _through(how, path)())


@pytest.mark.parametrize("path", _cases("hostile"), ids=lambda p: p.stem)
def test_hostile_cases_verify_alike_from_bytes(path: Path) -> None:
    def verify(source: Any) -> None:
        with Reader(source) as r:
            r.verify()

    assert _code(lambda: verify(BufferSource(path.read_bytes()))) == _code(lambda: verify(path))


def test_bytes_are_copied_and_the_copy_is_checked() -> None:
    """Loading from bytes never aliases them: changing a bytearray afterwards changes no tensor."""
    obj = {"x": torch.arange(100, dtype=torch.float32)}
    data = bytearray(tmodel.save_bytes(obj, codec="raw"))
    got = tmodel.load_bytes(data)
    data[:] = bytes(len(data))
    assert torch.equal(got["x"], obj["x"])


def test_sources_are_exact() -> None:
    src = BufferSource(b"0123456789")
    assert src.read(3, 7) == b"789" and src.size == 10
    for length, offset in ((4, 7), (1, 10), (1, -1)):
        with pytest.raises(TModelError) as info:
            src.read(length, offset)
        assert info.value.code == "TRUNCATED"
    stream = open_source(io.BytesIO(b"0123456789"))
    assert stream.read(3, 7) == b"789"
    with pytest.raises(TModelError) as info:
        stream.read(4, 7)
    assert info.value.code == "TRUNCATED"
    assert stream.map() is None and src.map() is None
