"""The tree-node discriminator accepts exactly what the plain union of node types accepts."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from tmodel.manifest import nodes as m

_PLAIN = TypeAdapter(
    bool
    | m.Int
    | float
    | str
    | bytes
    | m.ListNode
    | m.TupleNode
    | m.DictNode
    | m.TensorRef
    | m.ModuleRef
    # the union as it was before the discriminator, members tried in turn
    | m.DtypeNode
    | m.OrderedDictNode
    | m.CounterNode
    | m.SetNode
    | m.BytearrayNode
    | m.ComplexNode
    | m.SizeNode
    | m.DeviceNode
    | m.ParameterRef
    | m.GradTensorRef
    | m.NdarrayNode
    | m.NumpyScalarNode
    | m.LayoutNode
    | m.QschemeNode
    | m.MetaTensorNode
    | m.TensorAttrsNode
    | None
)
_TAGGED: TypeAdapter[Any] = TypeAdapter(m.Node)

_KEYS = st.sampled_from(
    [
        *("list", "tuple", "dict", "tensor", "module", "dtype", "other", ""),
        *("ordered_dict", "counter", "set", "bytearray", "complex", "size", "device", "parameter"),
        *(
            "requires_grad",
            "ndarray",
            "numpy_scalar",
            *("layout", "qscheme", "meta_tensor", "tensor_attrs", "of", "attrs", "strides", "offset"),
            "metadata",
            "shape",
            "data",
        ),  # not "items": a field name
    ]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),  # every integer msgpack can carry
    st.floats(allow_nan=False),  # NaN != NaN would make equal outcomes compare unequal
    st.text(max_size=3),
    st.binary(max_size=3),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(_KEYS, inner, max_size=2),
    ),
    max_leaves=12,
)


def _outcome(adapter: TypeAdapter[Any], value: Any) -> Any:
    try:
        return ("ok", adapter.validate_python(value, strict=True))
    except ValidationError:
        return ("error", None)


@settings(max_examples=1500, deadline=None)
@given(value=_VALUES)
def test_tagged_and_plain_node_unions_agree(value: Any) -> None:
    assert _outcome(_TAGGED, value) == _outcome(_PLAIN, value)


def test_an_integer_beyond_64_bits_is_refused_not_made_a_float() -> None:
    """Only code can build one (msgpack cannot carry it); the plain union turned it into a float."""
    assert _outcome(_PLAIN, 2**64) == ("ok", float(2**64))
    assert _outcome(_TAGGED, 2**64) == ("error", None)


def test_built_nodes_validate_again() -> None:
    node = _TAGGED.validate_python({"dict": [["w", {"tensor": 3}], [1, {"list": [True, None, b"x"]}]]})
    assert isinstance(node, m.DictNode)
    assert _TAGGED.validate_python(node) == node
    assert _TAGGED.validate_python(node.items[0][1]) == m.TensorRef(tensor=3)
