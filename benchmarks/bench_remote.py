"""Remote reads over loopback HTTP (issue 17 point 3): what opening a file and reading one tensor fetches,
and a whole load over HTTP beside the same load from the local file.

An archive of `--gb` GB (equal float32 tensors, random, stored raw unless `--codec`) is written to a
temporary directory and served by a Range-honouring http.server handler of our own that counts requests
and body bytes. Printed: for open + get_tensor of one tensor, the bytes fetched against that tensor's
stored bytes (target: at most stored + 1 MiB, PASS/FAIL), the requests and the time; then a whole load
over HTTP and locally (informative: loopback HTTP through aiohttp, not a real network).

    .venv/bin/python benchmarks/bench_remote.py --gb 0.5
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

import tmodel

MiB = 1 << 20


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.bytes = 0

    def reset(self) -> None:
        with self.lock:
            self.requests = self.bytes = 0

    def add(self, n: int) -> None:
        with self.lock:
            self.requests += 1
            self.bytes += n


def serve(path: str, counter: Counter) -> ThreadingHTTPServer:
    """`path` at /file.tmodel on 127.0.0.1, Range honoured, the body streamed from the file."""
    size = os.path.getsize(path)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            counter.add(0)
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

        def do_GET(self) -> None:
            start, end, status = 0, size, 200
            wanted = self.headers.get("Range")
            if wanted:
                first, _, last = wanted.removeprefix("bytes=").partition("-")
                if first == "":
                    start = max(0, size - int(last))
                else:
                    start, end = int(first), size if last == "" else min(size, int(last) + 1)
                status = 206
            counter.add(end - start)
            self.send_response(status)
            self.send_header("Content-Length", str(end - start))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            self.end_headers()
            with open(path, "rb") as f, contextlib.suppress(OSError):
                pos = start
                while pos < end:
                    piece = os.pread(f.fileno(), min(4 * MiB, end - pos), pos)
                    self.wfile.write(piece)
                    pos += len(piece)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def build(path: str, gb: float, tensors: int, codec: str) -> None:
    elements = int(gb * 1e9) // 4 // tensors
    g = torch.Generator().manual_seed(0)
    sd = {f"layer{i:03d}.weight": torch.randn(elements, generator=g) for i in range(tensors)}
    tmodel.save(sd, path, codec=codec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=2.0, help="archive size in GB (default 2)")
    ap.add_argument("--tensors", type=int, default=64, help="equal tensors in the archive (default 64)")
    ap.add_argument("--codec", default="raw", help="codec of the archive (default raw)")
    ap.add_argument("--dir", default=None, help="where the archive is written (default: a temp dir)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-remote-", dir=args.dir)
    try:
        return run(args, os.path.join(tmp, "file.tmodel"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, path: str) -> int:
    began = time.perf_counter()
    build(path, args.gb, args.tensors, args.codec)
    size = os.path.getsize(path)
    print(f"## bench_remote {datetime.date.today().isoformat()}")
    print()
    print(f"Command: `{' '.join([os.path.basename(sys.executable), *sys.argv])}`  ")
    print(
        f"Archive: {size / 1e9:.3f} GB, {args.tensors} float32 tensors, codec {args.codec}, built in "
        f"{time.perf_counter() - began:.1f} s; served by http.server on loopback; torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs"
    )
    print()
    counter = Counter()
    httpd = serve(path, counter)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/file.tmodel"
    ok = True
    try:
        name = f"layer{args.tensors // 2:03d}.weight"
        began = time.perf_counter()
        with tmodel.open(url) as f:
            opened = time.perf_counter() - began
            open_requests, open_bytes = counter.requests, counter.bytes
            t = f.get_tensor(name)
            took = time.perf_counter() - began
            blob = f.manifest.tensors[f.keys().index(name)].blob
            stored = f.manifest.blobs[blob].length if blob is not None else 0
        fetched = counter.bytes
        ok = fetched <= stored + MiB
        del t
        print("| open + get_tensor of one tensor | value |")
        print("|---|---:|")
        print(f"| tensor | {name} ({stored / MiB:.1f} MiB stored) |")
        print(
            f"| open: requests, bytes, time | {open_requests}, {open_bytes / 1024:.0f} KiB, {opened:.3f} s |"
        )
        print(f"| open + get_tensor: requests | {counter.requests} |")
        print(f"| open + get_tensor: bytes fetched | {fetched} ({fetched / MiB:.2f} MiB) |")
        print(f"| fetched - stored | {(fetched - stored) / 1024:.1f} KiB |")
        print(f"| open + get_tensor: time | {took:.3f} s |")
        print(f"| target: fetched <= stored + 1 MiB | {'PASS' if ok else '**FAIL**'} |")
        print()
        counter.reset()
        began = time.perf_counter()
        sd = tmodel.load(url)
        over_http = time.perf_counter() - began
        http_requests, http_bytes = counter.requests, counter.bytes
        del sd
        began = time.perf_counter()
        sd = tmodel.load(path, mmap=False)
        local_copy = time.perf_counter() - began
        del sd
        print("| whole load (informative) | time s | GB/s | requests | bytes fetched / file |")
        print("|---|---:|---:|---:|---:|")
        print(
            f"| over HTTP (loopback) | {over_http:.2f} | {size / over_http / 1e9:.2f} | {http_requests} | "
            f"{http_bytes / size:.4f} |"
        )
        print(f"| local file, mmap=False | {local_copy:.2f} | {size / local_copy / 1e9:.2f} | - | - |")
        print()
    finally:
        httpd.shutdown()
        httpd.server_close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
