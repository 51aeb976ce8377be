"""The custom-layer registry: registered names, versions, configs; nothing is ever imported by a name read
from a file, so a file can only name layers the running program registered.

Rules: a name is registered once; a class has one name. A layer's config is captured from its `__init__`
arguments unless it defines `get_config()` / `from_config()`; a layer may declare a pydantic model that
validates its config on save and on load. A builder (a model zoo's `resnet18(**kwargs)`) is registered as
a layer type whose config is its arguments: a module it made carries its name and config, whatever its
class. An integration may register a closed family of a library's classes lazily, through finders the
registry asks on a miss; a finder registers or does nothing, so a lookup still ends in the registry.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from torch import nn

from ..errors import (
    BadConfig,
    InvalidArgument,
    LayerVersionError,
    LimitExceeded,
    TModelError,
    UnregisteredType,
)
from ..manifest.fields import first_error
from ..manifest.names import TYPE_NAME

M = TypeVar("M", bound=type[nn.Module])
GetConfig = Callable[[nn.Module], dict[str, Any]]
FromConfig = Callable[[dict[str, Any]], nn.Module]
#: Puts a loaded parameter or buffer on a module the constructor built (kind: "parameter" or "buffer").
Attach = Callable[[nn.Module, str, str, Any], None]

_INIT_ARGS = "_tmodel_init_args"


def default_attach(module: nn.Module, kind: str, name: str, value: Any) -> None:
    setattr(module, name, value)


@dataclass(frozen=True)
class LayerSpec:
    """How one registered layer type is saved and rebuilt."""

    name: str
    version: int
    cls: type[nn.Module]
    get_config: GetConfig
    from_config: FromConfig
    config_model: type[BaseModel] | None = None
    attach: Attach = default_attach
    #: a container built empty that adopts the file's children or parameters (Sequential, ParameterList)
    adopts: bool = False
    #: the library (name, version) whose class or builder this is: a file using it records the version
    library: tuple[str, str] | None = None
    #: a builder's registration: its records are the modules it made, whatever their class
    builder: bool = False

    def made(self, cls: type[nn.Module]) -> bool:
        """Whether a module of class `cls` is one this registration builds."""
        return self.builder or cls is self.cls

    def check_version(self, version: int | None, where: str) -> None:
        """LAYER_VERSION unless a record written as `version` is this registration's version (records are
        migrated first, so any other version has no steps to it; nil is a record built by its parent)."""
        if version == self.version:
            return
        newer = version is not None and version > self.version
        raise LayerVersionError(
            f"{where}: the file has layer version {version}, this program registers version {self.version}"
            + ("; upgrade the code that defines it" if newer else f"; no migration from version {version}"),
            layer=self.name,
            version=version,
        )

    def validate(self, config: dict[str, Any], when: str) -> None:
        """Check a config against the layer's declared model, if it has one."""
        if self.config_model is None:
            return
        try:
            self.config_model.model_validate(config)
        except ValidationError as exc:
            raise BadConfig(
                f"{self.name} v{self.version} config {when}: {first_error(exc)}",
                layer=self.name,
                version=self.version,
            ) from None


#: the libraries tmodel ships an integration for (`tmodel.integrations.<name>`), named in error hints
INTEGRATIONS = frozenset({"transformers", "timm", "torchvision"})

_BY_NAME: dict[str, LayerSpec] = {}
_BY_CLASS: dict[type[nn.Module], LayerSpec] = {}
_WHY_NOT: dict[type[nn.Module], str] = {}


#: other registries sharing the namespace of registered names (references, value types): each says whether
#: a name is taken there
_OTHER_NAMES: list[Callable[[str], bool]] = []


def share_names(taken: Callable[[str], bool]) -> None:
    """Make layer names and another registry's names one namespace: a name is registered once."""
    _OTHER_NAMES.append(taken)


def mark_unsupported(cls: type[nn.Module], reason: str) -> None:
    """Record why a class is deliberately left unregistered, for the error a save of it raises."""
    _WHY_NOT[cls] = reason


#: asked, in order, for a name or a class the registry does not hold: each may register it (SPEC.md A.7)
_NAME_FINDERS: list[Callable[[str], None]] = []
_CLASS_FINDERS: list[Callable[[type], None]] = []


def add_finders(by_name: Callable[[str], None], by_class: Callable[[type], None]) -> None:
    """Let an integration register a library's classes on first use: `by_name` for a name read from a
    file, `by_class` for a class being saved (or a config value's type); each registers it or returns."""
    _NAME_FINDERS.append(by_name)
    _CLASS_FINDERS.append(by_class)


_asked: ContextVar[set[str] | None] = ContextVar("tmodel_found_names", default=None)
_allowed: ContextVar[int] = ContextVar("tmodel_max_found_names", default=0)


@contextmanager
def finding(limit: int) -> Iterator[None]:
    """While loading one file: at most `limit` distinct names of it go to the finders (each may import a
    module of its library), else LIMIT_EXCEEDED."""
    asked, allowed = _asked.set(set()), _allowed.set(limit)
    try:
        yield
    finally:
        _asked.reset(asked)
        _allowed.reset(allowed)


def find_name(name: str) -> None:
    """Give the finders a chance to register `name`."""
    if not _NAME_FINDERS:
        return
    asked = _asked.get()
    if asked is not None and name not in asked:
        if len(asked) >= _allowed.get():
            raise LimitExceeded(
                f"the file names more than {_allowed.get()} library classes to register on first use "
                "(limits.max_found_names)",
                layer=name,
            )
        asked.add(name)
    for find in _NAME_FINDERS:
        find(name)


def find_class(cls: type) -> None:
    """Give the finders a chance to register `cls`."""
    for find in _CLASS_FINDERS:
        find(cls)


def _add(spec: LayerSpec) -> None:
    _check_new(spec)
    _BY_NAME[spec.name] = spec
    if not spec.builder:
        _BY_CLASS[spec.cls] = spec


def _check_new(spec: LayerSpec) -> None:
    """Refuse a registration before anything about the class is changed; the error names the layer."""
    try:
        _refuse(spec)
    except TModelError as exc:
        exc.add_context(layer=spec.name, version=spec.version)
        raise


def _refuse(spec: LayerSpec) -> None:
    if not TYPE_NAME.fullmatch(spec.name) or len(spec.name) > 256:
        raise InvalidArgument(f"invalid layer name {spec.name!r}: dotted identifiers, e.g. 'acme.Gate'")
    if spec.version < 1:
        raise InvalidArgument(f"{spec.name}: version must be >= 1")
    if any(taken(spec.name) for taken in _OTHER_NAMES):
        raise InvalidArgument(f"the name {spec.name!r} is already registered (a function or value type)")
    if spec.name in _BY_NAME:
        raise InvalidArgument(
            f"layer name {spec.name!r} is already registered to {_BY_NAME[spec.name].cls!r}"
        )
    if not spec.builder and spec.cls in _BY_CLASS:
        raise InvalidArgument(f"{spec.cls!r} is already registered as {_BY_CLASS[spec.cls].name!r}")


def _captured_config(module: nn.Module) -> dict[str, Any]:
    args = module.__dict__.get(_INIT_ARGS)
    if args is None:
        raise InvalidArgument(
            f"{type(module).__name__}: no captured __init__ arguments (made before its class was "
            "registered?): register it with tmodel.register_class(cls, name, get_config=...)"
        )
    return dict(args)


def _check_capturable(cls: type[nn.Module]) -> None:
    if cls.__init__ is nn.Module.__init__:
        return  # a stateless layer with no __init__ of its own: its config is empty
    signature = inspect.signature(cls.__init__)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
        raise InvalidArgument(
            f"{cls.__name__}.__init__ takes *args: define get_config() and from_config() to register it"
        )


def _capture_init(cls: type[nn.Module]) -> None:
    """Wrap `cls.__init__` so each instance records the arguments it was built with (outermost call wins)."""
    original = cls.__init__
    signature = inspect.signature(original)
    if original is nn.Module.__init__:
        signature = inspect.Signature([inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)])

    @functools.wraps(original)
    def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        if _INIT_ARGS not in self.__dict__:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            values: dict[str, Any] = {}
            for name, value in list(bound.arguments.items())[1:]:
                if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                    values.update(value)
                else:
                    values[name] = value
            object.__setattr__(self, _INIT_ARGS, values)
        original(self, *args, **kwargs)

    cls.__init__ = __init__  # type: ignore[method-assign]


def register(name: str, version: int = 1, *, config: type[BaseModel] | None = None) -> Callable[[M], M]:
    """Register an nn.Module subclass under a stable name and layer version.

    >>> @tmodel.register("acme.Gate", version=2)
    ... class Gate(nn.Module):
    ...     def __init__(self, dim: int, act: str = "silu"): ...
    """

    def decorate(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise InvalidArgument("tmodel.register decorates nn.Module subclasses")
        own_get = cls.__dict__.get("get_config")
        own_from = cls.__dict__.get("from_config")
        register_class(
            cls,
            name,
            version,
            get_config=(lambda m: dict(m.get_config())) if own_get else None,  # type: ignore[operator]
            from_config=(lambda c: cls.from_config(c)) if own_from else None,  # type: ignore[attr-defined]
            config=config,
        )
        return cls

    return decorate


def register_class(
    cls: type[nn.Module],
    name: str,
    version: int = 1,
    *,
    get_config: GetConfig | None = None,
    from_config: FromConfig | None = None,
    config: type[BaseModel] | None = None,
    attach: Attach = default_attach,
    adopts: bool = False,
    library: tuple[str, str] | None = None,
) -> None:
    """Register a layer class you cannot decorate (a library's) under a stable name and layer version.

    Without `get_config` the config is the class's `__init__` arguments, captured from instances made
    after this call; pass `get_config(module) -> dict` (and `from_config(dict) -> module`, default
    `cls(**config)`) for instances that exist already or arguments that are not data.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise InvalidArgument("tmodel.register_class registers nn.Module subclasses")
    made: FromConfig = from_config if from_config is not None else (lambda c: cls(**c))
    spec = LayerSpec(
        name, version, cls, get_config or _captured_config, made, config, attach, adopts, library
    )
    _check_new(spec)
    if get_config is None:
        _check_capturable(cls)
        _capture_init(cls)
    _add(spec)


#: a module a registered builder made: (the builder's layer name, the config it was built from)
_BUILT_BY = "_tmodel_built_by"


def register_builder(
    name: str, build: FromConfig, version: int = 1, *, library: tuple[str, str] | None = None
) -> None:
    """Register a function that makes a model from a config (a model zoo's builder called with its
    arguments) as a layer type; the modules it makes, and those given to `mark_built`, save under `name`."""

    def made(config: dict[str, Any]) -> nn.Module:
        module = build(config)
        mark_built(module, name, config)
        return module

    _add(LayerSpec(name, version, nn.Module, _built_config, made, library=library, builder=True))


def mark_built(module: nn.Module, name: str, config: dict[str, Any]) -> None:
    """Record that the builder registered as `name` made `module` from `config`, so it saves as one."""
    module.__dict__[_BUILT_BY] = (name, dict(config))


def _built_config(module: nn.Module) -> dict[str, Any]:
    return dict(module.__dict__[_BUILT_BY][1])


def unregister(name: str) -> None:
    """Remove a registration (tests and interactive sessions); a class registered by decorator keeps its
    argument capture."""
    spec = _BY_NAME.pop(name)
    if not spec.builder:
        _BY_CLASS.pop(spec.cls, None)


def qualified_name(cls: type) -> str:
    """A class's module path and qualified name: the type of a record its parent builds (SPEC.md §5.7)."""
    return f"{cls.__module__}.{cls.__qualname__}"


def module_spec(module: nn.Module, cls: type[nn.Module], where: str) -> LayerSpec | None:
    """The registration a module saves under: the builder that made it, else its class's (`layer_spec`)."""
    built = module.__dict__.get(_BUILT_BY)
    if built is not None:
        spec = _lookup(built[0])
        if spec is not None and spec.builder:
            return spec
    return layer_spec(cls, where)


def _lookup(name: str) -> LayerSpec | None:
    spec = _BY_NAME.get(name)
    if spec is None:
        find_name(name)
        spec = _BY_NAME.get(name)
    return spec


def layer_spec(cls: type[nn.Module], where: str) -> LayerSpec | None:
    """The registration of exactly `cls`; None for an unregistered class (its parent may build it),
    UNREGISTERED_TYPE for one left unregistered on purpose (a wrapper, a lazy module)."""
    spec = _BY_CLASS.get(cls)
    if spec is None and cls not in _WHY_NOT:
        find_class(cls)
        spec = _BY_CLASS.get(cls)
    if spec is None and cls in _WHY_NOT:
        raise UnregisteredType(
            f"{where}: {qualified_name(cls)} cannot be saved: {_WHY_NOT[cls]}", layer=qualified_name(cls)
        )
    return spec


def spec_for_module(module: nn.Module, where: str) -> LayerSpec:
    """The registration of a module's exact class, or an error naming what to register."""
    cls = type(module)
    spec = layer_spec(cls, where)
    if spec is None:
        raise UnregisteredType(
            f"{where}: {qualified_name(cls)} is not a registered layer; decorate it with "
            f'@tmodel.register("your.{cls.__name__}", version=1)',
            layer=qualified_name(cls),  # it has no registered name
        )
    return spec


def spec_for_name(name: str, where: str) -> LayerSpec:
    """The registration of a type name read from a file, or an error naming the nearest registered names."""
    spec = _lookup(name)
    if spec is None:
        near = difflib.get_close_matches(name, list(_BY_NAME), n=3, cutoff=0.6)
        hint = f"; nearest registered: {', '.join(near)}" if near else ""
        family = name.partition(".")[0]
        if family in INTEGRATIONS and f"tmodel.integrations.{family}" not in sys.modules:
            hint += f" (its library's integration: import tmodel.integrations.{family})"
        raise UnregisteredType(
            f"{where}: layer type {name!r} is not registered in this program{hint}. Import the module that "
            f'defines it, or register a class with @tmodel.register("{name}", version=N)',
            layer=name,
        )
    return spec


def registered_spec(name: str) -> LayerSpec:
    """The registration of a layer name, or UNREGISTERED_TYPE."""
    return spec_for_name(name, name)


def known_name(name: str) -> bool:
    """Whether a layer or builder holds `name`, a finder registering it first if it can."""
    return _lookup(name) is not None


def is_registered_name(name: str) -> bool:
    """Whether a layer or builder holds `name` (finders not asked: this checks a new registration)."""
    return name in _BY_NAME


def all_specs() -> list[LayerSpec]:
    return [_BY_NAME[n] for n in sorted(_BY_NAME)]


def registered_names() -> list[str]:
    return sorted(_BY_NAME)


def is_registered(cls: type) -> bool:
    """Whether `cls` is a registered layer class, a finder registering it first if it can."""
    if cls not in _BY_CLASS:
        find_class(cls)
    return cls in _BY_CLASS


def spec_name(cls: type) -> str:
    """The layer name of a registered class."""
    return _BY_CLASS[cls].name


def registered_class(name: str) -> type[nn.Module] | None:
    """The class registered under a layer name, or None (a builder is not a class)."""
    spec = _lookup(name)
    return None if spec is None or spec.builder else spec.cls
