"""Benchmark: what verifying embedded signatures adds to loading a 2 GB blake3 file (issue 16).

`python benchmarks/bench_signing.py` writes a ~2 GB float32 file with blake3 digests twice, unsigned and
signed (Ed25519 and ECDSA P-256), then times `tmodel.load` of each in this one process, interleaved, with
2 decoding threads (medians of --repeat runs after a warm-up, warm page cache). Verifying costs one SHA-256
of the manifest and one check per signature, whatever the file's size; the chunk digests, which the load
checks either way, are what bind the data. Prints the ratio against the target (<= 1.05).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

import tmodel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = int(args.gb * 1e9 / 4 / 64)
    torch.manual_seed(0)
    obj = {f"t{i}": torch.randn(n) for i in range(64)}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        plain, signed = os.path.join(tmp, "plain.tmodel"), os.path.join(tmp, "signed.tmodel")
        tmodel.keygen(os.path.join(tmp, "ed"))
        tmodel.keygen(os.path.join(tmp, "p256"), "ecdsa-p256")
        tmodel.save(obj, plain, checksum="blake3", codec="raw")
        tmodel.save(obj, signed, checksum="blake3", codec="raw", sign_with=os.path.join(tmp, "ed"))
        tmodel.sign_file(signed, os.path.join(tmp, "p256"))
        del obj
        trusted = [os.path.join(tmp, "ed.pub")]

        def load_plain() -> None:
            tmodel.load(plain, threads=2, mmap=False)

        def load_signed() -> None:
            tmodel.load(signed, threads=2, mmap=False, trusted_keys=trusted, require_signature=True)

        load_plain()
        load_signed()
        times: dict[str, list[float]] = {"plain": [], "signed": []}
        for _ in range(args.repeat):
            for label, fn in (("plain", load_plain), ("signed", load_signed)):
                t0 = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - t0)
        size = os.path.getsize(signed)
    p, s = statistics.median(times["plain"]), statistics.median(times["signed"])
    print(f"file: {size / 1e9:.2f} GB float32, blake3 digests, raw, 2 signatures; load with threads=2")
    print("| load | median s | runs |")
    print("|---|---:|---|")
    for label in ("plain", "signed"):
        runs = ", ".join(f"{x:.3f}" for x in times[label])
        print(f"| {label} | {statistics.median(times[label]):.3f} | {runs} |")
    ratio = s / p
    print(f"signed / unsigned = {ratio:.3f} (target <= 1.05): {'PASS' if ratio <= 1.05 else 'FAIL'}")


if __name__ == "__main__":
    main()
