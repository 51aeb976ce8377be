"""The error hierarchy fits Python and carries data: NotFound is a KeyError, MissingFile a FileNotFoundError,
InvalidArgument a ValueError, UnsupportedType a TypeError, each with its code; errors name what they are
about (`path`, `tensor`, `blob`, `chunk`, `layer`, `version`, `step`) on real failures, pickle round trip,
and the CLI still prints one line."""

from __future__ import annotations

import copy
import errno
import json
import os
import pickle
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import tmodel
from tmodel import errors
from tmodel.archive.reader import Reader
from tmodel.cli.main import main
from tmodel.container.atomic import replace_atomically
from tmodel.container.framing import HEADER_SIZE, TRAILER_SIZE, pack_trailer
from tmodel.errors import (
    ALL_ERRORS,
    CONTEXT_FIELDS,
    BadName,
    BadSourceFile,
    ChecksumMismatch,
    FileAccessError,
    InvalidArgument,
    LayerVersionError,
    MigrationError,
    MissingFile,
    NotFound,
    NotRegularFile,
    TModelError,
    UnregisteredType,
    UnsupportedType,
)
from tmodel.interop.convert import convert, read_torch
from tmodel.interop.safetensors import read_safetensors, read_safetensors_index
from tmodel.manifest.encoding import pack_manifest
from tmodel.nn import chain, registry, steps

ROOT = Path(__file__).resolve().parents[1]

#: the Python exception bases each class has besides TModelError (none for most)
PYTHON_BASES: dict[type[TModelError], tuple[type[BaseException], ...]] = {
    NotFound: (KeyError, LookupError),
    InvalidArgument: (ValueError,),
    UnsupportedType: (TypeError,),
    MissingFile: (FileAccessError, FileNotFoundError, OSError),
}
BUILTIN_FAMILIES = (LookupError, ValueError, TypeError, OSError, ArithmeticError, RuntimeError)
CODES = {
    "TModelError": "TMODEL",
    "BadMagic": "BAD_MAGIC",
    "UnsupportedVersion": "UNSUPPORTED_VERSION",
    "UnknownFeature": "UNKNOWN_FEATURE",
    "Truncated": "TRUNCATED",
    "BadLayout": "BAD_LAYOUT",
    "LimitExceeded": "LIMIT_EXCEEDED",
    "ManifestDecodeError": "MANIFEST_DECODE",
    "ManifestSchemaError": "MANIFEST_SCHEMA",
    "BadName": "BAD_NAME",
    "UnknownDtype": "UNKNOWN_DTYPE",
    "UnknownCodec": "UNKNOWN_CODEC",
    "UnknownChecksum": "UNKNOWN_CHECKSUM",
    "BadTensor": "BAD_TENSOR",
    "ChecksumMismatch": "CHECKSUM_MISMATCH",
    "BadCompressedData": "BAD_COMPRESSED_DATA",
    "BadSignature": "BAD_SIGNATURE",
    "WrongKey": "WRONG_KEY",
    "DecryptionFailed": "DECRYPTION_FAILED",
    "BadValue": "BAD_VALUE",
    "UnregisteredType": "UNREGISTERED_TYPE",
    "BadConfig": "BAD_CONFIG",
    "LayerVersionError": "LAYER_VERSION",
    "StateMismatch": "STATE_MISMATCH",
    "MigrationError": "MIGRATION",
    "UnsupportedType": "UNSUPPORTED_TYPE",
    "NotFound": "NOT_FOUND",
    "InvalidArgument": "INVALID_ARGUMENT",
    "SignatureRequired": "SIGNATURE_REQUIRED",
    "KeyRequired": "KEY_REQUIRED",
    "ConformanceFailure": "CONFORMANCE_FAILED",
    "FileAccessError": "IO_ERROR",
    "MissingFile": "IO_ERROR",
    "NotRegularFile": "NOT_REGULAR_FILE",
    "BadSourceFile": "BAD_SOURCE",
}


# -- the classes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL_ERRORS, ids=[c.__name__ for c in ALL_ERRORS])
def test_python_bases_and_code(cls: type[TModelError]) -> None:
    assert issubclass(cls, TModelError) and issubclass(cls, Exception)
    assert cls.code == CODES[cls.__name__]
    wanted = PYTHON_BASES.get(cls, ())
    for family in BUILTIN_FAMILIES:
        assert issubclass(cls, family) == any(issubclass(b, family) for b in wanted), (cls, family)
    for base in wanted:
        assert issubclass(cls, base)


def test_every_class_is_listed_and_codes_are_unique_but_for_missing_file() -> None:
    listed = {c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, TModelError)}
    assert listed == set(ALL_ERRORS)
    assert set(CODES) == {c.__name__ for c in ALL_ERRORS}
    assert [c.code for c in ALL_ERRORS if c is not MissingFile] == list(
        dict.fromkeys(c.code for c in ALL_ERRORS if c is not MissingFile)
    )
    assert MissingFile.code == FileAccessError.code and MissingFile.phase == FileAccessError.phase
    assert BadSourceFile.phase == "source"


def _spec_table() -> dict[str, str]:
    spec = (ROOT / "SPEC.md").read_text()
    section = spec[spec.index("## 10. Error codes") : spec.index("## 11.")]
    return dict(re.findall(r"^\| `([A-Z_]+)` \| (\w+) \|", section, re.M))


def test_spec_section_10_lists_every_class_and_nothing_else() -> None:
    table = _spec_table()
    for cls in ALL_ERRORS[1:]:
        assert table.get(cls.code) == cls.phase, cls.__name__
    assert set(table) == {c.code for c in ALL_ERRORS[1:]}


def test_str_is_the_plain_message_and_the_old_api_still_works() -> None:
    e = NotFound("no tensor named 'x'")
    assert str(e) == e.message == "no tensor named 'x'"  # KeyError would quote it
    assert e.args == ("no tensor named 'x'",)
    assert repr(e) == "NotFound(\"no tensor named 'x'\")"
    assert e.one_line() == "error[NOT_FOUND]: no tensor named 'x'"
    base = TModelError("a\n  b")
    assert (base.code, base.phase, base.one_line()) == ("TMODEL", "usage", "error[TMODEL]: a b")
    assert all(getattr(base, k) is None for k in CONTEXT_FIELDS) and base.context == {}
    with pytest.raises(TypeError):
        TModelError("m", "positional context")  # type: ignore[misc]
    missing = MissingFile("gone", path=Path("/x/y.tmodel"))
    assert str(missing) == "gone" and missing.path == "/x/y.tmodel"
    assert (missing.errno, missing.strerror, missing.filename) == (
        errno.ENOENT,
        os.strerror(errno.ENOENT),
        "/x/y.tmodel",
    )


def test_add_context_fills_only_what_is_missing() -> None:
    e = ChecksumMismatch("bad", blob=1, chunk=2)
    assert e.add_context(path="f.tmodel", blob=7, tensor="w") is e
    assert e.context == {"path": "f.tmodel", "tensor": "w", "blob": 1, "chunk": 2}
    e.add_context(path="other.tmodel")
    assert e.path == "f.tmodel"
    m = MissingFile("gone")
    assert m.filename is None
    m.add_context(path="late.tmodel")
    assert m.filename == m.path == "late.tmodel"


# -- pickling ---------------------------------------------------------------------------------------------
_names = st.one_of(st.none(), st.text(max_size=20))
_ints = st.one_of(st.none(), st.integers(min_value=0, max_value=2**63 - 1))
CONTEXTS = st.fixed_dictionaries(
    {},
    optional={
        "path": st.text(min_size=1, max_size=30),
        "tensor": _names,
        "blob": _ints,
        "chunk": _ints,
        "layer": _names,
        "version": _ints,
        "step": _names,
    },
)


def _same_error(got: BaseException, want: TModelError) -> None:
    assert type(got) is type(want)
    assert isinstance(got, TModelError)
    assert (got.code, got.phase, got.message, str(got), got.args) == (
        want.code,
        want.phase,
        want.message,
        str(want),
        want.args,
    )
    assert got.context == want.context
    assert got.one_line() == want.one_line()
    if isinstance(want, OSError):
        assert isinstance(got, OSError)
        assert (got.errno, got.strerror, got.filename) == (want.errno, want.strerror, want.filename)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL_ERRORS), st.text(max_size=80), CONTEXTS, st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_every_error_pickles_and_copies(
    cls: type[TModelError], message: str, context: dict[str, Any], protocol: int
) -> None:
    e = cls(message, **context)
    _same_error(pickle.loads(pickle.dumps(e, protocol)), e)
    _same_error(copy.copy(e), e)
    _same_error(copy.deepcopy(e), e)


def test_notes_and_attached_context_survive_pickling() -> None:
    e = NotFound("no tensor named 'w'", tensor="w")
    e.add_note("while loading")
    e.add_context(path="f.tmodel")
    back = pickle.loads(pickle.dumps(e))
    _same_error(back, e)
    assert back.__notes__ == ["while loading"]


# -- Python bases on real failures -------------------------------------------------------------------------
def test_except_key_error_catches_a_missing_tensor(small_file: Path) -> None:
    with tmodel.open(small_file) as f:
        with pytest.raises(KeyError) as info:
            f.get_tensor("missing")
        with pytest.raises(LookupError):
            f.get_slice("missing")
    e = info.value
    assert isinstance(e, NotFound) and e.code == "NOT_FOUND"
    assert str(e) == "no tensor named 'missing'"
    assert (e.tensor, e.path) == ("missing", str(small_file))
    with tmodel.open(small_file) as f:  # a dict-style lookup still answers as before
        try:
            f.get_tensor("missing")
        except KeyError as exc:
            assert exc.args == ("no tensor named 'missing'",)


def test_except_file_not_found_catches_open_load_and_convert(tmp_path: Path) -> None:
    nope = tmp_path / "nope.tmodel"
    for fn in (
        lambda: tmodel.open(nope),
        lambda: tmodel.load(nope),
        lambda: tmodel.load_into(nn.Linear(1, 1), nope),
        lambda: Reader(nope),
        lambda: convert(nope, tmp_path / "out.safetensors"),
        lambda: read_safetensors(tmp_path / "nope.safetensors"),
        lambda: read_torch(tmp_path / "nope.pt"),
    ):
        with pytest.raises(FileNotFoundError) as info:
            fn()
        e = info.value
        assert isinstance(e, MissingFile) and isinstance(e, FileAccessError)
        assert e.code == "IO_ERROR" and e.phase == "io"
        assert e.errno == errno.ENOENT and e.strerror == os.strerror(errno.ENOENT)
        assert e.filename == e.path and e.path is not None and e.path.startswith(str(tmp_path))
        assert "cannot open" in str(e) and "[Errno" not in str(e)


def test_other_io_failures_are_not_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(TModelError) as info:
        tmodel.load(tmp_path)  # a directory
    assert isinstance(info.value, NotRegularFile) and not isinstance(info.value, OSError)
    assert info.value.path == str(tmp_path)
    with pytest.raises(FileNotFoundError) as missing_dir:  # writing into a directory that does not exist
        tmodel.save({"w": torch.ones(1)}, tmp_path / "no" / "such" / "dir.tmodel")
    assert missing_dir.value.code == "IO_ERROR"
    assert missing_dir.value.filename == str(tmp_path / "no" / "such" / "dir.tmodel")
    if os.geteuid() != 0:  # root reads everything
        locked = tmp_path / "locked.tmodel"
        tmodel.save({"w": torch.ones(1)}, locked)
        locked.chmod(0)
        with pytest.raises(TModelError) as denied:
            tmodel.load(locked)
        assert type(denied.value) is FileAccessError and not isinstance(denied.value, OSError)
        assert denied.value.code == "IO_ERROR" and denied.value.path == str(locked)


def test_except_value_error_and_type_error_catch_bad_arguments_to_save(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as bad_level:
        tmodel.save({"w": torch.ones(1)}, tmp_path / "a.tmodel", level=99)
    assert isinstance(bad_level.value, InvalidArgument) and bad_level.value.code == "INVALID_ARGUMENT"
    with pytest.raises(TypeError) as bad_value:
        tmodel.save({"w": object()}, tmp_path / "a.tmodel")
    assert isinstance(bad_value.value, UnsupportedType) and bad_value.value.code == "UNSUPPORTED_TYPE"
    with pytest.raises(TypeError):
        tmodel.save({"w": torch.ones(1)}, tmp_path / "a.tmodel", metadata={"m": object()})
    assert not (tmp_path / "a.tmodel").exists()
    with tmodel.open(_saved(tmp_path)) as f, pytest.raises(ValueError) as bad_index:
        f.get_slice("w")[5]
    assert bad_index.value.code == "INVALID_ARGUMENT" and bad_index.value.tensor == "w"


def _saved(tmp_path: Path) -> Path:
    path = tmp_path / "w.tmodel"
    tmodel.save({"w": torch.arange(4.0)}, path)
    return path


def test_a_write_callback_error_that_is_an_oserror_is_not_rewrapped(tmp_path: Path) -> None:
    def write(f: BinaryIO) -> None:
        raise MissingFile("the source vanished", path="src.tmodel")

    with pytest.raises(MissingFile) as info:
        replace_atomically(tmp_path / "out.bin", write)
    assert str(info.value) == "the source vanished" and info.value.path == "src.tmodel"
    assert os.listdir(tmp_path) == []


# -- attributes on real failures ---------------------------------------------------------------------------
def _chunk_start(path: Path, tensor: str, chunk: int) -> tuple[int, int, int]:
    """(blob index, file offset of the chunk's stored bytes, chunk size) of a tensor's blob."""
    with Reader(path) as r:
        m = r.manifest
        blob = next(t.blob for t in m.tensors if t.name == tensor)
        assert blob is not None
        b = m.blobs[blob]
        assert len(b.chunks) > chunk
        return blob, b.offset + sum(sum(c.segments) for c in b.chunks[:chunk]), b.chunk_size


@pytest.mark.parametrize("codec", ["raw", "bytegroup-zstd"])
@pytest.mark.parametrize("chunk", [0, 2])
def test_a_corrupted_chunk_names_the_file_blob_and_chunk(tmp_path: Path, codec: str, chunk: int) -> None:
    path = tmp_path / "c.tmodel"
    obj = {"a": torch.arange(64.0), "b": torch.arange(64.0) * 3, "c": torch.ones(8)}
    tmodel.save(obj, path, codec=codec, chunk_size=64)
    blob, offset, chunk_size = _chunk_start(path, "b", chunk)
    assert blob > 0  # "a" comes first: a blob index of 0 would prove nothing
    row = chunk * chunk_size // 4
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))

    def get(mmap: bool) -> None:
        with tmodel.open(path, mmap=mmap) as f:
            f.get_tensor("b")

    def part() -> None:
        with tmodel.open(path) as f:
            f.get_slice("b")[row : row + 1]

    def verify() -> None:
        with tmodel.open(path) as f:
            f.verify()

    for fn in (
        lambda: tmodel.load(path),
        lambda: tmodel.load(path, mmap=False),
        lambda: get(True),
        lambda: get(False),
        part,
        verify,
    ):
        with pytest.raises(ChecksumMismatch) as info:
            fn()
        e = info.value
        assert (e.code, e.path, e.blob, e.chunk) == ("CHECKSUM_MISMATCH", str(path), blob, chunk)
        assert e.tensor is None and e.layer is None
    with tmodel.open(path) as f:
        assert f.get_tensor("a").equal(obj["a"])


def _rewrite_manifest(src: Path, dest: Path, edit: Any) -> Path:
    """`src` with its manifest edited by `edit(wire)` and a trailer whose digests are correct again."""
    data = src.read_bytes()
    offset, length = struct.unpack_from("<QQ", data, len(data) - TRAILER_SIZE)
    wire = msgpack.unpackb(data[offset : offset + length], raw=False)
    edit(wire)
    raw = pack_manifest(wire)
    header = data[:HEADER_SIZE]
    dest.write_bytes(data[:offset] + raw + pack_trailer(offset, raw, wire["checksum"], header))
    return dest


@pytest.mark.parametrize("name", ["a/b", "..", "x\x00y", ""])
def test_a_bad_tensor_name_in_a_file_names_the_tensor_and_the_file(
    small_file: Path, tmp_path: Path, name: str
) -> None:
    path = _rewrite_manifest(small_file, tmp_path / "n.tmodel", lambda w: w["tensors"][0].update(name=name))
    for fn in (lambda: tmodel.load(path), lambda: tmodel.open(path), lambda: Reader(path)):
        with pytest.raises(BadName) as info:
            fn()
        assert (info.value.code, info.value.tensor, info.value.path) == ("BAD_NAME", name, str(path))


def test_a_duplicate_tensor_name_names_it(small_file: Path, tmp_path: Path) -> None:
    def dup(w: dict[str, Any]) -> None:
        w["tensors"][1]["name"] = w["tensors"][0]["name"]

    path = _rewrite_manifest(small_file, tmp_path / "d.tmodel", dup)
    with pytest.raises(BadName) as info:
        tmodel.load(path)
    assert info.value.tensor == "w" and info.value.path == str(path)


@pytest.fixture
def layers() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        if registry.is_registered_name(name):
            registry.unregister(name)
        steps.unregister_steps(name)


def _layer_class(name: str, version: int, names: list[str]) -> type[nn.Module]:
    class Gate(nn.Module):
        def __init__(self, dim: int = 2) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(dim))

    if registry.is_registered_name(name):
        registry.unregister(name)
    registry.register(name, version=version)(Gate)
    names.append(name)
    return Gate


def test_an_unregistered_layer_names_the_layer(tmp_path: Path, layers: list[str]) -> None:
    path = tmp_path / "g.tmodel"
    tmodel.save(_layer_class("t.err.Gone", 1, layers)(), path)
    registry.unregister("t.err.Gone")
    for fn in (lambda: tmodel.load(path), lambda: tmodel.open(path).load()):
        with pytest.raises(UnregisteredType) as info:
            fn()
        assert (info.value.code, info.value.layer, info.value.path) == (
            "UNREGISTERED_TYPE",
            "t.err.Gone",
            str(path),
        )

    class Plain(nn.Module):
        pass

    with pytest.raises(UnregisteredType) as saving:
        tmodel.save(Plain(), tmp_path / "p.tmodel")
    assert saving.value.layer == f"{Plain.__module__}.{Plain.__qualname__}"
    with pytest.raises(ValueError) as twice:
        registry.register("t.err.Gone", version=3)(_layer_class("t.err.Gone", 1, layers))
    assert twice.value.code == "INVALID_ARGUMENT"
    assert (twice.value.layer, twice.value.version) == ("t.err.Gone", 3)


def test_a_file_newer_than_the_layer_names_layer_and_version(tmp_path: Path, layers: list[str]) -> None:
    path = tmp_path / "g.tmodel"
    tmodel.save(_layer_class("t.err.Newer", 2, layers)(), path)
    _layer_class("t.err.Newer", 1, layers)
    with pytest.raises(LayerVersionError) as info:
        tmodel.load(path)
    assert (info.value.code, info.value.layer, info.value.version, info.value.path) == (
        "LAYER_VERSION",
        "t.err.Newer",
        2,
        str(path),
    )
    _layer_class("t.err.Newer", 4, layers)  # older in the file, and no step from version 2: a gap
    with pytest.raises(MigrationError) as gap:
        tmodel.load(path)
    assert (gap.value.layer, gap.value.version, gap.value.step, gap.value.path) == (
        "t.err.Newer",
        2,
        None,
        str(path),
    )


def test_a_failing_step_names_layer_version_and_step(tmp_path: Path, layers: list[str]) -> None:
    path = tmp_path / "g.tmodel"
    tmodel.save(_layer_class("t.err.Step", 1, layers)(), path)
    _layer_class("t.err.Step", 3, layers)

    @tmodel.migration("t.err.Step", from_version=1)
    def fine(rec: steps.LayerRecord) -> None:
        pass

    @tmodel.migration("t.err.Step", from_version=2)
    def broken(rec: steps.LayerRecord) -> None:
        rec.rename("nope", "x")  # a MigrationError from the record, passed through

    with pytest.raises(MigrationError) as info:
        tmodel.load(path)
    e = info.value
    assert (e.code, e.layer, e.version, e.step, e.path) == (
        "MIGRATION",
        "t.err.Step",
        2,
        broken.__qualname__,
        str(path),
    )
    assert "no tensor 'nope'" in str(e)
    steps.unregister_steps("t.err.Step")
    steps.migration("t.err.Step", from_version=1)(fine)

    @tmodel.migration("t.err.Step", from_version=2)
    def crashes(rec: steps.LayerRecord) -> None:
        raise RuntimeError("boom")

    with pytest.raises(MigrationError) as crash:
        tmodel.load(path)
    assert (crash.value.layer, crash.value.version, crash.value.step) == (
        "t.err.Step",
        2,
        crashes.__qualname__,
    )
    assert "boom" in str(crash.value)
    assert pickle.loads(pickle.dumps(crash.value)).context == crash.value.context


def test_a_step_without_a_downgrade_names_the_step(layers: list[str]) -> None:
    _layer_class("t.err.Down", 2, layers)

    @tmodel.migration("t.err.Down", from_version=1)
    def one_way(rec: steps.LayerRecord) -> None:
        pass

    with pytest.raises(MigrationError) as info:
        chain.steps_between("t.err.Down", 2, 1)
    e = info.value
    assert (e.layer, e.version, e.step) == ("t.err.Down", 2, one_way.__qualname__)
    assert "declares no downgrade" in str(e)


# -- convert: malformed sources ----------------------------------------------------------------------------
def _safetensors_with_header(path: Path, header: bytes) -> Path:
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


def test_malformed_sources_are_bad_source_and_name_the_file(tmp_path: Path) -> None:
    bad_header = _safetensors_with_header(tmp_path / "bad.safetensors", b'{"a": {"dtype": "F32"}}')
    not_json = _safetensors_with_header(tmp_path / "nojson.safetensors", b"{nope")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": ["x"]}))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage")
    for src in (bad_header, not_json, index, junk):
        with pytest.raises(BadSourceFile) as info:
            convert(src, tmp_path / "out.tmodel")
        e = info.value
        assert (e.code, e.phase, e.path) == ("BAD_SOURCE", "source", str(src))
        assert not isinstance(e, (ValueError, TypeError, LookupError, OSError))
    assert not (tmp_path / "out.tmodel").exists()
    big = tmp_path / "big.safetensors.index.json"  # JSON can hold an integer tmodel metadata cannot
    big.write_text(json.dumps({"weight_map": {}, "metadata": {"n": 2**70}}))
    with pytest.raises(BadSourceFile) as info:
        read_safetensors_index(big)
    assert info.value.path == str(big) and "64 bits" in str(info.value)


def test_a_bad_shard_names_the_shard(tmp_path: Path) -> None:
    shard = _safetensors_with_header(tmp_path / "s1.safetensors", b"[]")
    index = tmp_path / "m.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": shard.name}}))
    with pytest.raises(BadSourceFile) as info:
        convert(index, tmp_path / "out.tmodel")
    assert info.value.path == str(shard)


# -- the command line ------------------------------------------------------------------------------------
def test_the_cli_still_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.tmodel"
    tmodel.save({"a": torch.arange(64.0)}, path, codec="raw", chunk_size=64)
    _, offset, _ = _chunk_start(path, "a", 1)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x80
    path.write_bytes(bytes(data))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage")
    for args, code in (
        (["verify", str(path)], "CHECKSUM_MISMATCH"),
        (["inspect", str(tmp_path / "nope.tmodel")], "IO_ERROR"),
        (["convert", str(junk), str(tmp_path / "o.tmodel")], "BAD_SOURCE"),
    ):
        capsys.readouterr()
        assert main(args) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.startswith(f"error[{code}]: ") and err.count("\n") == 1, (args, err)
        assert "Traceback" not in err
