"""Sharded sets (SPEC.md §5.10): `save(max_shard_size=)` writes shards then an index; `load`, `open` and
`verify` take the index as one file, open only the shards they read, and refuse a set that is not the
one saved (a shard replaced, swapped in from another save, truncated, missing), naming the shard; the
independent reader agrees; Hugging Face sharded safetensors convert both ways."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import fsspec
import msgpack
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import tmodel
from tmodel.archive.reader import Reader
from tmodel.archive.sharding import parse_size, shard_names
from tmodel.cli.main import main
from tmodel.conformance.describe import describe
from tmodel.container.framing import HEADER_SIZE, TRAILER_SIZE, pack_trailer
from tmodel.errors import TModelError
from tmodel.interop.convert import convert
from tmodel.manifest.encoding import pack_manifest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "conformance"))
import independent_reader  # noqa: E402


def _code(fn: Any) -> str:
    try:
        fn()
    except TModelError as exc:
        return exc.code
    return "OK"


def _error(fn: Any) -> TModelError:
    with pytest.raises(TModelError) as err:
        fn()
    return err.value


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    sd = {f"layers.{i}.weight": torch.randn(64, 64, generator=g) for i in range(6)}  # 16 KiB each
    sd["embed"] = torch.randn(100, 32, generator=g).bfloat16()
    sd["mask"] = torch.rand(50, generator=g) > 0.5
    sd["empty"] = torch.empty(0, 4)
    sd["tied"] = sd["layers.2.weight"][:, 1:]  # a view: in the same blob, so the same shard
    return sd


#: the shard size the tests save with: each 16 KiB layer alone, then the embedding and the mask together
LIMIT = 20_000
SHARDS = 7


def _saved(tmp_path: Path, obj: Any = None, **kw: Any) -> Path:
    path = tmp_path / "model.tmodel"
    tmodel.save(_state() if obj is None else obj, path, max_shard_size=kw.pop("max_shard_size", LIMIT), **kw)
    return path


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].stride() == b[k].stride(), k
        assert torch.equal(a[k], b[k]), k


def _wire(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    offset, length = struct.unpack_from("<QQ", data, len(data) - TRAILER_SIZE)
    return msgpack.unpackb(data[offset : offset + length], raw=False, strict_map_key=False)  # type: ignore[no-any-return]


def _rewritten(path: Path, mutate: Any) -> None:
    """The file with its (plain, unsigned) manifest edited and the trailer digest recomputed."""
    data = path.read_bytes()
    offset, length, algo = struct.unpack_from("<QQH", data, len(data) - TRAILER_SIZE)
    wire = msgpack.unpackb(data[offset : offset + length], raw=False, strict_map_key=False)
    mutate(wire)
    raw = pack_manifest(wire)
    name = {1: "xxh3-64", 2: "sha256", 3: "blake3"}[algo]
    path.write_bytes(data[:offset] + raw + pack_trailer(offset, raw, name, data[:HEADER_SIZE]))


# -- writing -------------------------------------------------------------------------------------------------
def test_save_splits_by_size_and_names_shards_as_hugging_face_does(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["model.tmodel", *shard_names(str(path), SHARDS)])
    wire = _wire(path)
    assert wire["blobs"] == [] and [s["file"] for s in wire["shards"]] == shard_names(str(path), SHARDS)
    for s in wire["shards"]:  # each shard within the size (by tensor data), or one blob alone
        assert sum(s["blobs"]) <= LIMIT or len(s["blobs"]) == 1
        assert s["size"] == (tmp_path / s["file"]).stat().st_size
    with Reader(path) as r:
        assert r.shards is not None
        blob = {t.name: t.blob for t in r.manifest.tensors}
        assert blob["tied"] == blob["layers.2.weight"] is not None and blob["empty"] is None


def test_each_shard_is_a_complete_file_holding_a_state_dict(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    sd = _state()
    seen: dict[str, torch.Tensor] = {}
    for s in _wire(path)["shards"]:
        part = tmodel.load(tmp_path / s["file"])
        tmodel.open(tmp_path / s["file"]).verify()
        assert _wire(tmp_path / s["file"])["shards"] == []
        seen.update(part)
    assert sorted(seen) == sorted(k for k in sd if k != "empty")
    for k, t in seen.items():
        assert torch.equal(t, sd[k])


def test_a_set_that_fits_in_one_shard_is_one_file_and_stale_shards_go(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    (tmp_path / "model-00001-of-00009.tmodel").write_bytes(b"x")  # an older save's
    (tmp_path / "other-00001-of-00002.tmodel").write_bytes(b"x")  # another target's: kept
    tmodel.save(_state(), path, max_shard_size="1GB")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tmodel", "other-00001-of-00002.tmodel"]
    assert _wire(path)["shards"] == [] and tmodel.load(path)["embed"].dtype == torch.bfloat16
    tmodel.save(_state(), path, max_shard_size=LIMIT)
    tmodel.save(_state(), path, max_shard_size=100_000)  # fewer shards: the seven of before are removed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model.tmodel", "other-00001-of-00002.tmodel", *shard_names(str(path), 2)]
    )
    _same(tmodel.load(path), _state())


def test_saves_are_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    _saved(a), _saved(b)
    assert {p.name: p.read_bytes() for p in a.iterdir()} == {p.name: p.read_bytes() for p in b.iterdir()}


@pytest.mark.parametrize(
    ("given", "expected"),
    [(5, 5), ("5GB", 5 * 10**9), ("5GiB", 5 << 30), ("1.5MB", 1_500_000), ("200kb", 200_000), ("12", 12)],
)
def test_sizes_read_as_hugging_face_writes_them(given: Any, expected: int) -> None:
    assert parse_size(given) == expected


@pytest.mark.parametrize("bad", [0, -1, "0GB", "5 XB", "", "GB", 1.5, True, "1e9", b"5"])
def test_bad_sizes_are_invalid_arguments(bad: Any, tmp_path: Path) -> None:
    assert _code(lambda: tmodel.save({"w": torch.ones(2)}, tmp_path / "m.tmodel", max_shard_size=bad)) == (
        "INVALID_ARGUMENT"
    )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["my model.tmodel", "modèle (v2).tmodel", "ckpt", "a.b.c.tmodel"])
def test_any_plain_target_name_names_its_shards(tmp_path: Path, name: str) -> None:
    tmodel.save(_state(), tmp_path / name, max_shard_size=LIMIT)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, *shard_names(name, SHARDS)])
    _same(tmodel.load(tmp_path / name), _state())
    assert independent_reader.Reader(str(tmp_path / name)).read() == describe(str(tmp_path / name))


def test_a_target_whose_shards_could_not_be_named_is_refused_first(tmp_path: Path) -> None:
    err = _error(lambda: tmodel.save(_state(), tmp_path / "a..b.tmodel", max_shard_size=LIMIT))
    assert err.code == "INVALID_ARGUMENT" and not list(tmp_path.iterdir())


def test_a_file_object_target_cannot_hold_shards() -> None:
    assert (
        _code(lambda: tmodel.save({"w": torch.ones(2)}, io.BytesIO(), max_shard_size=1)) == "INVALID_ARGUMENT"
    )


def test_a_save_the_reader_would_refuse_writes_no_shard(tmp_path: Path) -> None:
    class Odd(torch.nn.Module):  # not registered: its record cannot be rebuilt
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3000))

    path = tmp_path / "m.tmodel"
    tmodel.save(_state(), path, max_shard_size=LIMIT)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    err = _error(lambda: tmodel.save({"a": Odd(), "b": torch.ones(5000)}, path, max_shard_size=4000))
    assert err.code == "UNREGISTERED_TYPE"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# -- reading -------------------------------------------------------------------------------------------------
def test_load_through_the_index_is_bit_exact_with_sharing_kept(tmp_path: Path) -> None:
    got = tmodel.load(_saved(tmp_path))
    _same(got, _state())
    assert got["tied"].untyped_storage().data_ptr() == got["layers.2.weight"].untyped_storage().data_ptr()
    (tmp_path / "raw").mkdir()
    raw = tmodel.load(_saved(tmp_path / "raw", codec="raw"))  # raw blobs: mapped from their shards
    _same(raw, _state())


def test_open_reads_only_the_shards_it_needs(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    with tmodel.open(path) as f:
        shards = f.reader.shards
        assert shards is not None and list(shards._open) == []  # the index alone is read on open
        assert f.keys() == list(_state())
        t = f.get_tensor("layers.4.weight")
        assert torch.equal(t, _state()["layers.4.weight"])
        k = shards.tensor_shard[f.keys().index("layers.4.weight")]
        assert list(shards._open) == [k]
        assert torch.equal(f.get_slice("embed")[3:7], _state()["embed"][3:7])
        assert f.get_tensor("empty").shape == (0, 4) and len(shards._open) == 2
    os.unlink(tmp_path / shard_names(str(path), SHARDS)[0])  # a shard nobody reads need not be there
    with tmodel.open(path) as f:
        assert torch.equal(f.get_tensor("embed"), _state()["embed"])
        err = _error(lambda: f.get_tensor("layers.0.weight"))
        assert err.code == "IO_ERROR" and "model-00001-of-00007.tmodel" in str(err)


def test_a_model_saves_sharded_and_loads_whole(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 8))
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 64)).sum().backward()
    opt.step()
    path = tmp_path / "ckpt.tmodel"
    tmodel.save({"model": model, "optim": opt, "step": 3}, path, max_shard_size=20_000)
    assert len(_wire(path)["shards"]) > 2
    got = tmodel.load(path)
    assert type(got["model"]) is torch.nn.Sequential and got["step"] == 3
    for a, b in zip(got["model"].parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(got["optim"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    fresh = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 8))
    report = tmodel.load_into(fresh, path, key="model")
    assert report and torch.equal(fresh[2].bias, model[2].bias)
    meta = tmodel.load(path, map_location="meta")
    assert meta["model"][0].weight.is_meta


def test_progress_counts_the_whole_set(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    seen: list[tuple[int, int]] = []
    tmodel.load(path, progress=lambda d, t: seen.append((d, t)))
    total = sum(sum(s["blobs"]) for s in _wire(path)["shards"])
    assert seen[-1] == (total, total) and all(t == total for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_describe_and_the_independent_reader_agree_on_an_index(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    assert independent_reader.Reader(str(path)).read() == describe(str(path))


def test_an_index_read_from_a_file_object_cannot_find_its_shards(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    with open(path, "rb") as fh:
        err = _error(lambda: tmodel.load(fh))
    assert err.code == "INVALID_ARGUMENT" and "sharded set" in str(err)
    with tmodel.open(io.BytesIO(path.read_bytes())) as f:  # the index itself opens: names, shapes
        assert f.keys() == list(_state())
        assert f.get_tensor("empty").shape == (0, 4)


def test_an_index_reached_through_a_link_finds_its_shards(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    path = _saved(real)
    (tmp_path / "link.tmodel").symlink_to(path)
    _same(tmodel.load(tmp_path / "link.tmodel"), _state())


def test_an_index_and_its_shards_read_by_url(tmp_path: Path) -> None:
    _saved(tmp_path)
    fs = fsspec.filesystem("memory")
    for p in tmp_path.iterdir():
        fs.pipe(f"/sets/{p.name}", p.read_bytes())
    try:
        tmodel.save(_state(), "memory://sets/again.tmodel", max_shard_size=LIMIT)  # uploaded, index last
        names = sorted(n.rsplit("/", 1)[-1] for n in fs.ls("/sets", detail=False) if "again" in n)
        assert names == sorted(["again.tmodel", *shard_names("again.tmodel", SHARDS)])
        _same(tmodel.load("memory://sets/again.tmodel"), _state())
        _same(tmodel.load("memory://sets/model.tmodel"), _state())
        with tmodel.open("memory://sets/model.tmodel") as f:
            assert torch.equal(f.get_tensor("layers.5.weight"), _state()["layers.5.weight"])
    finally:
        fs.rm("/sets", recursive=True)


# -- the set verifies as a whole -----------------------------------------------------------------------------
def test_verify_checks_every_shard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _saved(tmp_path)
    tmodel.open(path).verify()
    seen: list[int] = []
    tmodel.open(path).verify(progress=lambda d, t: seen.append(d))
    assert seen[-1] == sum(sum(s["blobs"]) for s in _wire(path)["shards"])
    third = tmp_path / shard_names(str(path), SHARDS)[2]
    data = bytearray(third.read_bytes())
    data[HEADER_SIZE + 10] ^= 1  # a chunk's byte: only reading it finds it
    third.write_bytes(bytes(data))
    with tmodel.open(path) as f:
        err = _error(f.verify)
    assert err.code == "CHECKSUM_MISMATCH" and err.path == str(third)
    assert main(["verify", str(path)]) != 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error[CHECKSUM_MISMATCH]")


def test_a_shard_from_another_save_is_caught_naming_it(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    path = _saved(a)
    other = _state()
    other["layers.1.weight"] = other["layers.1.weight"] + 1  # same shapes, names and sizes: another save
    _saved(b, other)
    name = shard_names(str(path), SHARDS)[1]  # the one holding layers.1.weight
    shutil.copy(b / name, a / name)
    for fn in (lambda: tmodel.load(path), lambda: tmodel.open(path).verify()):
        err = _error(fn)
        assert err.code == "CHECKSUM_MISMATCH" and name in str(err) and err.path == str(a / name)
    with tmodel.open(path) as f:  # the other shards still read
        assert torch.equal(f.get_tensor("embed"), _state()["embed"])
    with pytest.raises(independent_reader.ReaderError) as ind:
        independent_reader.Reader(str(path)).read()
    assert ind.value.code == "CHECKSUM_MISMATCH"


@pytest.mark.parametrize("how", ["truncated", "appended", "garbage", "directory"])
def test_a_damaged_or_missing_shard_is_a_coded_error_naming_it(tmp_path: Path, how: str) -> None:
    path = _saved(tmp_path)
    shard = tmp_path / shard_names(str(path), SHARDS)[1]
    data = shard.read_bytes()
    if how == "truncated":
        shard.write_bytes(data[:-10])
    elif how == "appended":
        shard.write_bytes(data + b"\0" * 64)
    elif how == "garbage":
        shard.write_bytes(b"not a tmodel file at all" * 10)
    else:
        shard.unlink()
        shard.mkdir()
    err = _error(lambda: tmodel.load(path))
    assert shard.name in str(err) and err.path == str(shard)
    with pytest.raises(independent_reader.ReaderError) as ind:
        independent_reader.Reader(str(path)).read()
    assert ind.value.code == err.code, how


def test_an_index_edited_to_other_tensors_is_refused_by_both_readers(tmp_path: Path) -> None:
    path = _saved(tmp_path)

    def rename(w: dict[str, Any]) -> None:
        w["tensors"][0]["name"] = "renamed"

    _rewritten(path, rename)
    assert _code(lambda: tmodel.load(path)) == "BAD_LAYOUT"
    with pytest.raises(independent_reader.ReaderError) as ind:
        independent_reader.Reader(str(path)).read()
    assert ind.value.code == "BAD_LAYOUT"


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda w: w["shards"][0].__setitem__("file", "../model-00001-of-00007.tmodel"), "BAD_NAME"),
        (lambda w: w["shards"][0].__setitem__("file", "/etc/passwd"), "BAD_NAME"),
        (lambda w: w["shards"][0].__setitem__("file", ".hidden"), "BAD_NAME"),
        (lambda w: w["shards"][0].__setitem__("file", "C:model-00001-of-00007.tmodel"), "BAD_NAME"),
        (lambda w: w["shards"][0].__setitem__("file", "..\\model-00001-of-00007.tmodel"), "BAD_NAME"),
        (lambda w: w["shards"][0].__setitem__("file", "shard\n.tmodel"), "BAD_NAME"),
        (lambda w: w["shards"][0].__setitem__("file", "é" * 128), "BAD_NAME"),
        (lambda w: w["shards"][1].__setitem__("file", w["shards"][0]["file"]), "BAD_NAME"),
        (lambda w: w["shards"][0].__setitem__("digest", b"\0" * 7), "BAD_LAYOUT"),
        (lambda w: w["shards"][0].__setitem__("size", 127), "BAD_LAYOUT"),
        (lambda w: w["shards"][0].__setitem__("blobs", []), "BAD_LAYOUT"),
        (lambda w: w["shards"][0].__setitem__("blobs", [1 << 40]), "LIMIT_EXCEEDED"),
        (lambda w: w["shards"][0].__setitem__("blobs", [0]), "MANIFEST_SCHEMA"),
        (lambda w: w["shards"][0].__setitem__("extra", 1), "MANIFEST_SCHEMA"),
        (lambda w: w["shards"][0]["blobs"].__setitem__(0, 4), "BAD_TENSOR"),
        (lambda w: w["tensors"][0].__setitem__("blob", 99), "BAD_TENSOR"),
        (lambda w: w["shards"][-1]["blobs"].append(64), "BAD_LAYOUT"),  # a set blob no tensor views
        (lambda w: w.__setitem__("shards", w["shards"] * 20001), "LIMIT_EXCEEDED"),
    ],
)
def test_an_index_is_checked_alone_before_any_shard_opens(tmp_path: Path, edit: Any, code: str) -> None:
    path = _saved(tmp_path)
    _rewritten(path, edit)
    for s in shard_names(str(path), SHARDS):  # no shard is needed to refuse it
        os.unlink(tmp_path / s)
    assert _code(lambda: tmodel.open(path)) == code
    with pytest.raises(independent_reader.ReaderError) as ind:
        independent_reader.Reader(str(path)).read()
    assert ind.value.code == code


def test_a_signed_set_verifies_and_a_swapped_shard_breaks_it(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    path = _saved(tmp_path, sign_with=key)
    assert _wire(path)["checksum"] == "blake3"
    got = tmodel.load(path, trusted_keys=[key.public_key()], require_signature=True)
    _same(got, _state())
    for s in _wire(path)["shards"]:  # each shard signed too: it verifies on its own
        assert len(tmodel.open(tmp_path / s["file"]).signatures) == 1


def test_an_encrypted_set(tmp_path: Path) -> None:
    key = os.urandom(32)
    path = _saved(tmp_path, encrypt_with=key)
    for p in tmp_path.iterdir():
        assert _code(lambda p=p: tmodel.load(p)) == "KEY_REQUIRED"
    _same(tmodel.load(path, key=key), _state())
    assert _code(lambda: tmodel.load(path, key=os.urandom(32))) == "WRONG_KEY"


def test_rewriting_operations_refuse_an_index(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    assert (
        _code(lambda: tmodel.encrypt_file(path, tmp_path / "e.tmodel", os.urandom(32))) == "INVALID_ARGUMENT"
    )
    assert not (tmp_path / "e.tmodel").exists()


# -- the command line ----------------------------------------------------------------------------------------
def test_cli_inspect_and_verify_an_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _saved(tmp_path)
    assert main(["verify", str(path)]) == 0
    assert capsys.readouterr().out.endswith(", unsigned, 7 shards)\n")
    assert main(["inspect", str(path)]) == 0
    assert "index of a sharded set: 7 shards" in capsys.readouterr().out
    assert main(["inspect", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["file"] for s in doc["shards"]] == shard_names(str(path), SHARDS)
    assert doc["totals"]["raw_bytes"] == sum(sum(s["blobs"]) for s in _wire(path)["shards"])


# -- Hugging Face sharded safetensors, both ways -------------------------------------------------------------
def test_tmodel_index_to_hugging_face_index_and_back_keeps_the_split(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    sd = {k: v for k, v in _state().items() if k != "tied"}  # safetensors holds no shared views
    tmodel.save(sd, path, max_shard_size=LIMIT)
    hf = tmp_path / "hf" / "model.safetensors.index.json"
    hf.parent.mkdir()
    convert(path, hf)
    doc = json.loads(hf.read_text())
    files = sorted(set(doc["weight_map"].values()))
    assert files == [f"model-{k:05d}-of-{SHARDS:05d}.safetensors" for k in range(1, SHARDS + 1)]
    assert doc["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in sd.values())
    loaded: dict[str, torch.Tensor] = {}
    for f in files:
        loaded.update(load_file(hf.parent / f))
    assert sorted(loaded) == sorted(sd)
    for k in sd:
        assert torch.equal(loaded[k], sd[k])
    back = tmp_path / "back" / "m.tmodel"
    back.parent.mkdir()
    convert(hf, back)
    assert len(_wire(back)["shards"]) == SHARDS
    _same({k: tmodel.load(back)[k] for k in sd}, sd)


def test_one_file_to_a_hugging_face_index_by_size_and_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sd = {f"w{i}": torch.full((1000,), float(i)) for i in range(4)}  # 4,000 bytes each
    src = tmp_path / "one.tmodel"
    tmodel.save(sd, src)
    dst = tmp_path / "model.safetensors.index.json"
    assert main(["convert", str(src), str(dst), "--max-shard-size", "8000"]) == 0, capsys.readouterr().err
    doc = json.loads(dst.read_text())
    assert doc["weight_map"] == {
        "w0": "model-00001-of-00002.safetensors",
        "w1": "model-00001-of-00002.safetensors",
        "w2": "model-00002-of-00002.safetensors",
        "w3": "model-00002-of-00002.safetensors",
    }
    again = tmp_path / "again.tmodel"
    assert main(["convert", str(dst), str(again), "--max-shard-size", "4000"]) == 0
    assert len(_wire(again)["shards"]) == 4
    _same(tmodel.load(again), sd)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=12),
    limit=st.integers(1, 12_000),
    codec=st.sampled_from(["auto", "raw", "zstd"]),
)
def test_any_split_round_trips(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], limit: int, codec: str
) -> None:
    tmp = tmp_path_factory.mktemp("split")
    g = torch.Generator().manual_seed(len(sizes) * 7919 + limit)
    sd = {f"t{i}": torch.randn(n, generator=g) for i, n in enumerate(sizes)}
    path = tmp / "m.tmodel"
    tmodel.save(sd, path, max_shard_size=limit, codec=codec)
    wire = _wire(path)
    stored = [s for s in sizes if s]
    if wire["shards"]:
        assert [n for s in wire["shards"] for n in s["blobs"]] == [4 * n for n in stored]
        for s in wire["shards"]:
            assert sum(s["blobs"]) <= limit or len(s["blobs"]) == 1
    else:
        assert sum(4 * n for n in stored) <= limit or len(stored) <= 1
    _same(tmodel.load(path), sd)
    assert independent_reader.Reader(str(path)).read() == describe(str(path))
