"""format/ is generated from the reference implementation; these tests fail when the two drift apart."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import jsonschema
import msgpack
import torch

import tmodel
from tmodel.container.framing import TRAILER_SIZE
from tmodel.limits import DEFAULT_LIMITS
from tmodel.manifest.encoding import unpack_manifest
from tmodel.manifest.schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
GENERATE = runpy.run_path(str(ROOT / "format" / "generate.py"), run_name="generate")


def test_generated_files_match_the_code() -> None:
    for path, text in GENERATE["outputs"]().items():
        assert path.read_text() == text, f"{path.name} drifted: run `python format/generate.py`"


def test_spec_lists_every_error_code_and_dtype() -> None:
    spec = (ROOT / "SPEC.md").read_text()
    layout = json.loads((ROOT / "format" / f"layout.v{SCHEMA_VERSION}.json").read_text())
    for err in layout["errors"]:
        assert f"| `{err['code']}` | {err['phase']} |" in spec, err["code"]
    for dtype in layout["dtypes"]:
        assert f"`{dtype['name']}`" in spec, dtype["name"]


def _as_json(value: object) -> object:
    """msgpack bin becomes a str here only to run the JSON Schema validator over a real manifest."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    return value


def test_a_written_manifest_validates_against_the_json_schema(tmp_path: Path) -> None:
    path = tmp_path / "m.tmodel"
    tmodel.save(
        {"w": torch.arange(6.0).reshape(2, 3), "opt": {0: (1, None, b"x")}}, path, metadata={"a": [1.5]}
    )
    data = path.read_bytes()
    offset = int.from_bytes(data[-TRAILER_SIZE : -TRAILER_SIZE + 8], "little")
    wire = unpack_manifest(data[offset:-TRAILER_SIZE], DEFAULT_LIMITS)
    schema = json.loads((ROOT / "format" / f"manifest.v{SCHEMA_VERSION}.schema.json").read_text())
    jsonschema.validate(_as_json(wire), schema)
    wire["blobs"][0]["extra"] = 1
    try:
        jsonschema.validate(_as_json(wire), schema)
    except jsonschema.ValidationError as exc:
        assert "extra" in exc.message
    else:
        raise AssertionError("the schema accepted an unknown field")
    assert msgpack.unpackb(data[offset:-TRAILER_SIZE])["schema_version"] == SCHEMA_VERSION


def test_a_manifest_of_every_schema_3_node_validates_against_the_json_schema(tmp_path: Path) -> None:
    import collections

    import numpy as np

    path = tmp_path / "m.tmodel"
    od: collections.OrderedDict[str, object] = collections.OrderedDict(w=torch.ones(2))
    od._metadata = {"": {"version": 1}}  # type: ignore[attr-defined]
    attrs = torch.ones(2)
    attrs.foo = [1]  # type: ignore[attr-defined]
    obj = {
        "od": od,
        "c": collections.Counter("ab"),
        "s": {1, "x"},
        "b": bytearray(b"z"),
        "z": 1j,
        "size": torch.Size([2]),
        "dev": torch.device("cuda:0"),
        "p": torch.nn.Parameter(torch.ones(1)),
        "g": torch.ones(1, requires_grad=True),
        "a": np.arange(3, dtype=np.uint32),
        "f": np.float32(1.0),
        "e8": torch.ones(2).to(torch.float8_e8m0fnu),
        # schema 4's
        "lay": torch.sparse_csr,
        "qs": torch.per_tensor_affine,
        "meta": torch.empty(2, 3, device="meta"),
        "attrs": attrs,
        "keys": {(1, torch.float16): 1},
    }
    tmodel.save(obj, path)
    data = path.read_bytes()
    offset = int.from_bytes(data[-TRAILER_SIZE : -TRAILER_SIZE + 8], "little")
    wire = unpack_manifest(data[offset:-TRAILER_SIZE], DEFAULT_LIMITS)
    schema = json.loads((ROOT / "format" / f"manifest.v{SCHEMA_VERSION}.schema.json").read_text())
    jsonschema.validate(_as_json(wire), schema)
    tags = [next(iter(v)) for _, v in wire["root"]["dict"]]
    assert tags == [
        *("ordered_dict", "counter", "set", "bytearray", "complex", "size", "device"),
        *("parameter", "requires_grad", "ndarray", "numpy_scalar", "tensor"),
        *("layout", "qscheme", "meta_tensor", "tensor_attrs", "dict"),
    ]
    wire["root"]["dict"][4][1]["complex"] = "1j"
    try:
        jsonschema.validate(_as_json(wire), schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the schema accepted a complex node holding a string")
