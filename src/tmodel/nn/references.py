"""What a layer config may name beyond data (SPEC.md §5.7, schema 5): registered classes and functions
(`{"ref": name}`, `{"partial": ...}`) and registered value types whose instances are stored as their data
(`{"object": ...}`).

Rules: a name read from a file resolves only through what the running program registered here or as a
layer (a layer class is a reference under its layer name); nothing is imported or looked up otherwise. An
object is registered under one name for saving; further names are aliases that also resolve on load. A
value type is matched by its exact class; its data is a config value itself, so value types nest.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..errors import BadConfig, InvalidArgument, TModelError, UnregisteredType
from ..manifest.names import TYPE_NAME, TYPE_NAME_BYTES
from ..manifest.nodes import ObjectNode, PartialNode, RefNode
from .registry import (
    find_class,
    find_name,
    is_registered,
    is_registered_name,
    registered_class,
    registered_names,
    share_names,
    spec_name,
)

ToData = Callable[[Any], Any]
FromData = Callable[[Any], Any]


@dataclass(frozen=True)
class ValueType:
    """How instances of one registered class are stored as data and made again."""

    name: str
    cls: type
    to_data: ToData
    from_data: FromData


_REFS: dict[str, Any] = {}  # name -> class or function
_REF_NAMES: dict[int, tuple[str, Any]] = {}  # id(object) -> (its saving name, the object, kept alive)
_VALUES: dict[str, ValueType] = {}
_VALUE_CLASSES: dict[type, ValueType] = {}


def _ours(name: str) -> bool:
    return name in _REFS or name in _VALUES


share_names(_ours)  # one namespace with layer names


def _check_name(name: str, taken: bool) -> None:
    if type(name) is not str or len(name) > TYPE_NAME_BYTES or not TYPE_NAME.fullmatch(name):
        raise InvalidArgument(f"invalid registered name {name!r}: dotted identifiers, e.g. 'acme.gelu'")
    if taken:
        raise InvalidArgument(f"the name {name!r} is already registered")


def _taken(name: str) -> bool:
    return _ours(name) or is_registered_name(name)


def register_function(obj: Callable[..., Any], name: str) -> None:
    """Let configs refer to a function (or a class that is not a layer) by `name`, e.g. `F.gelu` as
    "torch.nn.functional.gelu"; the first name an object gets is the one saves write."""
    if not callable(obj):
        raise InvalidArgument(f"{name}: only callables (functions, classes) can be referred to")
    if isinstance(obj, type) and is_registered(obj):
        raise InvalidArgument(
            f"{name}: {obj.__name__} is a registered layer; configs refer to it by its name"
        )
    _check_name(name, _taken(name))
    _REFS[name] = obj
    _REF_NAMES.setdefault(id(obj), (name, obj))


def register_value_type(
    cls: type, name: str, *, to_data: ToData | None = None, from_data: FromData | None = None
) -> None:
    """Let configs hold instances of `cls`, stored as data: enums by value, dataclasses and pydantic models
    by their fields, anything else through `to_data` / `from_data` (e.g. a library's config object)."""
    if not isinstance(cls, type):
        raise InvalidArgument(f"{name}: register_value_type takes a class")
    _check_name(name, _taken(name))
    if cls in _VALUE_CLASSES:
        raise InvalidArgument(f"{cls!r} is already registered as {_VALUE_CLASSES[cls].name!r}")
    if to_data is None or from_data is None:
        default = _default_codec(cls, name)
        to_data, from_data = to_data or default[0], from_data or default[1]
    vt = ValueType(name, cls, to_data, from_data)
    _VALUES[name] = vt
    _VALUE_CLASSES[cls] = vt


def _default_codec(cls: type, name: str) -> tuple[ToData, FromData]:
    if issubclass(cls, enum.Enum):
        return (lambda v: v.value), cls
    if dataclasses.is_dataclass(cls):
        fields = [f.name for f in dataclasses.fields(cls) if f.init]
        return (lambda v: {f: getattr(v, f) for f in fields}), (lambda d: cls(**d))
    if issubclass(cls, BaseModel):
        model: type[BaseModel] = cls
        return (lambda v: {f: getattr(v, f) for f in type(v).model_fields}), model.model_validate
    raise InvalidArgument(
        f"{name}: {cls.__name__} is not an enum, dataclass or pydantic model: pass to_data= and from_data="
    )


def unregister_reference(name: str) -> None:
    """Remove a function or value type registration (tests and interactive sessions)."""
    obj = _REFS.pop(name, None)
    if obj is not None and _REF_NAMES.get(id(obj), ("",))[0] == name:
        del _REF_NAMES[id(obj)]
    vt = _VALUES.pop(name, None)
    if vt is not None:
        _VALUE_CLASSES.pop(vt.cls, None)


def reference_name(obj: Any) -> str | None:
    """The registered name a config saves for a class or function, or None."""
    if isinstance(obj, type) and is_registered(obj):
        return spec_name(obj)
    entry = _REF_NAMES.get(id(obj))
    return entry[0] if entry is not None and entry[1] is obj else None


def value_type_of(obj: Any) -> ValueType | None:
    """The registration of an instance's exact class, or None."""
    vt = _VALUE_CLASSES.get(type(obj))
    if vt is None and not isinstance(obj, (type, functools.partial)) and not callable(obj):
        find_class(type(obj))
        vt = _VALUE_CLASSES.get(type(obj))
    return vt


def config_node(v: Any, value: Callable[[Any, int], Any], path: str) -> Any:
    """A class, function, partial or value-type instance as its config node, or None if `v` is none of
    those; `value(x, extra_levels)` turns an argument or a datum into a node `extra_levels` msgpack levels
    below this one."""
    name = reference_name(v)
    if name is not None:
        return {"ref": name}
    if type(v) is functools.partial:
        func = reference_name(v.func)
        if func is None:
            raise BadConfig(f"{path}: functools.partial of {_describe(v.func)}: {_HOW}")
        return {
            "partial": {
                "ref": func,
                "args": [value(a, 3) for a in v.args],
                "kwargs": [[k, value(x, 4)] for k, x in v.keywords.items()],
            }
        }
    vt = value_type_of(v)
    if vt is not None:
        return {"object": {"type": vt.name, "data": value(vt.to_data(v), 3)}}
    if isinstance(v, type) or callable(v):
        raise BadConfig(f"{path}: {_describe(v)} is code, not data: {_HOW}")
    return None


_HOW = (
    "register it (tmodel.register_class for a layer, tmodel.register_function for a function, "
    "tmodel.register_value_type for a config object, enum or dataclass)"
)


def _describe(obj: Any) -> str:
    qualname = getattr(obj, "__qualname__", type(obj).__qualname__)
    return f"{getattr(obj, '__module__', '?')}.{qualname}"


def resolve(node: Any, convert: Callable[[Any], Any]) -> Any:
    """A ref, partial or object node as its Python value, arguments and data made by `convert`."""
    kind = type(node)
    if kind is RefNode:
        return _referred(node.ref)
    if kind is PartialNode:
        body = node.value
        func = _referred(body.ref)
        return functools.partial(
            func, *[convert(a) for a in body.args], **{k: convert(x) for k, x in body.kwargs}
        )
    assert kind is ObjectNode
    _find(node.value.type)
    vt = _VALUES.get(node.value.type)
    if vt is None:
        raise _unregistered(node.value.type, "value type")
    data = convert(node.value.data)
    try:
        made = vt.from_data(data)
    except TModelError:
        raise
    except Exception as exc:  # the type's own code, fed data from the file
        raise BadConfig(f"{vt.name}: making the value from the saved data failed: {exc!r}") from None
    if type(made) is not vt.cls:
        raise BadConfig(f"{vt.name}: from_data returned a {type(made).__name__}, not a {vt.cls.__name__}")
    return made


def _find(name: str) -> None:
    """Give the registry's finders a chance to register a name read from a file that nothing holds yet."""
    if not _taken(name):
        find_name(name)


def _referred(name: str) -> Any:
    _find(name)
    obj = _REFS.get(name)
    if obj is None:
        obj = registered_class(name)
    if obj is None:
        raise _unregistered(name, "class or function")
    return obj


def _unregistered(name: str, what: str) -> UnregisteredType:
    near = difflib.get_close_matches(name, [*_REFS, *_VALUES, *registered_names()], n=3, cutoff=0.6)
    hint = f"; nearest registered: {', '.join(near)}" if near else ""
    return UnregisteredType(
        f"the {what} {name!r} a config names is not registered in this program{hint}", layer=name
    )
