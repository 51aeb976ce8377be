"""Where loaded tensors live: raw blobs mapped copy-on-write from the file (checked first), decoded blobs
in fresh memory; both bit-exact, with storages shared exactly as saved."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import torch

import tmodel
from tmodel.archive import reader
from tmodel.archive.reader import Reader
from tmodel.container import sources
from tmodel.errors import ChecksumMismatch


def _checkpoint() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    base = torch.randn(64, 33, generator=g)
    return {
        "w": base,
        "w_t": base.t(),  # a view of the same storage
        "b": torch.randn(1000, generator=g).to(torch.bfloat16),
        "i": torch.randint(-(2**40), 2**40, (77,), generator=g),
        "mask": torch.rand(50, generator=g) > 0.5,
    }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("mmap", [True, False])
def test_raw_load_is_exact_and_writes_never_reach_the_file(tmp_path: Path, mmap: bool) -> None:
    ckpt = _checkpoint()
    path = tmp_path / "raw.tmodel"
    tmodel.save(ckpt, path, codec="raw")
    before = _sha(path)
    got = tmodel.load(path, mmap=mmap)
    for k, t in ckpt.items():
        assert torch.equal(got[k], t) and got[k].dtype == t.dtype and got[k].stride() == t.stride()
    assert got["w_t"].untyped_storage().data_ptr() == got["w"].untyped_storage().data_ptr()
    ptrs = {got[k].untyped_storage().data_ptr() for k in ("w", "b", "i", "mask")}
    assert len(ptrs) == 4  # one storage per blob, none aliasing another
    got["w"].add_(1)  # copy-on-write: the file and a new load are untouched
    got["mask"][0] = not bool(got["mask"][0])
    assert _sha(path) == before
    again = tmodel.load(path, mmap=mmap)
    assert torch.equal(again["w"], ckpt["w"]) and torch.equal(again["mask"], ckpt["mask"])


def test_mapped_tensors_survive_an_atomic_save_over_their_file(tmp_path: Path) -> None:
    ckpt = _checkpoint()
    path = tmp_path / "raw.tmodel"
    tmodel.save(ckpt, path, codec="raw")
    got = tmodel.load(path)
    tmodel.save({k: torch.zeros_like(v) for k, v in ckpt.items()}, path, codec="raw")
    for k, t in ckpt.items():
        assert torch.equal(got[k], t)
    with tmodel.open(path) as f:
        w = f.get_tensor("w")
    assert torch.equal(w, torch.zeros_like(ckpt["w"]))  # still valid after the file object closed


@pytest.mark.parametrize("codec", ["raw", "bytegroup-zstd", "zstd"])
def test_a_flipped_byte_in_a_mapped_blob_is_caught(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "raw.tmodel"
    tmodel.save({"x": torch.arange(4096, dtype=torch.float32)}, path, codec=codec)
    with Reader(path) as r:
        offset = r.manifest.blobs[0].offset + r.manifest.blobs[0].length // 2
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))
    for mmap in (True, False):
        with pytest.raises(ChecksumMismatch) as info:
            tmodel.load(path, mmap=mmap)
        assert info.value.code == "CHECKSUM_MISMATCH"
    with tmodel.open(path) as f, pytest.raises(ChecksumMismatch):
        f.get_tensor("x")


@pytest.mark.parametrize(
    "dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64, torch.int8, torch.complex64]
)
def test_large_compressed_blobs_decode_exactly(tmp_path: Path, dtype: torch.dtype) -> None:
    """Blobs of many chunks, for every byte-group width."""
    g = torch.Generator().manual_seed(3)
    n = (9 << 20) // torch.empty(0, dtype=dtype).element_size() + 3
    if dtype.is_floating_point or dtype.is_complex:
        t = (torch.randn(n, generator=g, dtype=torch.float64) * 0.02).to(dtype)
    else:
        t = torch.randint(-128, 128, (n,), generator=g, dtype=dtype)
    path = tmp_path / "big.tmodel"
    tmodel.save({"t": t}, path, chunk_size=1 << 20)
    with Reader(path) as r:
        assert r.manifest.blobs[0].codec != "raw" and len(r.manifest.blobs[0].chunks) >= 9
    got = tmodel.load(path)["t"]
    assert got.dtype == dtype and torch.equal(got.view(torch.uint8), t.view(torch.uint8))


def test_a_file_that_cannot_be_mapped_is_read_instead(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mmap

    def refuse(*args: object, **kwargs: object) -> mmap.mmap:
        raise OSError("mapping refused")

    ckpt = _checkpoint()
    path = tmp_path / "raw.tmodel"
    tmodel.save(ckpt, path, codec="raw")
    monkeypatch.setattr(sources.mmap, "mmap", refuse)
    with Reader(path) as r:
        assert r.mapped(0) is None
    got = tmodel.load(path)
    for k, t in ckpt.items():
        assert torch.equal(got[k], t) and got[k].stride() == t.stride()


def test_compressed_blobs_are_read_not_mapped(tmp_path: Path) -> None:
    """Compressed chunks are read into a per-thread buffer: mapping the file would add every stored byte
    to the process's resident set (RSS) during the load, and let in-place changes of the file race the
    checksum check."""
    ckpt = _checkpoint()
    path = tmp_path / "packed.tmodel"
    tmodel.save(ckpt, path, chunk_size=1024)
    with tmodel.open(path) as f:
        assert all(b.codec != "raw" for b in f.manifest.blobs)
        got = f.load()
        assert torch.equal(f.get_slice("w")[10:20, 3], ckpt["w"][10:20, 3])
        assert f.reader._map is None
    for k, t in ckpt.items():
        assert torch.equal(got[k], t) and got[k].dtype == t.dtype and got[k].stride() == t.stride()


def test_mapped_blobs_are_checked_in_batches_on_the_threads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every chunk of every mapped blob is checked, whichever batch and thread it lands in."""

    monkeypatch.setattr(reader, "_BATCH", 3000)  # several chunks per batch, many batches
    g = torch.Generator().manual_seed(11)
    ckpt = {f"t{i}": torch.randn(100 + 300 * i, generator=g) for i in range(6)}
    path = tmp_path / "raw.tmodel"
    tmodel.save(ckpt, path, codec="raw", chunk_size=1024)
    checked: list[tuple[int, int]] = []
    check = reader.Reader._check_digest

    def counting(self: Reader, blob: int, j: int, stored: memoryview) -> None:
        checked.append((blob, j))
        check(self, blob, j, stored)

    monkeypatch.setattr(reader.Reader, "_check_digest", counting)
    with Reader(path, threads=2) as r:
        views = r.mapped_many(range(6))
        assert views is not None and sorted(views) == list(range(6))
        every = [(i, j) for i, b in enumerate(r.manifest.blobs) for j in range(len(b.chunks))]
        assert sorted(checked) == every and len(every) == 23
        for i, view in views.items():
            assert bytes(view) == ckpt[f"t{i}"].numpy().tobytes()
        blob = r.manifest.blobs[4]
        assert len(blob.chunks) == 6  # 1300 float32 = 5,200 bytes
        offset = blob.offset + 3 * blob.chunk_size + 7  # chunk 3 of blob 4
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with Reader(path, threads=2) as r, pytest.raises(ChecksumMismatch, match="blob 4 chunk 3:"):
        r.mapped_many(range(6))
    with pytest.raises(ChecksumMismatch):
        tmodel.load(path)


@pytest.mark.parametrize("enabled", [True, False])
def test_opening_leaves_the_garbage_collector_as_it_was(tmp_path: Path, enabled: bool) -> None:
    """The collector is paused while a manifest is parsed, and restored, also when the file is refused."""
    import gc

    from tmodel.errors import TModelError

    path = tmp_path / "ok.tmodel"
    tmodel.save(_checkpoint(), path)
    bad = tmp_path / "bad.tmodel"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # inside the manifest: its digest no longer matches
    bad.write_bytes(bytes(data))
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        paused: list[bool] = []
        validate = reader.read_validated  # the reader's path to both the fast and the strict validation

        def spy(*args: Any) -> object:
            paused.append(not gc.isenabled())
            return validate(*args)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(reader, "read_validated", spy)
            with Reader(path):
                pass
        assert paused == [True] and gc.isenabled() == enabled
        with pytest.raises(TModelError):
            Reader(bad)
        assert gc.isenabled() == enabled
    finally:
        gc.enable() if was else gc.disable()
