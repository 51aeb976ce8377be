"""Write format/manifest.v<N>.schema.json and format/layout.v<N>.json from the reference implementation.

Run `python format/generate.py` after changing the current schema; a test fails when the files drift. Files
of released versions other than the current one are frozen and never rewritten.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from tmodel import errors, limits
from tmodel.codecs import table as codecs
from tmodel.container import digests
from tmodel.container import framing as container
from tmodel.manifest import dtypes
from tmodel.manifest import schema as models

HERE = Path(__file__).resolve().parent


class _AnyOf(GenerateJsonSchema):
    """Tagged unions as `anyOf`: the reader dispatches a tree node on its type to validate it faster, but
    JSON Schema cannot tell msgpack str from bin, so `oneOf` would reject every string."""

    def tagged_union_schema(self, schema: core_schema.TaggedUnionSchema) -> JsonSchemaValue:
        out = super().tagged_union_schema(schema)
        out["anyOf"] = out.pop("oneOf")
        return out


def manifest_schema() -> dict[str, Any]:
    schema = models.Manifest.model_json_schema(by_alias=True, schema_generator=_AnyOf)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://tmodel.dev/format/manifest.v{models.SCHEMA_VERSION}.schema.json",
        "x-schema-version": models.SCHEMA_VERSION,
        "x-note": "msgpack bin is shown as a string with format binary; see SPEC.md section 4",
        **schema,
    }


def layout() -> dict[str, Any]:
    d = limits.DEFAULT_LIMITS
    return {
        "container_version": container.CONTAINER_VERSION,
        "schema_version": models.SCHEMA_VERSION,
        "alignment": container.ALIGNMENT,
        "header": {
            "size": container.HEADER_SIZE,
            "fields": [
                {"name": "magic", "offset": 0, "size": 8, "value_hex": container.MAGIC.hex()},
                {"name": "container_version", "offset": 8, "size": 4, "type": "u32le"},
                {
                    "name": "required_flags",
                    "offset": 12,
                    "size": 4,
                    "type": "u32le",
                    "known_mask": container.KNOWN_FLAGS,
                    "flags": {"SIGNED": container.SIGNED},
                },
                {"name": "reserved", "offset": 16, "size": 48, "value": "zero"},
            ],
        },
        "trailer": {
            "size": container.TRAILER_SIZE,
            "digest_covers": ["header[0:64]", "manifest", "signature block", "trailer[0:24]"],
            "fields": [
                {"name": "manifest_offset", "offset": 0, "size": 8, "type": "u64le"},
                {"name": "manifest_length", "offset": 8, "size": 8, "type": "u64le"},
                {"name": "digest_id", "offset": 16, "size": 2, "type": "u16le"},
                {
                    "name": "signatures_length",
                    "offset": 18,
                    "size": 4,
                    "type": "u32le",
                    "max": container.MAX_SIGNATURE_BLOCK,
                },
                {"name": "reserved", "offset": 22, "size": 2, "value": "zero"},
                {"name": "digest", "offset": 24, "size": 32, "type": "bytes, left-aligned, zero padded"},
                {"name": "end_magic", "offset": 56, "size": 8, "value_hex": container.END_MAGIC.hex()},
            ],
        },
        "dtypes": [{"name": k, "itemsize": v[0], "width": v[1]} for k, v in dtypes.DTYPES.items()],
        "value_only_dtypes": list(dtypes.VALUE_DTYPES),
        "numpy_dtypes": [k for k in dtypes.DTYPES if k in dtypes.NUMPY_DTYPES],
        "codecs": list(codecs.CODECS),
        "max_width": codecs.MAX_WIDTH,
        "checksums": [{"name": k, "digest_id": v[0], "length": v[1]} for k, v in digests.ALGORITHMS.items()],
        "errors": [{"code": e.code, "phase": e.phase, "class": e.__name__} for e in errors.ALL_ERRORS[1:]],
        "default_limits": {k: getattr(d, k) for k in d.__dataclass_fields__},
    }


def outputs() -> dict[Path, str]:
    v = models.SCHEMA_VERSION
    return {
        HERE / f"manifest.v{v}.schema.json": json.dumps(manifest_schema(), indent=2) + "\n",
        HERE / f"layout.v{v}.json": json.dumps(layout(), indent=2) + "\n",
    }


if __name__ == "__main__":
    for path, text in outputs().items():
        path.write_text(text)
        print(f"wrote {path}", file=sys.stderr)
