"""Costs that grow with the file (issue 13 point 7): each case runs in its own process, killed after
`--timeout` seconds once its setup (saving the file) is done; prints file size, seconds and peak RSS.
Run by hand with the interpreter of the tree to measure (`.venv/bin/python benchmarks/bench_costs.py`);
it uses only APIs main also has."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

CASES: dict[str, str] = {
    "module_roots": """
from torch import nn
tmodel.save({f"m{i}": nn.Linear(1, 1) for i in range(N)}, path)
start()
tmodel.load(path)
""",
    "one_byte_chunks": """
import subprocess  # saved in another process, so that the peak measured is the load's
save = "import sys, torch, tmodel; n, p = int(sys.argv[1]), sys.argv[2]; "
save += "tmodel.save({'w': torch.randint(0, 255, (n,), dtype=torch.uint8)}, p, chunk_size=1)"
subprocess.run([sys.executable, "-c", save, str(N), path], check=True)
start()
tmodel.load(path)
""",
    "shared_sublists_convert": """
from tmodel.interop.convert import convert
a = [0]
for _ in range(N):
    a = [a, a]
torch.save(a, path + ".pt")
size_of = path + ".pt"
start()
try:
    convert(path + ".pt", path)
except tmodel.TModelError as exc:
    result = exc.code
""",
    "shared_module_records": """
import struct, msgpack
from tmodel.container.framing import HEADER_SIZE, TRAILER_SIZE, align, pack_trailer
from tmodel.manifest.encoding import pack_manifest
tmodel.save({"t": torch.zeros(1)}, path)
data = open(path, "rb").read()
offset, length = struct.unpack_from("<QQ", data, len(data) - TRAILER_SIZE)
wire = msgpack.unpackb(data[offset : offset + length], raw=False)
rec = dict(type="torch.nn.Sequential", version=1, config={}, parameters={}, buffers={}, training=True)
wire["modules"] = [dict(rec, children={"0": i + 1, "1": i + 1}) for i in range(N)]
wire["modules"].append(dict(rec, type="torch.nn.Identity", children={}))
wire["root"] = {"dict": [["t", {"tensor": 0}], ["m", {"module": 0}]]}
raw = pack_manifest(wire)
open(path, "wb").write(data[:offset] + raw + pack_trailer(offset, raw, "xxh3-64", data[:HEADER_SIZE]))
from tmodel.manifest.module_tree import state_of
start()
try:
    with tmodel.open(path) as f:
        state_of(f.manifest, 0)
except tmodel.TModelError as exc:
    result = exc.code
""",
}

CHILD = """
import os, resource, sys, time, json, torch, tmodel
N, path = int(sys.argv[1]), sys.argv[2]
size_of, result, t0 = path, "ok", [0.0]
def start():
    print("started", flush=True)
    t0[0] = time.perf_counter()
{body}
print(json.dumps(dict(seconds=time.perf_counter() - t0[0], bytes=os.path.getsize(size_of),
    peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, result=result)))
"""

SIZES = {
    "module_roots": [5000, 20000],
    "one_byte_chunks": [1 << 18, 1 << 20],
    "shared_sublists_convert": [16, 60],
    "shared_module_records": [16, 60],
}


def run(case: str, n: int, timeout: float) -> str:
    with tempfile.TemporaryDirectory() as d:
        code = CHILD.format(body=CASES[case])
        began = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(n), f"{d}/x.tmodel"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,  # unbuffered: reading the marker line must not read ahead into the result
        )
        assert proc.stdout is not None
        marker = proc.stdout.readline().decode()  # setup (saving the file) is not timed
        try:
            raw_out, raw_err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return f"{case:24} N={n:<9} >{timeout:.0f} s (killed after setup)"
        rest, err = raw_out.decode(), raw_err.decode()
        if proc.returncode or marker.strip() != "started":
            return f"{case:24} N={n:<9} failed: {err.strip().splitlines()[-1:]}"
        out = rest
        r = json.loads(out.strip().splitlines()[-1])
        total = time.perf_counter() - began
        return (
            f"{case:24} N={n:<9} file {r['bytes']:>11,} B  {r['seconds']:8.2f} s  "
            f"peak {r['peak_mb']:7.0f} MB  ({r['result']}; {total:.0f} s with setup)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()
    for case in args.cases.split(","):
        for n in SIZES[case]:
            print(run(case, n, args.timeout), flush=True)


if __name__ == "__main__":
    main()
