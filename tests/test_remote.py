"""Remote reads and writes through fsspec: memory:// and a loopback HTTP server of our own that counts
requests and bytes, honours Range or misbehaves on purpose (short, overlong, shifted, whole-body, hung,
lying about the size, changing content); every failure is a coded error."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fsspec
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tmodel
from tmodel.cli.main import main
from tmodel.conformance.describe import describe
from tmodel.container import remote
from tmodel.container.remote import merged, open_remote
from tmodel.container.sources import FileSource, open_source
from tmodel.container.urls import is_url, local_path
from tmodel.errors import TModelError

GOLDEN = Path(__file__).resolve().parents[1] / "conformance" / "golden" / "v5"
MiB = 1 << 20


# -- a loopback HTTP server ------------------------------------------------------------------------------
class Served:
    """Objects by name on 127.0.0.1, with a log of (method, Range header, body bytes sent) per request.
    `mode`: "ok", "ignore_range" (200 and the whole body), "short" (one byte less), "long" (ten more),
    "shifted" (the bytes one further on, under the asked Content-Range), "elsewhere" (another range of
    the same length, under its own Content-Range), "hang" (no answer until released),
    "size_lies" / "size_lies_small" (HEAD says 100 bytes more / fewer than there are)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.mode = "ok"
        self.log: list[tuple[str, str | None, int]] = []
        self.release = threading.Event()
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                state.answer(self, head=True)

            def do_GET(self) -> None:
                state.answer(self, head=False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def gets(self) -> list[tuple[str, str | None, int]]:
        return [entry for entry in self.log if entry[0] == "GET"]

    def answer(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        data = self.objects.get(h.path.lstrip("/"))
        if data is None:
            self._send(h, 404, b"", {}, head)
            return
        size = len(data) + {"size_lies": 100, "size_lies_small": -100}.get(self.mode, 0)
        if self.mode == "hang" and not head:
            self.release.wait(30)
            return
        wanted = h.headers.get("Range")
        if head:
            self._send(h, 200, b"", {"Content-Length": str(size), "Accept-Ranges": "bytes"}, head, size)
            return
        if wanted is None or self.mode == "ignore_range":
            self._send(h, 200, data, {}, head, range_header=wanted)
            return
        first, _, last = wanted.removeprefix("bytes=").partition("-")
        if first == "":
            start, end = max(0, len(data) - int(last)), len(data)
        else:
            start, end = int(first), len(data) if last == "" else min(len(data), int(last) + 1)
        body = {
            "short": data[start : end - 1],
            "long": data[start : end + 10],
            "shifted": data[start + 1 : end + 1],
        }.get(self.mode, data[start:end])
        headers = {"Content-Range": f"bytes {start}-{end - 1}/{size}"}
        if self.mode == "elsewhere":  # another range of the same length, and a Content-Range that says so
            other = 0 if start else end - start
            body, headers = data[other : other + end - start], {"Content-Range": f"bytes {other}-/{size}"}
        self._send(h, 206, body, headers, head, range_header=wanted)

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        headers: dict[str, str],
        head: bool,
        length: int | None = None,
        range_header: str | None = None,
    ) -> None:
        self.log.append(("HEAD" if head else "GET", range_header, 0 if head else len(body)))
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        if "Content-Length" not in headers:
            h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        if not head:
            with contextlib.suppress(OSError):
                h.wfile.write(body)

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Served]:
    s = Served()
    try:
        yield s
    finally:
        s.close()


def _code(fn: Any) -> str:
    with pytest.raises(TModelError) as err:
        fn()
    return err.value.code


def _blobs(n: int = 6, elements: int = 256 * 1024) -> dict[str, torch.Tensor]:
    """n float32 tensors of `elements` each (1 MiB at the default), random so they stay their size."""
    g = torch.Generator().manual_seed(7)
    return {f"t{i}": torch.randn(elements, generator=g) for i in range(n)}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]), k


@pytest.fixture
def memfs() -> Iterator[Any]:
    fs = fsspec.filesystem("memory")
    before = set(fs.store)
    yield fs
    for name in set(fs.store) - before:
        fs.store.pop(name, None)


# -- URLs ------------------------------------------------------------------------------------------------
def test_which_strings_are_urls() -> None:
    for url in ("s3://b/k", "gs://b/k", "https://h/x.tmodel", "memory://x", "simplecache::s3://b/k"):
        assert is_url(url), url
    for path in ("model.tmodel", "/tmp/x", "file:///tmp/x", "FILE://x", "C:\\x", "a:b", "://x"):
        assert not is_url(path), path
    assert not is_url(Path("s3://b/k")) and not is_url(b"s3://b/k")
    assert local_path("file:///tmp/x.tmodel") == "/tmp/x.tmodel" and local_path("x") == "x"


def test_file_urls_and_plain_paths_stay_local(tmp_path: Path) -> None:
    sd = _blobs(2, 100)
    tmodel.save(sd, f"file://{tmp_path}/a.tmodel")
    assert (tmp_path / "a.tmodel").is_file()
    source = open_source(f"file://{tmp_path}/a.tmodel")
    try:
        assert isinstance(source, FileSource) and not source.ranged
    finally:
        source.close()
    _equal(tmodel.load(f"file://{tmp_path}/a.tmodel"), sd)


def test_importing_tmodel_and_reading_local_files_never_imports_fsspec(small_file: Path) -> None:
    code = (
        "import sys, tmodel\nfrom tmodel.archive.reader import Reader\n"
        f"Reader({str(small_file)!r}).close()\nprint('fsspec' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_coalescing_rule() -> None:
    spans = [(0, 10), (10, 5), (15 + 4096, 1), (8209, 3), (0, 1), (100, 3 * MiB), (20 * MiB, 1)]
    groups = [(g.start, g.end, g.spans) for g in merged(spans, gap=4096, cap=16 * MiB)]
    assert groups == [
        (0, 15 + 4097, [(0, 10), (10, 5), (15 + 4096, 1)]),  # touching, then 4096 bytes apart
        (8209, 8212, [(8209, 3)]),  # 4097 bytes apart
        (0, 100 + 3 * MiB, [(0, 1), (100, 3 * MiB)]),  # going back starts a new request
        (20 * MiB, 20 * MiB + 1, [(20 * MiB, 1)]),
    ]
    capped = [(g.start, g.end) for g in merged([(0, 6), (6, 6), (12, 6)], gap=0, cap=12)]
    assert capped == [(0, 12), (12, 18)]


def test_local_sources_read_ranges_one_read_each(small_file: Path) -> None:
    data = small_file.read_bytes()
    source = open_source(str(small_file))
    try:
        views = list(source.read_ranges([(0, 8), (100, 20), (len(data) - 4, 4)]))
        assert [bytes(v) for v in views] == [data[:8], data[100:120], data[-4:]]
        assert _code(lambda: list(source.read_ranges([(len(data) - 4, 5)]))) == "TRUNCATED"
    finally:
        source.close()


# -- memory:// -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["raw", "zstd", "auto"])
def test_round_trip_through_memory(memfs: Any, codec: str) -> None:
    sd = {
        **_blobs(3, 5000),
        "i": torch.arange(7),
        "b": torch.tensor([True, False]),
        "h": torch.ones(3).half(),
    }
    tmodel.save(sd, "memory://rt/model.tmodel", codec=codec, chunk_size=4096)
    assert memfs.ls("/rt", detail=False) == ["/rt/model.tmodel"]  # no temporary object left
    _equal(tmodel.load("memory://rt/model.tmodel"), sd)
    with tmodel.open("memory://rt/model.tmodel") as f:
        assert f.reader.source.ranged and f.reader.source.map() is None  # never mapped
        assert torch.equal(f.get_tensor("t1"), sd["t1"])
        assert torch.equal(f.get_slice("t2")[4000:4100], sd["t2"][4000:4100])
        f.verify()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shapes=st.dictionaries(
        st.text("abcxyz._", min_size=1, max_size=6),
        st.tuples(st.lists(st.integers(0, 40), max_size=3), st.sampled_from(["f32", "i64", "bf16", "u8"])),
        max_size=6,
    ),
    codec=st.sampled_from(["raw", "zstd", "auto"]),
    seed=st.integers(0, 2**31),
)
def test_random_state_dicts_round_trip_through_memory(
    memfs: Any, shapes: dict[str, Any], codec: str, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    dtypes = {"f32": torch.float32, "i64": torch.int64, "bf16": torch.bfloat16, "u8": torch.uint8}
    sd = {
        k: (torch.randn(shape, generator=g) * 100).to(dtypes[d])
        if d != "u8"
        else torch.randint(0, 255, shape)
        for k, (shape, d) in shapes.items()
    }
    tmodel.save(sd, "memory://hyp/x.tmodel", codec=codec, chunk_size=512)
    _equal(tmodel.load("memory://hyp/x.tmodel"), sd)


def test_load_into_and_load_checkpoint_take_urls(memfs: Any) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    tmodel.save({"model": model, "optim": opt, "step": 3}, "memory://ck/run.tmodel")
    tmodel.save(model.state_dict(), "memory://ck/weights.tmodel")
    fresh = torch.nn.Linear(4, 3)
    tmodel.load_into(fresh, "memory://ck/weights.tmodel")
    _equal(fresh.state_dict(), model.state_dict())
    resumed = torch.nn.Linear(4, 3)
    opt2 = torch.optim.SGD(resumed.parameters(), lr=0.1, momentum=0.9)
    ckpt = tmodel.load_checkpoint("memory://ck/run.tmodel", model=resumed, optimizer=opt2)
    assert ckpt["step"] == 3 and ckpt["model"] is resumed
    _equal(resumed.state_dict(), model.state_dict())
    buf = opt.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(opt2.state_dict()["state"][0]["momentum_buffer"], buf)


def test_missing_object_is_io_error_and_file_not_found() -> None:
    with pytest.raises(TModelError) as err:
        tmodel.load("memory://nowhere/none.tmodel")
    assert err.value.code == "IO_ERROR" and isinstance(err.value, FileNotFoundError)
    assert err.value.path == "memory://nowhere/none.tmodel"


def test_a_directory_is_not_a_file(memfs: Any) -> None:
    memfs.pipe_file("/dir/inside", b"x")
    assert _code(lambda: tmodel.load("memory://dir")) == "NOT_REGULAR_FILE"


# -- saving: never a partial object at the target ---------------------------------------------------------
def test_failed_upload_leaves_no_object_at_the_target(memfs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = type(memfs)
    real = cls.put_file

    def half_then_fail(self: Any, lpath: str, rpath: str, **kw: Any) -> None:
        data = Path(lpath).read_bytes()
        self.pipe_file(rpath, data[: len(data) // 2])  # part of the file is there, then the link drops
        raise ConnectionError("connection reset")

    monkeypatch.setattr(cls, "put_file", half_then_fail)
    with pytest.raises(TModelError) as err:
        tmodel.save(_blobs(2, 1000), "memory://up/m.tmodel")
    assert err.value.code == "IO_ERROR" and "connection reset" in str(err.value)
    assert [k for k in memfs.store if k.startswith("/up/")] == []  # neither the target nor a temporary
    monkeypatch.setattr(cls, "put_file", real)
    old = _blobs(1, 10)
    tmodel.save(old, "memory://up/m.tmodel")
    monkeypatch.setattr(cls, "put_file", half_then_fail)
    with pytest.raises(TModelError):
        tmodel.save(_blobs(2, 1000), "memory://up/m.tmodel")  # an existing object stays as it was
    _equal(tmodel.load("memory://up/m.tmodel"), old)
    assert memfs.ls("/up", detail=False) == ["/up/m.tmodel"]


def test_failed_local_save_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def fail(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail)
    assert _code(lambda: tmodel.save(_blobs(2, 1000), tmp_path / "m.tmodel")) == "IO_ERROR"
    assert list(tmp_path.iterdir()) == []


def test_saving_over_http_is_refused_before_writing(server: Served) -> None:
    assert _code(lambda: tmodel.save(_blobs(1, 10), server.url("x.tmodel"))) == "INVALID_ARGUMENT"
    assert server.log == []


# -- over HTTP: requests and bytes -----------------------------------------------------------------------
def _stored(reader: Any, blob: int) -> int:
    return int(reader.manifest.blobs[blob].length)


def test_open_reads_trailer_and_manifest_in_one_request_and_a_tensor_only_its_chunks(server: Served) -> None:
    sd = _blobs(6)
    server.objects["m.tmodel"] = data = tmodel.save_bytes(sd, codec="raw")
    with tmodel.open(server.url("m.tmodel")) as f:
        opened = list(server.log)
        assert [m for m, _, _ in opened] == ["HEAD", "GET", "GET"]  # size, then header and tail at once
        tail = [r for m, r, _ in opened if m == "GET" and r != "bytes=0-4095"]
        assert tail == [f"bytes={len(data) - remote.TAIL}-{len(data) - 1}"]
        assert sum(n for _, _, n in opened) == remote.HEAD + remote.TAIL
        del server.log[:]
        t3 = f.get_tensor("t3")
        blob = f.manifest.tensors[f.keys().index("t3")].blob
        fetched = sum(n for _, _, n in server.gets())
        stored = _stored(f.reader, blob)
        assert len(server.gets()) == 1 and stored <= fetched <= stored + 64  # its chunks and padding
    assert torch.equal(t3, sd["t3"])


def test_a_manifest_longer_than_the_tail_costs_one_more_request(server: Served) -> None:
    sd = {f"layer{i:05d}.weight": torch.full((2,), float(i)) for i in range(1500)}
    server.objects["many.tmodel"] = data = tmodel.save_bytes(sd)
    with tmodel.open(server.url("many.tmodel")) as f:
        start = f.reader.manifest_offset
        assert len(data) - start > remote.TAIL  # the premise: the manifest does not fit in the tail
        region = [r for m, r, _ in server.gets() if r != "bytes=0-4095"]
        assert region == [
            f"bytes={len(data) - remote.TAIL}-{len(data) - 1}",
            f"bytes={start}-{len(data) - remote.TAIL - 1}",
        ]
        assert torch.equal(f.get_tensor("layer01499.weight"), torch.full((2,), 1499.0))


def test_whole_load_merges_chunks_into_few_requests(server: Served) -> None:
    sd = _blobs(12)  # 12 blobs of 1 MiB, 48 chunks of 256 KiB
    server.objects["m.tmodel"] = tmodel.save_bytes(sd, codec="zstd", chunk_size=256 << 10)
    _equal(tmodel.load(server.url("m.tmodel")), sd)
    gets = server.gets()
    assert len(gets) == 2 + 1  # header and tail, then one merged request (12 MiB < MAX_REQUEST)
    assert len(server.log) == 4


def test_partial_reads_fetch_only_the_chunks_of_the_slice(server: Served) -> None:
    t = torch.randn(64, 4096)  # 16 KiB rows, chunks of 64 KiB: 4 rows each
    server.objects["s.tmodel"] = tmodel.save_bytes({"t": t}, codec="raw", chunk_size=64 << 10)
    with tmodel.open(server.url("s.tmodel")) as f:
        del server.log[:]
        part = f.get_slice("t")[9:11]
        start = f.manifest.blobs[0].offset + 2 * 65536  # rows 8-11: the third chunk, only
        assert [r for _, r, _ in server.gets()] == [f"bytes={start}-{start + 65536 - 1}"]
    assert torch.equal(part, t[9:11])


def test_golden_files_over_http_load_as_they_do_locally(server: Served) -> None:
    names = []
    for path in sorted(GOLDEN.glob("*.tmodel")):
        server.objects[path.name] = path.read_bytes()
        assert describe(server.url(path.name)) == describe(str(path)), path.name  # every tensor's sha256
        names.append(path.name)
    assert len(names) == 11
    _equal(tmodel.load(server.url("state_dict_auto.tmodel")), tmodel.load(GOLDEN / "state_dict_auto.tmodel"))


def test_signed_and_encrypted_files_over_http(server: Served, tmp_path: Path) -> None:
    tmodel.keygen(tmp_path / "alice")
    sd = _blobs(2, 70_000)
    key = bytes(range(32))
    server.objects["se.tmodel"] = tmodel.save_bytes(sd, sign_with=tmp_path / "alice", encrypt_with=key)
    url = server.url("se.tmodel")
    _equal(tmodel.load(url, key=key, trusted_keys=[tmp_path / "alice.pub"], require_signature=True), sd)
    with tmodel.open(url, key=key) as f:
        assert len(f.signatures) == 1 and torch.equal(f.get_tensor("t1"), sd["t1"])
    assert _code(lambda: tmodel.load(url)) == "KEY_REQUIRED"


def test_cli_inspect_and_verify_a_url(server: Served, capsys: pytest.CaptureFixture[str]) -> None:
    server.objects["c.tmodel"] = tmodel.save_bytes(_blobs(2, 1000))
    assert main(["verify", server.url("c.tmodel")]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {server.url('c.tmodel')} (2 tensors, 8000 bytes checked")
    assert main(["inspect", server.url("c.tmodel")]) == 0
    assert "t1" in capsys.readouterr().out


# -- hostile servers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("short", "TRUNCATED"),
        ("long", "IO_ERROR"),
        ("shifted", "CHECKSUM_MISMATCH"),
        ("elsewhere", "CHECKSUM_MISMATCH"),
        ("ignore_range", "IO_ERROR"),
    ],
)
def test_misbehaving_ranges_are_coded_errors(server: Served, mode: str, code: str) -> None:
    server.objects["m.tmodel"] = tmodel.save_bytes(_blobs(3), codec="raw")
    with tmodel.open(server.url("m.tmodel")) as f:
        server.mode = mode
        with pytest.raises(TModelError) as err:
            f.get_tensor("t1")
    assert err.value.code == code and err.value.path == server.url("m.tmodel")
    if mode == "ignore_range":
        assert "ignored the range request" in str(err.value)


def test_a_server_that_ignores_range_is_refused_at_open(server: Served) -> None:
    server.objects["m.tmodel"] = tmodel.save_bytes(_blobs(1), codec="raw")
    server.mode = "ignore_range"
    with pytest.raises(TModelError) as err:
        tmodel.open(server.url("m.tmodel"))
    assert err.value.code == "IO_ERROR" and "ignored the range request" in str(err.value)


def test_small_objects_are_read_whole_in_one_request_even_without_range(server: Served) -> None:
    sd = _blobs(2, 1000)
    server.objects["s.tmodel"] = tmodel.save_bytes(sd)
    server.mode = "ignore_range"
    _equal(tmodel.load(server.url("s.tmodel")), sd)
    assert [m for m, _, _ in server.log] == ["HEAD", "GET"]


@pytest.mark.parametrize("mode", ["size_lies", "size_lies_small"])
def test_a_server_that_lies_about_the_size(server: Served, mode: str) -> None:
    server.objects["m.tmodel"] = tmodel.save_bytes(_blobs(1), codec="raw")
    server.mode = mode  # more: the tail request comes back short; fewer: no trailer where it says the end is
    assert _code(lambda: tmodel.open(server.url("m.tmodel"))) == "TRUNCATED"


def test_content_changed_between_requests(server: Served) -> None:
    server.objects["m.tmodel"] = tmodel.save_bytes(_blobs(3), codec="raw")
    with tmodel.open(server.url("m.tmodel")) as f:
        other = {k: v + 1 for k, v in _blobs(3).items()}
        server.objects["m.tmodel"] = tmodel.save_bytes(other, codec="raw")  # same layout, other bytes
        assert _code(lambda: f.get_tensor("t2")) == "CHECKSUM_MISMATCH"


def test_a_hung_server_times_out_with_io_error(server: Served) -> None:
    server.objects["m.tmodel"] = tmodel.save_bytes(_blobs(2), codec="raw")
    source = open_remote(server.url("m.tmodel"), timeout=0.5)
    with tmodel.open(source) as f:  # type: ignore[arg-type]
        server.mode = "hang"
        began = time.monotonic()
        with pytest.raises(TModelError) as err:
            f.get_tensor("t0")
        assert time.monotonic() - began < 10
    assert err.value.code == "IO_ERROR" and "within 0.5 s" in str(err.value)
    assert _code(lambda: open_remote(server.url("m.tmodel"), timeout=0.5)) == "IO_ERROR"  # hangs at open
    assert _code(lambda: open_remote(server.url("m.tmodel"), timeout=0)) == "INVALID_ARGUMENT"


def test_missing_over_http(server: Served) -> None:
    with pytest.raises(TModelError) as err:
        tmodel.open(server.url("absent.tmodel"))
    assert err.value.code == "IO_ERROR" and isinstance(err.value, FileNotFoundError)


def test_a_whole_load_fetches_no_byte_twice_but_the_speculative_ends(server: Served) -> None:
    data = tmodel.save_bytes(_blobs(4), codec="raw")
    server.objects["m.tmodel"] = data
    tmodel.load(server.url("m.tmodel"))
    fetched = sum(n for _, _, n in server.gets())
    assert len(data) <= fetched <= len(data) + remote.HEAD + remote.TAIL
