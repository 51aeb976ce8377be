"""Validating a decoded manifest (SPEC.md §5, §9 steps 5-9): the schema, then every rule the schema alone
cannot state (layout, extents, names, references, limits). `parse` is the only way from decoded msgpack to
a Manifest."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from ..codecs.table import CODECS, check_chunk
from ..container import digests
from ..container.framing import ALIGNMENT, ENCRYPTED_SINCE, HEADER_SIZE, NONCE_SIZE, TAG_SIZE, align
from ..errors import (
    BadLayout,
    BadName,
    BadTensor,
    BadValue,
    LimitExceeded,
    ManifestSchemaError,
    UnknownCodec,
    UnknownDtype,
    UnknownFeature,
    UnsupportedVersion,
)
from ..limits import Limits
from ..migrations import upgrade
from .chunks import ChunkTable
from .dtypes import DTYPES, NUMPY_DTYPES, VALUE_DTYPES, bool_bytes_ok, extent
from .encoding import INT64_MAX, unpack_manifest
from .fields import first_error
from .names import CLASS_NAME, CLASS_NAME_BYTES, check_local_name, check_name, check_type_name
from .nodes import (
    CONFIG_ONLY,
    MAPPINGS,
    SCALARS,
    TENSOR_NODES,
    TRAINING_STATE,
    CounterNode,
    DictNode,
    DtypeNode,
    MetaTensorNode,
    ModuleRef,
    NdarrayNode,
    NumpyScalarNode,
    ObjectNode,
    OptimizerNode,
    OrderedDictNode,
    PartialNode,
    RefNode,
    SetNode,
    StatefulNode,
    TensorAttrsNode,
    entries,
    is_key,
    key_identity,
    mapping_items,
    tensor_index,
    walk,
)
from .schema import KNOWN_FEATURES, SCHEMA_VERSION, Manifest, TensorEntry
from .shards import blob_sizes, check_shards


def read_manifest(
    raw: bytes, limits: Limits, manifest_offset: int, file_size: int, encrypted: bool = False
) -> tuple[Manifest, int]:
    """A manifest's bytes decoded, upgraded to the current schema and validated (SPEC.md §9 steps 4-9),
    with the schema version it was written in: the one path the reader and the writer's own check take.
    `encrypted`: the file is (SPEC.md §3.5), so its manifest is of schema 6 or later, every blob has a nonce
    and every chunk stores a tag after its segments."""
    wire, version = upgrade(unpack_manifest(raw, limits, ChunkTable))
    if encrypted and version < ENCRYPTED_SINCE:
        raise UnsupportedVersion(f"an encrypted file of schema version {version} (encryption is from 6)")
    return parse(wire, limits, manifest_offset, file_size, encrypted), version


def parse(
    wire: Any, limits: Limits, manifest_offset: int, file_size: int, encrypted: bool = False
) -> Manifest:
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
        raise ManifestSchemaError(f"manifest: {first_error(exc)}") from None
    check_semantics(manifest, limits, manifest_offset, file_size, encrypted)
    return manifest


def _precheck_counts(wire: dict[str, Any], limits: Limits) -> None:
    """Refuse oversized tables before pydantic builds objects for them."""
    for key, cap in (
        ("tensors", limits.max_tensors),
        ("blobs", limits.max_blobs),
        ("modules", limits.max_modules),
        ("shards", limits.max_shards),
    ):
        table = wire.get(key)
        if isinstance(table, list) and len(table) > cap:
            raise LimitExceeded(f"{len(table)} {key} exceed the limit {cap}")


def check_semantics(
    m: Manifest,
    limits: Limits,
    manifest_offset: int,
    file_size: int,
    encrypted: bool = False,
    proven: frozenset[str] = frozenset(),
) -> None:
    """Every rule of SPEC.md §5 that the schema alone does not state. `proven`: the parts ("blobs",
    "tensors", "root") that the fast path (`manifest.fast`) has already checked by the same rules."""
    unknown = sorted(set(m.required_features) - KNOWN_FEATURES)
    if unknown:
        raise UnknownFeature(f"unknown required features {unknown}")
    digest_len = digests.digest_length(m.checksum)
    if "blobs" not in proven:
        _check_blobs(m, limits, digest_len, manifest_offset, file_size, encrypted)
    check_shards(m, limits)
    if "tensors" not in proven or m.shards:  # an index's tensors refer to its shards' blobs
        _check_tensors(m, limits, blob_sizes(m))
    _check_modules(m, limits)
    _check_tree(m, limits, with_root="root" not in proven)
    if "root" not in proven:
        _check_module_paths(m, limits)
    if m.checkpoint is not None:
        check_type_name(m.checkpoint.type, "checkpoint")


def _check_blobs(
    m: Manifest, limits: Limits, digest_len: int, manifest_offset: int, file_size: int, encrypted: bool
) -> None:
    expected = HEADER_SIZE
    tag = TAG_SIZE if encrypted else 0
    total_chunks = 0
    total_bytes = 0
    cap = limits.max_decoded_bytes(file_size)
    for i, b in enumerate(m.blobs):
        where = f"blob {i}"
        if b.offset != expected:
            raise BadLayout(
                f"{where} starts at {b.offset}, expected {expected} (blobs are packed, {ALIGNMENT}-aligned)"
            )
        if encrypted and len(b.nonce) != NONCE_SIZE:
            raise ManifestSchemaError(f"{where}: a blob of an encrypted file has a {NONCE_SIZE}-byte nonce")
        if not encrypted and "nonce" in b.model_fields_set:
            raise ManifestSchemaError(f"{where}: a nonce in a file that is not encrypted")
        if b.codec not in CODECS:
            raise UnknownCodec(f"{where}: unknown codec {b.codec!r}")
        if not CODECS[b.codec].grouped and b.width != 1:
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
            check_chunk(b.codec, b.width, raw_len, c.segments, f"{where} chunk {j}")
            if len(c.digest) != digest_len:
                raise BadTensor(
                    f"{where} chunk {j}: digest of {len(c.digest)} bytes, {m.checksum} has {digest_len}"
                )
            stored += sum(c.segments) + tag
        if stored != b.length:
            raise BadLayout(f"{where}: segments (and tags) add up to {stored} bytes, the blob has {b.length}")
        expected = align(b.offset + b.length)
    if expected != manifest_offset:
        raise BadLayout(f"the manifest starts at {manifest_offset}, the blobs end at {expected}")
    del file_size


def tensor_extent(t: TensorEntry) -> int:
    """Bytes of the blob the view reaches from its offset (0 for an empty tensor)."""
    return extent(DTYPES[t.dtype][0], t.shape, t.strides)


def _check_tensors(m: Manifest, limits: Limits, sizes: list[int]) -> None:
    """Tensor rules (SPEC.md §5.2) against `sizes`, the decoded size of each blob (a set's, in an index)."""
    names: set[str] = set()
    used = [False] * len(sizes)
    for i, t in enumerate(m.tensors):
        check_name(t.name, limits)
        if t.name in names:
            raise BadName(f"duplicate tensor name {t.name!r}", tensor=t.name)
        names.add(t.name)
        where = f"tensor {t.name!r}"
        _check_view(where, t.dtype, t.shape, t.strides, limits)
        itemsize = DTYPES[t.dtype][0]
        reach = tensor_extent(t)
        if reach == 0:
            if t.blob is not None or t.offset != 0:
                raise BadTensor(f"{where}: an empty tensor has no blob and offset 0")
            continue
        if t.blob is None or t.blob >= len(sizes):
            raise BadTensor(f"{where}: refers to blob {t.blob} of {len(sizes)}")
        if t.offset % itemsize:
            raise BadTensor(f"{where}: offset {t.offset} is not a multiple of the item size {itemsize}")
        if t.offset + reach > sizes[t.blob]:
            raise BadTensor(f"{where}: view reaches byte {t.offset + reach} of a {sizes[t.blob]}-byte blob")
        used[t.blob] = True
        del i
    if not all(used):
        raise BadLayout(f"blob {used.index(False)} is referenced by no tensor")


def _check_view(where: str, dtype: str, shape: list[int], strides: list[int], limits: Limits) -> None:
    """A tensor's (or meta tensor's) dtype is in the table, its rank within the limit, a stride per
    dimension, and its size fits in int64 (SPEC.md §5.2)."""
    if dtype not in DTYPES:
        raise UnknownDtype(f"{where}: unknown dtype {dtype!r}")
    if len(shape) > limits.max_rank:
        raise LimitExceeded(f"{where}: rank {len(shape)} exceeds the limit {limits.max_rank}")
    if len(strides) != len(shape):
        raise BadTensor(f"{where}: {len(strides)} strides for rank {len(shape)}")
    if (
        math.prod(d for d in shape if d) * DTYPES[dtype][0] > INT64_MAX
    ):  # zeros included, torch would overflow
        raise BadTensor(f"{where}: shape {shape} overflows")


def _check_meta(node: MetaTensorNode, limits: Limits) -> None:
    """A meta tensor follows a tensor's rules, and the storage its view reaches fits in int64."""
    body = node.value
    _check_view("meta_tensor node", body.dtype, body.shape, body.strides, limits)
    if (
        body.offset * DTYPES[body.dtype][0] + extent(DTYPES[body.dtype][0], body.shape, body.strides)
        > INT64_MAX
    ):
        raise BadTensor(f"meta_tensor node: offset {body.offset} and strides {body.strides} overflow")


def _check_attrs(node: TensorAttrsNode) -> None:
    """A tensor_attrs node wraps a tensor node; its names are distinct strings, its values hold no module."""
    body = node.value
    if type(body.of) not in TENSOR_NODES:
        raise ManifestSchemaError("a tensor_attrs node wraps a node that is not a tensor")
    _distinct_names([k for k, _ in body.attrs], "tensor attribute")
    if any(type(n) is ModuleRef or type(n) in TRAINING_STATE for n in walk(v for _, v in body.attrs)):
        raise ManifestSchemaError("a tensor attribute refers to a module or holds training state")


def _check_modules(m: Manifest, limits: Limits) -> None:
    """Records refer to existing tensors and modules, names are valid, and the module graph has no cycle."""
    n_modules = len(m.modules)
    edges: list[list[int]] = []
    for i, rec in enumerate(m.modules):
        where = f"module {i}"
        if rec.version is not None:
            check_type_name(rec.type, where)
        else:
            if len(rec.type) > CLASS_NAME_BYTES or not CLASS_NAME.fullmatch(rec.type):
                raise BadName(f"{where}: invalid class name {rec.type!r}")
            if rec.config:
                raise ManifestSchemaError(f"{where}: a record built by its parent (version nil) has a config")
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
        out.extend(node.module for node in walk(rec.config.values()) if type(node) is ModuleRef)
        if any(c >= n_modules for c in out):
            raise BadTensor(f"{where}: refers to a module beyond the {n_modules} in the file")
        edges.append(out)
    _check_acyclic(edges, limits.max_depth)


def _check_acyclic(edges: list[list[int]], limit: int) -> None:
    """No record contains itself, and no chain of records (children, config references) is longer than
    `limit` (a rebuild recurses along them), walked iteratively."""
    state = [0] * len(edges)  # 0 new, 1 on the path, 2 done
    height = [0] * len(edges)  # records on the longest chain from here down
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
                height[node] = 1 + max((height[c] for c in edges[node]), default=0)
                if height[node] > limit:
                    raise LimitExceeded(f"module {node}: modules nested more than {limit} deep")
                path.pop()


def _check_module_paths(m: Manifest, limits: Limits) -> None:
    """The paths from the object tree to records (`max_module_paths`, SPEC.md §8) bound every walk that
    expands shared records; counted per record once (memoised, the graph being acyclic), so linearly."""
    cap = limits.max_module_paths
    paths: dict[int, int] = {}  # record -> 1 + the paths below it through children, capped at cap + 1
    total = 0
    for node in walk([m.root]):
        if type(node) is not ModuleRef:
            continue
        stack = [node.module]
        while stack:
            i = stack[-1]
            if i in paths:
                stack.pop()
                continue
            below = [c for c in m.modules[i].children.values() if c is not None]
            todo = [c for c in below if c not in paths]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            paths[i] = min(cap + 1, 1 + sum(paths[c] for c in below))
        total += paths[node.module]
        if total > cap:
            raise LimitExceeded(f"more than {cap} paths from the object tree to module records")


def _check_tree(m: Manifest, limits: Limits, with_root: bool = True) -> None:
    """The object tree's nodes (unless `with_root` is False) and the layer configs' (SPEC.md §5.4)."""
    n = len(m.tensors)
    value_dtypes = DTYPES.keys() | set(VALUE_DTYPES)
    keys: list[Any] = []  # key nodes (and set elements) beyond scalars: checked as nodes after the tree
    configs = walk(v for rec in m.modules for v in rec.config.values())
    if any(type(n) in TRAINING_STATE for n in walk(v for rec in m.modules for v in rec.config.values())):
        raise ManifestSchemaError("a layer config holds an optimizer or stateful node (object tree only)")
    tree = _object_tree(m.root) if with_root else iter(())
    for node in _then(itertools.chain(tree, configs), keys):
        kind = type(node)
        tensor = tensor_index(node)
        if tensor is not None:
            if tensor >= n:
                raise BadTensor(f"object tree refers to tensor {tensor} of {n}")
        elif kind is ModuleRef:
            if node.module >= len(m.modules):
                raise BadTensor(f"object tree refers to module {node.module} of {len(m.modules)}")
        elif kind is DtypeNode:
            if node.dtype not in value_dtypes:
                raise UnknownDtype(f"unknown dtype {node.dtype!r} in the object tree")
        elif kind in MAPPINGS:
            _distinct_keys([k for k, _ in mapping_items(node) or ()], f"{_TAGS[kind]} node key")
            keys.extend(k for k, _ in mapping_items(node) or () if type(k) not in SCALARS)
        elif kind is SetNode:
            _distinct_keys(node.items, "set node element")
            keys.extend(k for k in node.items if type(k) not in SCALARS)
        elif kind is MetaTensorNode:
            _check_meta(node, limits)
        elif kind is TensorAttrsNode:
            _check_attrs(node)
        elif kind is NdarrayNode or kind is NumpyScalarNode:
            _check_numpy(node, limits)
        elif kind is RefNode:
            check_type_name(node.ref, "ref node")
        elif kind is PartialNode:
            _check_partial(node)
        elif kind is ObjectNode:
            check_type_name(node.value.type, "object node")
        elif kind is OptimizerNode:
            _check_optimizer(node, m)
        elif kind is StatefulNode:
            _check_class_name(node.value.cls, "stateful node")
            _inside_training_state(node)


def _check_class_name(name: str, where: str) -> None:
    if len(name) > CLASS_NAME_BYTES or not CLASS_NAME.fullmatch(name):
        raise BadName(f"{where}: invalid class name {name!r}")


def _inside_training_state(node: OptimizerNode | StatefulNode) -> None:
    """What a training-state node holds refers to no module and holds no training state again."""
    inside = walk(child for _, child in entries(node))
    if any(type(n) is ModuleRef or type(n) in TRAINING_STATE for n in inside):
        raise ManifestSchemaError("an optimizer or stateful node holds a module or training-state node")


def _check_optimizer(node: OptimizerNode, m: Manifest) -> None:
    """Groups are settings (dicts of string keys, without `params`); each parameter is a distinct
    parameter of a record, in group order, with its state as a dict of string keys (SPEC.md §5.4)."""
    body = node.value
    _check_class_name(body.cls, "optimizer node")
    _inside_training_state(node)
    for group in body.groups:
        keys = _string_keys(group, "an optimizer group")
        if "params" in keys or "param_names" in keys:
            raise ManifestSchemaError("an optimizer group lists its parameters (they are the node's params)")
    seen: set[tuple[int, str]] = set()
    tensors: set[int] = set()  # a tied parameter is one parameter of the optimizer
    last = 0
    for p in body.params:
        if p.group >= len(body.groups) or p.group < last:
            raise ManifestSchemaError(
                f"optimizer parameter of group {p.group}: groups are 0..{len(body.groups) - 1}, in order"
            )
        last = p.group
        if p.module >= len(m.modules):
            raise BadTensor(f"optimizer parameter refers to module {p.module} of {len(m.modules)}")
        if m.modules[p.module].parameters.get(p.name) is None:
            raise BadTensor(f"optimizer parameter {p.name!r}: module {p.module} has no such parameter")
        if (p.module, p.name) in seen:
            raise ManifestSchemaError(f"optimizer parameter {p.name!r} of module {p.module} listed twice")
        seen.add((p.module, p.name))
        tensor = m.modules[p.module].parameters[p.name]
        assert tensor is not None
        if tensor.tensor in tensors:
            raise ManifestSchemaError(
                f"optimizer parameter {p.name!r} of module {p.module}: its tensor is listed twice"
            )
        tensors.add(tensor.tensor)
        _string_keys(p.state, "an optimizer parameter's state")


def _string_keys(node: Any, what: str) -> list[str]:
    """The keys of a dict node whose keys are all strings."""
    items = mapping_items(node) if type(node) is DictNode else None
    if items is None or any(type(k) is not str for k, _ in items):
        raise ManifestSchemaError(f"{what} is not a dict node of string keys")
    return [k for k, _ in items]


def _check_partial(node: PartialNode) -> None:
    """A partial names a registered callable; its keyword names are distinct strings."""
    check_type_name(node.value.ref, "partial node")
    _distinct_names([k for k, _ in node.value.kwargs], "partial node keyword")


def _distinct_names(names: list[Any], what: str) -> None:
    """Names in [name, node] pairs (tensor attributes, a partial's keywords) are distinct strings."""
    if any(type(k) is not str for k in names):
        raise ManifestSchemaError(f"a {what} name is not a string")
    if len(set(names)) != len(names):
        raise ManifestSchemaError(f"duplicate {what} name")


def _object_tree(root: Any) -> Iterator[Any]:
    """The object tree's nodes, refusing the kinds only configs hold."""
    for node in walk([root]):
        if type(node) in CONFIG_ONLY:
            raise ManifestSchemaError("the object tree holds a ref, partial or object node (configs only)")
        yield node


def _then(first: Iterator[Any], keys: list[Any]) -> Iterator[Any]:
    """The tree's nodes, then every node under the key nodes the walk collected meanwhile."""
    yield from first
    yield from walk(keys)


_TAGS: dict[type, str] = {DictNode: "dict", OrderedDictNode: "ordered_dict", CounterNode: "counter"}


def _distinct_keys(keys: list[Any], what: str) -> None:
    """Keys are key nodes (hashable, no reference), distinct as (kind, value) pairs, floats compared by
    their bits, tuples item by item (SPEC.md §5.4)."""
    if not all(is_key(k) for k in keys):
        raise ManifestSchemaError(f"a {what} is not a key (a scalar, or a hashable value holding no tensor)")
    if len({key_identity(k) for k in keys}) != len(keys):
        raise ManifestSchemaError(f"duplicate {what} in the object tree")


def _check_numpy(node: NdarrayNode | NumpyScalarNode, limits: Limits) -> None:
    """A numpy value's dtype is one numpy has, its bytes fill its shape exactly, a bool's bytes are 0 or 1
    (the rules of a tensor, SPEC.md §5.2-5.3)."""
    body = node.value
    what = "ndarray" if type(node) is NdarrayNode else "numpy_scalar"
    if body.dtype not in NUMPY_DTYPES:
        raise UnknownDtype(f"{what} node: dtype {body.dtype!r} is not a numpy dtype of the table")
    itemsize = DTYPES[body.dtype][0]
    count = 1
    if type(node) is NdarrayNode:
        shape = node.value.shape
        if len(shape) > limits.max_rank:
            raise LimitExceeded(f"ndarray node: rank {len(shape)} exceeds the limit {limits.max_rank}")
        if math.prod(d for d in shape if d) * itemsize > INT64_MAX:
            raise BadTensor(f"ndarray node: shape {shape} overflows")
        count = math.prod(shape)
    if len(body.data) != count * itemsize:
        raise BadTensor(f"{what} node: {len(body.data)} bytes for {count} elements of {body.dtype}")
    if body.dtype == "bool" and not bool_bytes_ok(body.data):
        raise BadValue(f"{what} node: a bool holds a byte other than 0 or 1")
