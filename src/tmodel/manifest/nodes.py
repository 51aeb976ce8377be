"""Tree nodes (SPEC.md §5.4): the models of the object tree and of layer configs, and the one walk over them
that every caller uses (`entries`, `walk`, `fold`), so the shape of a tree is known in one place.

Rules: a node is a scalar (nil, bool, int, float, str, bytes), a container (list, tuple, and the mappings
dict, ordered_dict and counter of [key, node] pairs; an ordered_dict also holds its `_metadata`; from
schema 4 tensor_attrs, a tensor reference with its Python attributes), a value that holds no reference
(set of keys, bytearray, complex, size, device, ndarray, numpy_scalar, dtype, layout, qscheme, meta_tensor)
or a reference (tensor, parameter, requires_grad, module). A key is a node `is_key` accepts. Walks are
iterative or bounded by the manifest's nesting limit, never by the tree's size. Schema version 3 added
ordered_dict..numpy_scalar, schema version 4 layout, qscheme, meta_tensor and tensor_attrs, schema
version 5 the config-only kinds ref, partial and object (`CONFIG_ONLY`), schema version 6 the training
state kinds optimizer and stateful (`TRAINING_STATE`); `fold` hands both to its leaf whole.
"""

from __future__ import annotations

import struct
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar, Union

from pydantic import BaseModel, BeforeValidator, Discriminator, Field, Tag
from typing_extensions import TypeAliasType

from ..errors import ManifestSchemaError
from .encoding import INT64_MAX
from .fields import STRICT, Int, Size

T = TypeVar("T")
#: the types of scalar nodes, which are also the only dict keys and set elements
SCALARS = (type(None), bool, int, float, str, bytes)
#: a torch device: its type, and an optional index (SPEC.md §5.4)
DEVICE_PATTERN = r"^[a-z][a-z0-9_]*(:(0|[1-9][0-9]*))?$"
#: the spelling of a layout or qscheme name (which names exist is the reader's torch's business)
VALUE_NAME = Annotated[str, Field(max_length=64, pattern=r"^_?[a-z][a-z0-9_]*$")]
#: torch's layouts and quantization schemes as of schema 4 (SPEC.md §5.4), names of `torch.<name>`
LAYOUTS = (
    "strided",
    "sparse_coo",
    "sparse_csr",
    "sparse_csc",
    "sparse_bsr",
    "sparse_bsc",
    "_mkldnn",
    "jagged",
)
QSCHEMES = (
    "per_tensor_affine",
    "per_tensor_symmetric",
    "per_channel_affine",
    "per_channel_symmetric",
    "per_channel_affine_float_qparams",
)


def _exact_float(value: Any) -> Any:
    """pydantic's strict float still takes an int; a complex's parts are msgpack floats only."""
    if type(value) is not float:
        raise ValueError("a complex part must be a float")
    return value


ExactFloat = Annotated[float, BeforeValidator(_exact_float)]
Int64 = Annotated[int, Field(strict=True, ge=-INT64_MAX - 1, le=INT64_MAX)]


class ListNode(BaseModel):
    model_config = STRICT
    items: list[Node] = Field(alias="list")


class TupleNode(BaseModel):
    model_config = STRICT
    items: list[Node] = Field(alias="tuple")


class DictNode(BaseModel):
    """Entries are [key, value] pairs; keys are scalars (checked in `check_semantics`)."""

    model_config = STRICT
    items: list[Annotated[list[Node], Field(min_length=2, max_length=2)]] = Field(alias="dict")


class TensorRef(BaseModel):
    model_config = STRICT
    tensor: Size


class ModuleRef(BaseModel):
    """A module of the `modules` table (schema 2)."""

    model_config = STRICT
    module: Size


class DtypeNode(BaseModel):
    """A torch dtype used as a value, e.g. in a layer's config (schema 2); a name of the dtype table (or,
    from schema 3, of its value-only names)."""

    model_config = STRICT
    dtype: str


class OrderedBody(BaseModel):
    """An ordered_dict's entries ([key, value] pairs, as a dict's) and its `_metadata` attribute: none, or
    one node (a state dict's per-module versions)."""

    model_config = STRICT
    items: list[Annotated[list[Node], Field(min_length=2, max_length=2)]]
    metadata: list[Node] = Field(max_length=1)


class OrderedDictNode(BaseModel):
    """A `collections.OrderedDict` (schema 3)."""

    model_config = STRICT
    value: OrderedBody = Field(alias="ordered_dict")


class CounterNode(BaseModel):
    """A `collections.Counter` (schema 3); entries as a dict's."""

    model_config = STRICT
    items: list[Annotated[list[Node], Field(min_length=2, max_length=2)]] = Field(alias="counter")


class SetNode(BaseModel):
    """A set of distinct scalars (schema 3; checked in `check_semantics`)."""

    model_config = STRICT
    items: list[Node] = Field(alias="set")


class BytearrayNode(BaseModel):
    model_config = STRICT
    value: bytes = Field(alias="bytearray")


class ComplexNode(BaseModel):
    """A Python complex: real and imaginary part (schema 3)."""

    model_config = STRICT
    value: Annotated[list[ExactFloat], Field(min_length=2, max_length=2)] = Field(alias="complex")


class SizeNode(BaseModel):
    """A `torch.Size` (schema 3)."""

    model_config = STRICT
    value: list[Int64] = Field(alias="size")


class DeviceNode(BaseModel):
    """A `torch.device`, as torch spells it: `cpu`, `cuda:0` (schema 3)."""

    model_config = STRICT
    value: Annotated[str, Field(max_length=64, pattern=DEVICE_PATTERN)] = Field(alias="device")


class ParamRef(BaseModel):
    """A parameter: the tensor that holds it and whether it requires grad."""

    model_config = STRICT
    tensor: Size
    requires_grad: bool


class ParameterRef(BaseModel):
    """A tensor as a `torch.nn.Parameter` (schema 3)."""

    model_config = STRICT
    value: ParamRef = Field(alias="parameter")


class GradTensorRef(BaseModel):
    """A plain tensor that requires grad (schema 3)."""

    model_config = STRICT
    tensor: Size = Field(alias="requires_grad")


class ArrayBody(BaseModel):
    """A numpy array's dtype, shape and elements (C order, little-endian)."""

    model_config = STRICT
    dtype: str
    shape: list[Size]
    data: bytes


class NdarrayNode(BaseModel):
    """A `numpy.ndarray` (schema 3)."""

    model_config = STRICT
    value: ArrayBody = Field(alias="ndarray")


class ScalarBody(BaseModel):
    """A numpy scalar's dtype and its bytes (little-endian)."""

    model_config = STRICT
    dtype: str
    data: bytes


class NumpyScalarNode(BaseModel):
    """A numpy scalar such as `numpy.float32(1.5)` (schema 3)."""

    model_config = STRICT
    value: ScalarBody = Field(alias="numpy_scalar")


class LayoutNode(BaseModel):
    """A `torch.layout` value such as `torch.strided` (schema 4)."""

    model_config = STRICT
    value: VALUE_NAME = Field(alias="layout")


class QschemeNode(BaseModel):
    """A `torch.qscheme` value such as `torch.per_tensor_affine` (schema 4)."""

    model_config = STRICT
    value: VALUE_NAME = Field(alias="qscheme")


class MetaBody(BaseModel):
    """A tensor on the meta device: no data, only dtype, shape, strides, storage offset (in elements) and
    whether it is a Parameter and requires grad."""

    model_config = STRICT
    dtype: str
    shape: list[Size]
    strides: list[Size]
    offset: Size
    parameter: bool
    requires_grad: bool


class MetaTensorNode(BaseModel):
    """A meta tensor (schema 4); dtype and shape follow the rules of the tensor table (SPEC.md §5.2)."""

    model_config = STRICT
    value: MetaBody = Field(alias="meta_tensor")


class AttrsBody(BaseModel):
    """A tensor reference node (tensor, parameter, requires_grad, meta_tensor) and its `__dict__` as
    [name, node] pairs."""

    model_config = STRICT
    of: Node
    attrs: list[Annotated[list[Node], Field(min_length=2, max_length=2)]]


class TensorAttrsNode(BaseModel):
    """A tensor with Python attributes, `t.foo = 1` (schema 4; rules in `check_semantics`)."""

    model_config = STRICT
    value: AttrsBody = Field(alias="tensor_attrs")


class RefNode(BaseModel):
    """A class or function the reading program registered, by its registered name (schema 5, configs
    only): `norm_layer=nn.BatchNorm2d`, `act=F.gelu`."""

    model_config = STRICT
    ref: str


class PartialBody(BaseModel):
    """`functools.partial(ref, *args, **kwargs)`: a registered name, positional nodes, [name, node] pairs."""

    model_config = STRICT
    ref: str
    args: list[Node]
    kwargs: list[Annotated[list[Node], Field(min_length=2, max_length=2)]]


class PartialNode(BaseModel):
    """A partial application of a registered class or function (schema 5, configs only)."""

    model_config = STRICT
    value: PartialBody = Field(alias="partial")


class ObjectBody(BaseModel):
    """An instance of a registered value type (a config object, dataclass, enum, pydantic model) as data."""

    model_config = STRICT
    type: str
    data: Node


class ObjectNode(BaseModel):
    """A registered value type's instance stored as its data (schema 5, configs only)."""

    model_config = STRICT
    value: ObjectBody = Field(alias="object")


class OptimizerParam(BaseModel):
    """One parameter of an optimizer: its group, the module record and local name that hold it (so its
    state follows the parameter through layer migrations), and its per-parameter state (a dict node)."""

    model_config = STRICT
    group: Size
    module: Size
    name: str
    state: Node


class OptimizerBody(BaseModel):
    """An optimizer's qualified class name (shown, never looked up), its param groups' settings (dict
    nodes without `params`), and its parameters in the optimizer's order."""

    model_config = STRICT
    cls: str = Field(alias="class")
    groups: list[Node]
    params: list[OptimizerParam]


class OptimizerNode(BaseModel):
    """A `torch.optim.Optimizer`'s state, by parameter (schema 6, object tree only)."""

    model_config = STRICT
    value: OptimizerBody = Field(alias="optimizer")


#: what a stateful node may hold: an LR scheduler's, a gradient scaler's or the random generators' state
STATEFUL_KINDS = ("lr_scheduler", "grad_scaler", "rng")


class StatefulBody(BaseModel):
    """The kind of object, its qualified class name (shown, never looked up) and its state (a node)."""

    model_config = STRICT
    kind: Literal["lr_scheduler", "grad_scaler", "rng"]
    cls: str = Field(alias="class")
    state: Node


class StatefulNode(BaseModel):
    """A training object saved as its state (schema 6, object tree only): restored as that state, which
    the object's `load_state_dict` takes."""

    model_config = STRICT
    value: StatefulBody = Field(alias="stateful")


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
    OrderedDictNode: "ordered_dict",
    CounterNode: "counter",
    SetNode: "set",
    BytearrayNode: "bytearray",
    ComplexNode: "complex",
    SizeNode: "size",
    DeviceNode: "device",
    ParameterRef: "parameter",
    GradTensorRef: "requires_grad",
    NdarrayNode: "ndarray",
    NumpyScalarNode: "numpy_scalar",
    LayoutNode: "layout",
    QschemeNode: "qscheme",
    MetaTensorNode: "meta_tensor",
    TensorAttrsNode: "tensor_attrs",
    RefNode: "ref",
    PartialNode: "partial",
    ObjectNode: "object",
    OptimizerNode: "optimizer",
    StatefulNode: "stateful",
}
_NODE_KEYS = frozenset(tag for kind, tag in _NODE_TAGS.items() if issubclass(kind, BaseModel))  # a map's key


def _node_tag(value: Any) -> str | None:
    """Which member of the Node union a value can be: its type, or for a decoded map its single key.
    Dispatching on it validates a tree several times faster than trying the members in turn (figures:
    benchmarks/RESULTS.md)."""
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
            Annotated[OrderedDictNode, Tag("ordered_dict")],
            Annotated[CounterNode, Tag("counter")],
            Annotated[SetNode, Tag("set")],
            Annotated[BytearrayNode, Tag("bytearray")],
            Annotated[ComplexNode, Tag("complex")],
            Annotated[SizeNode, Tag("size")],
            Annotated[DeviceNode, Tag("device")],
            Annotated[ParameterRef, Tag("parameter")],
            Annotated[GradTensorRef, Tag("requires_grad")],
            Annotated[NdarrayNode, Tag("ndarray")],
            Annotated[NumpyScalarNode, Tag("numpy_scalar")],
            Annotated[LayoutNode, Tag("layout")],
            Annotated[QschemeNode, Tag("qscheme")],
            Annotated[MetaTensorNode, Tag("meta_tensor")],
            Annotated[TensorAttrsNode, Tag("tensor_attrs")],
            Annotated[RefNode, Tag("ref")],
            Annotated[PartialNode, Tag("partial")],
            Annotated[ObjectNode, Tag("object")],
            Annotated[OptimizerNode, Tag("optimizer")],
            Annotated[StatefulNode, Tag("stateful")],
            Annotated[None, Tag("nil")],
        ],
        Discriminator(
            _node_tag,
            custom_error_type="node",
            custom_error_message="not a tree node (nil, bool, int, float, str, bin, or a map with one "
            "of the keys list, tuple, dict, tensor, module, dtype, ordered_dict, counter, set, bytearray, "
            "complex, size, device, parameter, requires_grad, ndarray, numpy_scalar, layout, qscheme, "
            "meta_tensor, tensor_attrs, ref, partial, object, optimizer, stateful)",
        ),
    ],
)


#: the container kinds whose entries are [key, value] pairs
MAPPINGS = (DictNode, OrderedDictNode, CounterNode)
#: the key `entries` gives an ordered_dict's `_metadata` node (not a key of its entries: those are pairs)
METADATA = "_metadata"


def entries(node: Any) -> Sequence[tuple[Any, Any]]:
    """The (key, child) pairs directly inside a container node: (index, item) for a list or tuple, (key,
    value) for a mapping, then (METADATA, node) for an ordered_dict's `_metadata`, ("", reference) then
    (name, value) for tensor_attrs; (index, arg) then (name, value) for a partial, ("", data) for an
    object; none for anything else (a set's elements and keys hold no reference)."""
    kind = type(node)
    if kind is ListNode or kind is TupleNode:
        return list(enumerate(node.items))
    if kind is TensorAttrsNode:
        return [("", node.value.of)] + [(k, v) for k, v in node.value.attrs]
    if kind is PartialNode:
        return list(enumerate(node.value.args)) + [(k, v) for k, v in node.value.kwargs]
    if kind is ObjectNode:
        return [("", node.value.data)]
    if kind is OptimizerNode:
        groups = [(f"group {i}", g) for i, g in enumerate(node.value.groups)]
        return groups + [(f"param {i}", p.state) for i, p in enumerate(node.value.params)]
    if kind is StatefulNode:
        return [("", node.value.state)]
    if kind is OrderedDictNode:
        return [(k, v) for k, v in node.value.items] + [(METADATA, v) for v in node.value.metadata]
    pairs = mapping_items(node)
    return () if pairs is None else [(k, v) for k, v in pairs]


def mapping_items(node: Any) -> list[list[Any]] | None:
    """The [key, value] pairs of a mapping node (dict, ordered_dict, counter), else None."""
    kind = type(node)
    if kind is DictNode or kind is CounterNode:
        return list(node.items)
    if kind is OrderedDictNode:
        return list(node.value.items)
    return None


def tensor_index(node: Any) -> int | None:
    """The tensor a reference node refers to (tensor, parameter, requires_grad), else None."""
    kind = type(node)
    if kind is TensorRef or kind is GradTensorRef:
        return int(node.tensor)
    if kind is ParameterRef:
        return int(node.value.tensor)
    return None


#: the kinds that only layer configs may hold (schema 5): references resolved through the reader's registry
CONFIG_ONLY = (RefNode, PartialNode, ObjectNode)
#: the kinds only the object tree may hold (schema 6), never inside one another, a config or an attribute
TRAINING_STATE = (OptimizerNode, StatefulNode)
#: the nodes a tensor_attrs node may wrap
TENSOR_NODES = (TensorRef, ParameterRef, GradTensorRef, MetaTensorNode)
#: value nodes that may be keys and set elements (with scalars and tuples of keys; SPEC.md §5.4)
KEY_VALUES = (DtypeNode, DeviceNode, ComplexNode, SizeNode, NumpyScalarNode, LayoutNode, QschemeNode)


def is_key(node: Any) -> bool:
    """Whether a node may be a key or a set element: hashable in Python and holding no reference."""
    stack = [node]
    while stack:
        n = stack.pop()
        kind = type(n)
        if kind is TupleNode:
            stack.extend(n.items)
        elif kind not in SCALARS and kind not in KEY_VALUES:
            return False
    return True


def key_identity(node: Any) -> Any:
    """What makes keys (and set elements) distinct in a file: kind and value, floats by their bits, tuples
    item by item (SPEC.md §5.4). Bounded by the nesting limit."""
    kind = type(node)
    if kind in SCALARS:
        return scalar_identity(node)
    if kind is TupleNode:
        return (kind, tuple(key_identity(x) for x in node.items))
    if kind is ComplexNode:
        return (kind, struct.pack("<dd", *node.value))
    return (kind, repr(node.model_dump(by_alias=True)))


def with_tensor(node: Any, index: int) -> Any:
    """The wire form of a tensor reference node, referring to tensor `index` instead."""
    kind = type(node)
    if kind is ParameterRef:
        return {"parameter": {"tensor": index, "requires_grad": node.value.requires_grad}}
    if kind is GradTensorRef:
        return {"requires_grad": index}
    return {"tensor": index}


def walk(roots: Iterable[Any]) -> Iterator[Any]:
    """Every node under `roots` (the roots included), depth first, each once per place it occurs."""
    stack = list(roots)
    stack.reverse()
    while stack:
        node = stack.pop()
        yield node
        inside = entries(node)
        stack.extend(child for _, child in reversed(inside))


@dataclass(frozen=True)
class Build(Generic[T]):
    """How `fold` makes a container from its folded children."""

    make_list: Callable[[list[T]], T]
    make_tuple: Callable[[list[T]], T]
    make_dict: Callable[[list[tuple[Any, T]]], T]
    #: entries and the folded `_metadata` (an empty list when the ordered_dict has none)
    make_ordered_dict: Callable[[list[tuple[Any, T]], list[T]], T]
    make_counter: Callable[[list[tuple[Any, T]]], T]
    #: the folded reference and the (name, folded value) attributes
    make_tensor_attrs: Callable[[T, list[tuple[Any, T]]], T]


def fold(node: Any, leaf: Callable[[Any], T], build: Build[T]) -> T:
    """A tree folded bottom-up: `leaf` maps scalars, references and the values that hold no node (a set's
    elements are the leaf's), `build` makes the containers; keys are folded too. Recursion depth is bounded
    by the manifest's nesting limit."""
    kind = type(node)

    def pairs(items: list[list[Any]]) -> list[tuple[Any, T]]:
        return [(fold(k, leaf, build), fold(v, leaf, build)) for k, v in items]

    if kind is ListNode:
        return build.make_list([fold(x, leaf, build) for x in node.items])
    if kind is TupleNode:
        return build.make_tuple([fold(x, leaf, build) for x in node.items])
    if kind is DictNode:
        return build.make_dict(pairs(node.items))
    if kind is OrderedDictNode:
        return build.make_ordered_dict(
            pairs(node.value.items), [fold(v, leaf, build) for v in node.value.metadata]
        )
    if kind is CounterNode:
        return build.make_counter(pairs(node.items))
    if kind is TensorAttrsNode:
        return build.make_tensor_attrs(fold(node.value.of, leaf, build), pairs(node.value.attrs))
    return leaf(node)


def _pairs(items: list[tuple[Any, Any]]) -> list[list[Any]]:
    return [[k, v] for k, v in items]


#: containers as the plain maps that are msgpack-encoded into a file
WIRE: Build[Any] = Build(
    lambda xs: {"list": xs},
    lambda xs: {"tuple": xs},
    lambda items: {"dict": _pairs(items)},
    lambda items, meta: {"ordered_dict": {"items": _pairs(items), "metadata": meta}},
    lambda items: {"counter": _pairs(items)},
    lambda of, attrs: {"tensor_attrs": {"of": of, "attrs": _pairs(attrs)}},
)


def scalar_identity(key: Any) -> tuple[type, Any]:
    """What makes scalar keys (and set elements) distinct in a file: kind and value, a float by its bits
    (SPEC.md §5.4)."""
    return (type(key), struct.pack("<d", key) if type(key) is float else key)


def python_keys(items: Sequence[Any], what: str) -> None:
    """MANIFEST_SCHEMA when keys (or set elements) that are distinct in the file are equal in Python."""
    if len(set(items)) != len(items):
        raise ManifestSchemaError(f"{what} collide in Python (e.g. 1 and True)")


def _python_dict(items: list[tuple[Any, Any]]) -> dict[Any, Any]:
    python_keys([k for k, _ in items], "dict node keys")
    return dict(items)


def _python_ordered_dict(items: list[tuple[Any, Any]], metadata: list[Any]) -> OrderedDict[Any, Any]:
    python_keys([k for k, _ in items], "ordered_dict node keys")
    out: OrderedDict[Any, Any] = OrderedDict(items)
    for value in metadata:
        out._metadata = value  # type: ignore[attr-defined]  # what torch's state_dict() sets
    return out


def _python_counter(items: list[tuple[Any, Any]]) -> Counter[Any]:
    python_keys([k for k, _ in items], "counter node keys")
    out: Counter[Any] = Counter()
    dict.update(out, items)  # values as stored: Counter.update would add them to existing counts
    return out


#: containers as Python lists, tuples, dicts, OrderedDicts and Counters (keys that Python cannot tell apart
#: are an error)
def _python_tensor_attrs(tensor: Any, attrs: list[tuple[Any, Any]]) -> Any:
    """Attributes set as torch's `_set_obj_state` sets them: entries of the tensor's `__dict__`."""
    for name, value in attrs:
        tensor.__dict__[name] = value
    return tensor


PYTHON: Build[Any] = Build(
    list, tuple, _python_dict, _python_ordered_dict, _python_counter, _python_tensor_attrs
)
