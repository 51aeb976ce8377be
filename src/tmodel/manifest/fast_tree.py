"""The fast path's check of an object tree (SPEC.md §5.4) on its decoded msgpack form, for the kinds a
state dict or a plain checkpoint holds: scalars, list, tuple, dict, ordered_dict (scalar keys), tensor,
parameter, requires_grad and dtype nodes. `proves` says True only for a tree that the strict path
(`nodes.Node`, then `checks._check_tree`) accepts; anything else (another kind, a key node, any doubt) is
False, and the tree then takes the strict path. It never raises and never builds a node."""

from __future__ import annotations

from operator import itemgetter, methodcaller
from typing import Any

from .dtypes import DTYPES, VALUE_DTYPES
from .nodes import scalar_identity

_SCALARS = frozenset({type(None), bool, int, float, str, bytes})
_VALUE_DTYPES = frozenset(DTYPES) | frozenset(VALUE_DTYPES)


def proves(root: Any, n_tensors: int, depth: int, max_depth: int) -> bool:
    """Whether `root`, at msgpack nesting `depth`, is a valid tree of the kinds above whose tensor
    references lie below `n_tensors`, nested at most `max_depth` deep (SPEC.md §4)."""
    stack: list[tuple[Any, int]] = [(root, depth)]
    push = stack.append
    while stack:
        node, d = stack.pop()
        kind = type(node)
        if kind in _SCALARS:
            if d > max_depth:
                return False
            continue
        if kind is not dict or len(node) != 1 or d + 1 > max_depth:
            return False
        ((tag, body),) = node.items()
        if tag == "tensor" or tag == "requires_grad":
            if type(body) is not int or not 0 <= body < n_tensors:
                return False
        elif tag == "list" or tag == "tuple":
            if type(body) is not list:
                return False
            stack.extend((x, d + 2) for x in body)
        elif tag == "dict":
            if not _entries(body, d + 1, n_tensors, max_depth, push):
                return False
        elif tag == "ordered_dict":
            if type(body) is not dict or len(body) != 2 or d + 2 > max_depth:
                return False
            items, meta = body.get("items"), body.get("metadata")
            if (
                type(meta) is not list
                or len(meta) > 1
                or not _entries(items, d + 2, n_tensors, max_depth, push)
            ):
                return False
            stack.extend((x, d + 3) for x in meta)
        elif tag == "parameter":
            if (
                type(body) is not dict
                or len(body) != 2
                or type(body.get("requires_grad")) is not bool
                or type(i := body.get("tensor")) is not int
                or not 0 <= i < n_tensors
                or d + 2 > max_depth
            ):
                return False
        elif tag == "dtype":
            if type(body) is not str or body not in _VALUE_DTYPES:
                return False
        else:
            return False
    return True


def _entries(body: Any, d: int, n_tensors: int, max_depth: int, push: Any) -> bool:
    """A mapping's [key, value] pairs (the array at depth `d`): scalar keys, distinct by kind and value
    (floats by their bits); values of the common `{"tensor": i}` form checked here, others pushed."""
    if type(body) is not list or (body and d + 3 > max_depth):
        return False
    if _state_dict(body, n_tensors):
        return True
    keys = []
    for pair in body:
        if type(pair) is not list or len(pair) != 2:
            return False
        key, value = pair
        if type(key) not in _SCALARS:
            return False
        keys.append(key)
        if type(value) is dict and len(value) == 1 and type(i := value.get("tensor")) is int:
            if not 0 <= i < n_tensors or d + 3 > max_depth:
                return False
        else:
            push((value, d + 2))
    return _distinct(keys)


def _distinct(keys: list[Any]) -> bool:
    """Scalar keys distinct by kind and value, floats by their bits (SPEC.md §5.4)."""
    if all(type(k) is str for k in keys):
        return len(set(keys)) == len(keys)
    return len({scalar_identity(k) for k in keys}) == len(keys)


def _state_dict(body: list[Any], n_tensors: int) -> bool:
    """The common case of `_entries`, by whole columns: [str key, {"tensor": i}] pairs, i in range, keys
    distinct (False when the pairs are not all of that form: `_entries` then looks at each)."""
    if set(map(type, body)) != {list} or set(map(len, body)) != {2}:
        return False
    keys, values = list(map(itemgetter(0), body)), list(map(itemgetter(1), body))
    if set(map(type, keys)) != {str} or set(map(type, values)) != {dict} or set(map(len, values)) != {1}:
        return False
    refs = list(map(_TENSOR, values))
    return (
        set(map(type, refs)) == {int}
        and min(refs) >= 0
        and max(refs) < n_tensors
        and len(set(keys)) == len(keys)
    )


_TENSOR = methodcaller("get", "tensor")
