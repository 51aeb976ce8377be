"""Tree nodes (SPEC.md §5.4): the models of the object tree and of layer configs, and the one walk over them
that every caller uses (`entries`, `walk`, `fold`), so the shape of a tree is known in one place.

Rules: a node is a scalar (nil, bool, int, float, str, bytes), a container (list, tuple, dict of
[scalar key, node] pairs) or a reference (tensor, module, dtype). Walks are iterative or bounded by the
manifest's nesting limit, never by the tree's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar, Union

from pydantic import BaseModel, Discriminator, Field, Tag
from typing_extensions import TypeAliasType

from ..errors import ManifestSchemaError
from .fields import STRICT, Int, Size

T = TypeVar("T")
#: the types of scalar nodes, which are also the only dict keys
SCALARS = (type(None), bool, int, float, str, bytes)


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
    """A torch dtype used as a value, e.g. in a layer's config (schema 2); a name of the dtype table."""

    model_config = STRICT
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


def entries(node: Any) -> Sequence[tuple[Any, Any]]:
    """The (key, child) pairs directly inside a container node: (index, item) for a list or tuple, (key,
    value) for a dict; none for a scalar or a reference."""
    kind = type(node)
    if kind is ListNode or kind is TupleNode:
        return list(enumerate(node.items))
    if kind is DictNode:
        return [(k, v) for k, v in node.items]
    return ()


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


def fold(node: Any, leaf: Callable[[Any], T], build: Build[T]) -> T:
    """A tree folded bottom-up: `leaf` maps scalars and references, `build` makes the containers (dict keys,
    which are scalars, are passed through). Recursion depth is bounded by the manifest's nesting limit."""
    kind = type(node)
    if kind is ListNode:
        return build.make_list([fold(x, leaf, build) for x in node.items])
    if kind is TupleNode:
        return build.make_tuple([fold(x, leaf, build) for x in node.items])
    if kind is DictNode:
        return build.make_dict([(k, fold(v, leaf, build)) for k, v in node.items])
    return leaf(node)


def _wire_dict(items: list[tuple[Any, Any]]) -> Any:
    return {"dict": [[k, v] for k, v in items]}


#: containers as the plain maps that are msgpack-encoded into a file
WIRE: Build[Any] = Build(lambda xs: {"list": xs}, lambda xs: {"tuple": xs}, _wire_dict)


def _python_dict(items: list[tuple[Any, Any]]) -> dict[Any, Any]:
    result = dict(items)
    if len(result) != len(items):
        raise ManifestSchemaError("dict node keys collide in Python (e.g. 1 and True)")
    return result


#: containers as Python lists, tuples and dicts (keys that Python cannot tell apart are an error)
PYTHON: Build[Any] = Build(list, tuple, _python_dict)
