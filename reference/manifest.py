"""The manifest of the current schema version (SPEC.md §4, §5): pydantic models, the dtype table, and the
semantic checks that pydantic cannot express (layout, extents, names, limits).

Rules: models are strict (no coercion: a float or bool is never an int) and closed (unknown fields are an
error; optional data goes in `extensions`). `parse` is the only way from decoded msgpack to a Manifest.
"""

from __future__ import annotations

import math
import re
import struct
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError
from typing_extensions import TypeAliasType

from . import codecs, digests
from .container import ALIGNMENT, HEADER_SIZE, align
from .errors import (
    BadLayout,
    BadName,
    BadTensor,
    LimitExceeded,
    ManifestSchemaError,
    UnknownCodec,
    UnknownDtype,
    UnknownFeature,
    UnsupportedVersion,
)
from .limits import DEFAULT_LIMITS, Limits

SCHEMA_VERSION = 2
KNOWN_FEATURES: frozenset[str] = frozenset()
INT64_MAX = (1 << 63) - 1

#: name -> (itemsize in bytes, byte-group width). Complex numbers group by their component's size.
DTYPES: dict[str, tuple[int, int]] = {
    "float64": (8, 8),
    "float32": (4, 4),
    "float16": (2, 2),
    "bfloat16": (2, 2),
    "float8_e4m3fn": (1, 1),
    "float8_e4m3fnuz": (1, 1),
    "float8_e5m2": (1, 1),
    "float8_e5m2fnuz": (1, 1),
    "complex64": (8, 4),
    "complex128": (16, 8),
    "bool": (1, 1),
    "int8": (1, 1),
    "int16": (2, 2),
    "int32": (4, 4),
    "int64": (8, 8),
    "uint8": (1, 1),
    "uint16": (2, 2),
    "uint32": (4, 4),
    "uint64": (8, 8),
}

Size = Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)]
_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

#: msgpack integers: int64 and uint64.
Int = Annotated[int, Field(strict=True, ge=-(1 << 63), le=(1 << 64) - 1)]
MetaValue = TypeAliasType(
    "MetaValue",
    "Union[bool, Int, float, str, bytes, list[MetaValue], dict[str, MetaValue], None]",  # noqa: UP007
)


class Chunk(BaseModel):
    """One independently decodable piece of a blob."""

    model_config = _STRICT
    digest: bytes
    segments: list[Size]


class Blob(BaseModel):
    """A run of stored bytes that decodes to `nbytes` bytes of tensor storage."""

    model_config = _STRICT
    offset: Size
    length: Size
    nbytes: Annotated[int, Field(strict=True, ge=1, le=INT64_MAX)]
    codec: str
    width: Annotated[int, Field(strict=True, ge=1, le=codecs.MAX_WIDTH)]
    chunk_size: Annotated[int, Field(strict=True, ge=1, le=INT64_MAX)]
    chunks: list[Chunk]


class TensorEntry(BaseModel):
    """A named strided view of a blob's decoded bytes."""

    model_config = _STRICT
    name: str
    dtype: str
    shape: list[Size]
    strides: list[Size]
    blob: Size | None
    offset: Size


class ListNode(BaseModel):
    model_config = _STRICT
    items: list[Node] = Field(alias="list")


class TupleNode(BaseModel):
    model_config = _STRICT
    items: list[Node] = Field(alias="tuple")


class DictNode(BaseModel):
    """Entries are [key, value] pairs; keys are scalars (checked in `check_semantics`)."""

    model_config = _STRICT
    items: list[Annotated[list[Node], Field(min_length=2, max_length=2)]] = Field(alias="dict")


class TensorRef(BaseModel):
    model_config = _STRICT
    tensor: Size


class ModuleRef(BaseModel):
    """A module of the `modules` table (schema 2)."""

    model_config = _STRICT
    module: Size


class DtypeNode(BaseModel):
    """A torch dtype used as a value, e.g. in a layer's config (schema 2); a name of the dtype table."""

    model_config = _STRICT
    dtype: str


_NODE_TAGS: dict[type, str] = {
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
    bytes: "bytes",
    type(None): "nil",
    ListNode: "list",  # built nodes, when a model is validated again
    TupleNode: "tuple",
    DictNode: "dict",
    TensorRef: "tensor",
    ModuleRef: "module",
    DtypeNode: "dtype",
}
_NODE_KEYS = frozenset(tag for kind, tag in _NODE_TAGS.items() if issubclass(kind, BaseModel))  # a map's key


def _node_tag(value: Any) -> str | None:
    """Which member of the Node union a value can be: its type, or for a decoded map its single key.
    Dispatching on it validates a tree ~3x faster than trying the members in turn."""
    if type(value) is dict:
        key = next(iter(value), None) if len(value) == 1 else None
        return key if key in _NODE_KEYS else None
    return _NODE_TAGS.get(type(value))


Node = TypeAliasType(
    "Node",
    Annotated[
        Union[  # noqa: UP007
            Annotated[bool, Tag("bool")],
            Annotated[Int, Tag("int")],
            Annotated[float, Tag("float")],
            Annotated[str, Tag("str")],
            Annotated[bytes, Tag("bytes")],
            Annotated[ListNode, Tag("list")],
            Annotated[TupleNode, Tag("tuple")],
            Annotated[DictNode, Tag("dict")],
            Annotated[TensorRef, Tag("tensor")],
            Annotated[ModuleRef, Tag("module")],
            Annotated[DtypeNode, Tag("dtype")],
            Annotated[None, Tag("nil")],
        ],
        Discriminator(
            _node_tag,
            custom_error_type="node",
            custom_error_message="not a tree node (nil, bool, int, float, str, bin, or a map with one "
            "of the keys list, tuple, dict, tensor, module, dtype)",
        ),
    ],
)


class ParamRef(BaseModel):
    """A parameter: the tensor that holds it and whether it requires grad."""

    model_config = _STRICT
    tensor: Size
    requires_grad: bool


class ModuleRecord(BaseModel):
    """One module: its registered layer type and version, its config, its own tensors, its children."""

    model_config = _STRICT
    type: str
    version: Annotated[int, Field(strict=True, ge=1, le=INT64_MAX)]
    config: dict[str, Node]
    parameters: dict[str, ParamRef | None]
    buffers: dict[str, Size | None]
    children: dict[str, Size | None]
    training: bool


class Manifest(BaseModel):
    """Schema version 2: tensors, their blobs, modules, the saved object tree, and typed user metadata."""

    model_config = _STRICT
    schema_version: Literal[2]
    required_features: list[str]
    checksum: str
    blobs: list[Blob]
    tensors: list[TensorEntry]
    root: Node
    metadata: dict[str, MetaValue]
    extensions: dict[str, MetaValue]
    modules: list[ModuleRecord]

    def to_wire(self) -> dict[str, Any]:
        """The plain structure that is msgpack-encoded into the file."""
        return self.model_dump(by_alias=True)


_NAME = re.compile(r"[^\x00-\x1f\x7f/\\]+")


def check_name(name: str, limits: Limits) -> None:
    """Tensor names: 1..max_name_bytes of UTF-8, no control characters, no '/' or '\\', no '..'."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise BadName(f"invalid tensor name {name!r}")
    if len(name.encode("utf-8", "surrogatepass")) > limits.max_name_bytes:
        raise BadName(f"tensor name of more than {limits.max_name_bytes} bytes")


def unique_name(candidate: str, index: int, taken: set[str]) -> str:
    """A tensor's name: `candidate` (its key path) when valid and free, else `tensor.<index>`; added to
    `taken`. Used wherever tensors are named, so saves and migrations name alike (SPEC.md §5.6)."""
    try:
        check_name(candidate, DEFAULT_LIMITS)
        ok = candidate not in taken
    except BadName:
        ok = False
    name = candidate if ok else f"tensor.{index}"
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def check_metadata(metadata: Any, max_depth: int = 64) -> dict[str, Any]:
    """Check user metadata exactly (str keys; None, bool, int64/uint64, float, str, bytes, lists and maps of
    those) and return it unchanged; pydantic would turn an out-of-range int into a float."""
    if type(metadata) is not dict:
        raise ManifestSchemaError(f"metadata must be a dict, not {type(metadata).__name__}")
    stack: list[tuple[Any, str, int]] = [(metadata, "metadata", 0)]
    while stack:
        value, where, depth = stack.pop()
        kind = type(value)
        if depth > max_depth:
            raise ManifestSchemaError(f"{where}: nested deeper than {max_depth}")
        if kind is dict:
            for k, v in value.items():
                if type(k) is not str:
                    raise ManifestSchemaError(f"{where}: key {k!r} is not a str")
                stack.append((v, f"{where}[{k!r}]", depth + 1))
        elif kind is list:
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
        elif kind is int and not -(1 << 63) <= value < 1 << 64:
            raise ManifestSchemaError(f"{where}: integer {value} does not fit in 64 bits")
        elif value is not None and kind not in (bool, int, float, str, bytes):
            raise ManifestSchemaError(f"{where}: unsupported metadata type {kind.__name__}")
    return metadata


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    return f"{loc}: {err['msg']}" if loc else str(err["msg"])


def parse(wire: Any, limits: Limits, manifest_offset: int, file_size: int) -> Manifest:
    """Validate a decoded manifest against the schema and the file it came from."""
    if not isinstance(wire, dict):
        raise ManifestSchemaError("manifest is not a map")
    version = wire.get("schema_version")
    if type(version) is not int:
        raise ManifestSchemaError("schema_version is missing or not an integer")
    if version != SCHEMA_VERSION:
        raise UnsupportedVersion(f"schema version {version}; this reader supports {SCHEMA_VERSION}")
    _precheck_counts(wire, limits)
    try:
        manifest = Manifest.model_validate(wire, strict=True)
    except ValidationError as exc:
        raise ManifestSchemaError(f"manifest: {_first_error(exc)}") from None
    check_semantics(manifest, limits, manifest_offset, file_size)
    return manifest


def _precheck_counts(wire: dict[str, Any], limits: Limits) -> None:
    """Refuse oversized tables before pydantic builds objects for them."""
    for key, cap in (
        ("tensors", limits.max_tensors),
        ("blobs", limits.max_blobs),
        ("modules", limits.max_modules),
    ):
        table = wire.get(key)
        if isinstance(table, list) and len(table) > cap:
            raise LimitExceeded(f"{len(table)} {key} exceed the limit {cap}")


def check_semantics(m: Manifest, limits: Limits, manifest_offset: int, file_size: int) -> None:
    """Every rule of SPEC.md §5 that the schema alone does not state."""
    unknown = sorted(set(m.required_features) - KNOWN_FEATURES)
    if unknown:
        raise UnknownFeature(f"unknown required features {unknown}")
    digest_len = digests.digest_length(m.checksum)
    _check_blobs(m, limits, digest_len, manifest_offset, file_size)
    _check_tensors(m, limits)
    _check_modules(m, limits)
    _check_tree(m)


def _check_blobs(m: Manifest, limits: Limits, digest_len: int, manifest_offset: int, file_size: int) -> None:
    expected = HEADER_SIZE
    total_chunks = 0
    total_bytes = 0
    cap = limits.max_decoded_bytes(file_size)
    for i, b in enumerate(m.blobs):
        where = f"blob {i}"
        if b.offset != expected:
            raise BadLayout(
                f"{where} starts at {b.offset}, expected {expected} (blobs are packed, {ALIGNMENT}-aligned)"
            )
        if b.codec not in codecs.CODECS:
            raise UnknownCodec(f"{where}: unknown codec {b.codec!r}")
        if b.codec != codecs.BYTEGROUP_ZSTD and b.width != 1:
            raise BadTensor(f"{where}: codec {b.codec} requires width 1")
        if b.chunk_size > limits.max_chunk_size:
            raise LimitExceeded(
                f"{where}: chunk size {b.chunk_size} exceeds the limit {limits.max_chunk_size}"
            )
        if b.nbytes % b.width or b.chunk_size % b.width:
            raise BadTensor(f"{where}: sizes are not multiples of the width {b.width}")
        total_bytes += b.nbytes
        if total_bytes > cap:
            raise LimitExceeded(f"decoded size exceeds {cap} bytes for a file of {file_size} bytes")
        n_chunks = -(-b.nbytes // b.chunk_size)
        if len(b.chunks) != n_chunks:
            raise BadTensor(
                f"{where}: {len(b.chunks)} chunks for {b.nbytes} bytes in chunks of {b.chunk_size}"
            )
        total_chunks += n_chunks
        if total_chunks > limits.max_chunks:
            raise LimitExceeded(f"more than {limits.max_chunks} chunks")
        stored = 0
        for j, c in enumerate(b.chunks):
            raw_len = min(b.chunk_size, b.nbytes - j * b.chunk_size)
            codecs.check_chunk(b.codec, b.width, raw_len, c.segments, f"{where} chunk {j}")
            if len(c.digest) != digest_len:
                raise BadTensor(
                    f"{where} chunk {j}: digest of {len(c.digest)} bytes, {m.checksum} has {digest_len}"
                )
            stored += sum(c.segments)
        if stored != b.length:
            raise BadLayout(f"{where}: segments add up to {stored} bytes, the blob has {b.length}")
        expected = align(b.offset + b.length)
    if expected != manifest_offset:
        raise BadLayout(f"the manifest starts at {manifest_offset}, the blobs end at {expected}")
    del file_size


def tensor_extent(t: TensorEntry) -> int:
    """Bytes of the blob the view reaches from its offset (0 for an empty tensor)."""
    itemsize = DTYPES[t.dtype][0]
    if any(d == 0 for d in t.shape):
        return 0
    return itemsize * (1 + sum((d - 1) * s for d, s in zip(t.shape, t.strides, strict=False)))


def _check_tensors(m: Manifest, limits: Limits) -> None:
    names: set[str] = set()
    used = [False] * len(m.blobs)
    for i, t in enumerate(m.tensors):
        check_name(t.name, limits)
        if t.name in names:
            raise BadName(f"duplicate tensor name {t.name!r}")
        names.add(t.name)
        where = f"tensor {t.name!r}"
        if t.dtype not in DTYPES:
            raise UnknownDtype(f"{where}: unknown dtype {t.dtype!r}")
        if len(t.shape) > limits.max_rank:
            raise LimitExceeded(f"{where}: rank {len(t.shape)} exceeds the limit {limits.max_rank}")
        if len(t.strides) != len(t.shape):
            raise BadTensor(f"{where}: {len(t.strides)} strides for rank {len(t.shape)}")
        itemsize = DTYPES[t.dtype][0]
        if math.prod(d for d in t.shape if d) * itemsize > INT64_MAX:  # zeros included, torch would overflow
            raise BadTensor(f"{where}: shape {t.shape} overflows")
        extent = tensor_extent(t)
        if extent == 0:
            if t.blob is not None or t.offset != 0:
                raise BadTensor(f"{where}: an empty tensor has no blob and offset 0")
            continue
        if t.blob is None or t.blob >= len(m.blobs):
            raise BadTensor(f"{where}: refers to blob {t.blob} of {len(m.blobs)}")
        if t.offset % itemsize:
            raise BadTensor(f"{where}: offset {t.offset} is not a multiple of the item size {itemsize}")
        if t.offset + extent > m.blobs[t.blob].nbytes:
            raise BadTensor(
                f"{where}: view reaches byte {t.offset + extent} of a {m.blobs[t.blob].nbytes}-byte blob"
            )
        used[t.blob] = True
        del i
    if not all(used):
        raise BadLayout(f"blob {used.index(False)} is referenced by no tensor")


TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def check_local_name(name: str, limits: Limits, where: str) -> None:
    """Names of parameters, buffers and children: tensor-name rules, and no '.' (torch's own rule)."""
    if "." in name:
        raise BadName(f"{where}: local name {name!r} contains '.'")
    check_name(name, limits)


def _check_modules(m: Manifest, limits: Limits) -> None:
    """Records refer to existing tensors and modules, names are valid, and the module graph has no cycle."""
    n_modules = len(m.modules)
    edges: list[list[int]] = []
    for i, rec in enumerate(m.modules):
        where = f"module {i}"
        if len(rec.type) > 256 or not TYPE_NAME.fullmatch(rec.type):
            raise BadName(f"{where}: invalid layer type name {rec.type!r}")
        out: list[int] = []
        for name, p in rec.parameters.items():
            check_local_name(name, limits, where)
            if p is not None and p.tensor >= len(m.tensors):
                raise BadTensor(
                    f"{where}: parameter {name!r} refers to tensor {p.tensor} of {len(m.tensors)}"
                )
        for name, b in rec.buffers.items():
            check_local_name(name, limits, where)
            if b is not None and b >= len(m.tensors):
                raise BadTensor(f"{where}: buffer {name!r} refers to tensor {b} of {len(m.tensors)}")
        for name, c in rec.children.items():
            check_local_name(name, limits, where)
            if c is not None:
                out.append(c)
        stack: list[Any] = list(rec.config.values())
        while stack:
            node = stack.pop()
            if isinstance(node, ModuleRef):
                out.append(node.module)
            elif isinstance(node, (ListNode, TupleNode)):
                stack.extend(node.items)
            elif isinstance(node, DictNode):
                stack.extend(v for _, v in node.items)
        if any(c >= n_modules for c in out):
            raise BadTensor(f"{where}: refers to a module beyond the {n_modules} in the file")
        edges.append(out)
    _check_acyclic(edges)


def _check_acyclic(edges: list[list[int]]) -> None:
    state = [0] * len(edges)  # 0 new, 1 on the path, 2 done
    for start in range(len(edges)):
        if state[start]:
            continue
        path: list[tuple[int, int]] = [(start, 0)]
        state[start] = 1
        while path:
            node, k = path[-1]
            if k < len(edges[node]):
                path[-1] = (node, k + 1)
                nxt = edges[node][k]
                if state[nxt] == 1:
                    raise BadLayout(f"module {nxt} contains itself")
                if state[nxt] == 0:
                    state[nxt] = 1
                    path.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()


def _check_tree(m: Manifest) -> None:
    n = len(m.tensors)
    stack: list[Any] = [m.root]
    for rec in m.modules:
        stack.extend(rec.config.values())
    while stack:
        node = stack.pop()
        if isinstance(node, ModuleRef):
            if node.module >= len(m.modules):
                raise BadTensor(f"object tree refers to module {node.module} of {len(m.modules)}")
        elif isinstance(node, DtypeNode):
            if node.dtype not in DTYPES:
                raise UnknownDtype(f"unknown dtype {node.dtype!r} in the object tree")
        elif isinstance(node, TensorRef):
            if node.tensor >= n:
                raise BadTensor(f"object tree refers to tensor {node.tensor} of {n}")
        elif isinstance(node, (ListNode, TupleNode)):
            stack.extend(node.items)
        elif isinstance(node, DictNode):
            if any(k is not None and type(k) not in (bool, int, float, str, bytes) for k, _ in node.items):
                raise ManifestSchemaError("a dict node key is not a scalar")
            keys = {(type(k), struct.pack("<d", k) if type(k) is float else k) for k, _ in node.items}
            if len(keys) != len(node.items):
                raise ManifestSchemaError("duplicate key in a dict node of the object tree")
            stack.extend(v for _, v in node.items)
