"""Modules <-> module records (SPEC.md §5.7, Appendix A): save walks a module tree into records and
tensors; load rebuilds it from registered classes only, then puts every saved parameter and buffer in place.

Rules: a module object reached twice is recorded once, and a parameter shared by two modules is one
tensor, so ties survive. Children are recorded before config values, so tensors get their state-dict names.
On load a layer is constructed from its config; children its constructor built are filled in place and must
match the file's record (type, parameters, persistent buffers, children), children it did not build are
built from their records and attached. Nothing is looked up by a name from the file except in the registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import (
    BadConfig,
    LimitExceeded,
    StateMismatch,
    UnregisteredType,
    UnsupportedType,
)
from ..limits import DEFAULT_LIMITS, Limits
from ..manifest.dtypes import DTYPES, extent
from ..manifest.module_tree import record_paths, roots
from ..manifest.names import CLASS_NAME, CLASS_NAME_BYTES
from ..manifest.schema import Manifest, ModuleRecord
from ..manifest.shards import blob_sizes
from ..manifest.validated import Validated
from ..manifest.wire import ModuleWire
from ..tensors.load import meta_tensors
from ..tensors.values import (
    MAX_DEPTH,
    NOT_PLAIN,
    key_node,
    no_tensor,
    node_levels,
    plain_node,
    room,
    to_python,
    value_repr,
)
from .parametrized import LIST_TYPE, restore, saved_class, spec_for_saved
from .placement import SkipMetaInit, meta_init, meta_parameters
from .references import config_node, resolve
from .registry import LayerSpec, default_attach, qualified_name, spec_for_name

#: the msgpack level of a config value: manifest map, modules array, record map, config map
_CONFIG_LEVEL = 5
#: Adds a tensor to the file under a key path and returns its index.
Sink = Callable[[torch.Tensor, tuple[str, ...], str], int]


class ModuleWriter:
    """Collects module records for one file."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._records: list[ModuleWire | None] = []
        self._modules: dict[int, int] = {}
        self._tensors: dict[int, int] = {}
        self._keep: list[Any] = []  # keeps ids unique while the file is written
        self._nesting = 0  # records being written, one inside another (children, config references)
        #: library name -> version, for every library whose registration a record uses
        self.libraries: dict[str, str] = {}
        #: id of each recorded parameter -> (record, local name, key path): the first that holds it
        self.parameters: dict[int, tuple[int, str, tuple[str, ...]]] = {}

    def add(self, module: nn.Module, keys: tuple[str, ...], path: str) -> int:
        """The record index of `module`, recording it (and everything below it) the first time."""
        known = self._modules.get(id(module))
        if known is not None:
            return known
        spec = spec_for_saved(module, path)  # wrappers refused, parametrized modules as their base class
        if self._nesting >= MAX_DEPTH:
            raise UnsupportedType(
                f"{path}: modules nested deeper than a file may hold ({MAX_DEPTH} records, children and "
                "config references)"
            )
        self._nesting += 1
        try:
            return self._add(module, spec, keys, path)
        finally:
            self._nesting -= 1

    def _add(self, module: nn.Module, spec: LayerSpec | None, keys: tuple[str, ...], path: str) -> int:
        """A record of `module`; an unregistered class gets one its parent must build (version nil)."""
        index = len(self._records)
        self._modules[id(module)] = index
        self._keep.append(module)
        self._records.append(None)  # the index is taken now; the record is complete once its children are
        children = {
            name: None if child is None else self.add(child, (*keys, name), f"{path}.{name}")
            for name, child in module._modules.items()
        }
        config = {} if spec is None else self._config(module, spec, path)
        if spec is not None and spec.library is not None:
            self.libraries.setdefault(*spec.library)
        record: ModuleWire = {
            "type": _parent_built_type(module, path) if spec is None else spec.name,
            "version": None if spec is None else spec.version,
            "config": {
                k: self._value(v, (*keys, f"~{k}"), f"{path} config[{k!r}]", _CONFIG_LEVEL)
                for k, v in config.items()
            },
            "parameters": {
                name: None
                if p is None
                else {"tensor": self._tensor(p, (*keys, name), path), "requires_grad": p.requires_grad}
                for name, p in module._parameters.items()
            },
            "buffers": {
                name: None if b is None else self._tensor(b, (*keys, name), path)
                for name, b in module._buffers.items()
                if name not in module._non_persistent_buffers_set
            },
            "children": children,
            "training": module.training,
        }
        self._records[index] = record
        for name, p in module._parameters.items():
            if p is not None:
                self.parameters.setdefault(id(p), (index, name, (*keys, name)))
        return index

    @staticmethod
    def _config(module: nn.Module, spec: LayerSpec, path: str) -> dict[str, Any]:
        config = spec.get_config(module)
        if type(config) is not dict:
            raise BadConfig(f"{path}: a config is a dict of argument names, not a {type(config).__name__}")
        bad = next((k for k in config if type(k) is not str), None)
        if bad is not None:
            raise BadConfig(f"{path}: config key {value_repr(bad)} is not an argument name (str)")
        spec.validate(config, "on save")
        return config

    @property
    def records(self) -> list[ModuleWire]:
        """Every record, in index order."""
        out = [r for r in self._records if r is not None]
        assert len(out) == len(self._records), "a record is still being written"
        return out

    def _tensor(self, t: torch.Tensor, keys: tuple[str, ...], path: str) -> int:
        known = self._tensors.get(id(t))
        if known is None:
            known = self.sink(t, keys, path)
            self._tensors[id(t)] = known
            self._keep.append(t)
        return known

    def _value(self, v: Any, keys: tuple[str, ...], path: str, depth: int) -> Any:
        """A config value as a manifest node at msgpack level `depth`: data only (SPEC.md §5.7)."""
        room(path, depth)
        node = plain_node(v, path, BadConfig)
        if node is not NOT_PLAIN:
            room(path, depth + node_levels(node) - 1)
            return node
        if isinstance(v, nn.Module):
            room(path, depth + 1)
            return {"module": self.add(v, keys, path)}
        if type(v) is list:
            return {"list": [self._value(x, keys, f"{path}[{i}]", depth + 2) for i, x in enumerate(v)]}
        if type(v) is tuple:
            return {"tuple": [self._value(x, keys, f"{path}[{i}]", depth + 2) for i, x in enumerate(v)]}
        if type(v) is dict:
            items = []
            for k, x in v.items():
                key = key_node(k, f"{path}[{value_repr(k)}]", BadConfig, depth + 3)
                room(path, depth + 3 + node_levels(key) - 1)
                items.append([key, self._value(x, keys, f"{path}[{value_repr(k)}]", depth + 3)])
            return {"dict": items}
        node = config_node(v, lambda x, below: self._value(x, keys, path, depth + below), path)
        if node is not None:
            return node
        raise BadConfig(
            f"{path}: config value of type {type(v).__name__} is not data (numbers, strings, bools, None, "
            "lists, tuples, dicts, torch dtypes, modules, registered classes, functions and value types); "
            "register its type with tmodel.register_value_type"
        )


def _parent_built_type(module: nn.Module, path: str) -> str:
    """The type of a record its parent builds: the class's qualified name, which loading compares with the
    class of the child the parent's constructor made."""
    name = qualified_name(saved_class(module))
    if len(name) > CLASS_NAME_BYTES or not CLASS_NAME.fullmatch(name):
        raise UnregisteredType(
            f"{path}: {name} is not a registered layer, and its class name cannot be recorded for its "
            'parent to build it: decorate it with @tmodel.register("your.Name", version=1)',
            layer=name,
        )
    return name


class ModuleBuilder:
    """Rebuilds the modules of one file from registered classes and its tensors: first every layer is
    constructed from its config, then the file's tensors are put in place, so a constructor that initialises
    a module it was given cannot overwrite loaded weights. With `meta_params`, constructors make their
    parameters on the meta device (`placement`), buffers on `device`; `left_on_meta` checks the result."""

    def __init__(
        self,
        manifest: Manifest,
        tensors: Sequence[torch.Tensor],
        device: torch.device,
        meta_params: bool = False,
        *,
        collect: bool = False,
    ) -> None:
        self.m = manifest
        #: with `collect`, records the reader would have to construct but cannot (unregistered classes)
        #: are gathered here, record index -> type, and the build goes on around them
        self.collect = collect
        self.unbuildable: dict[int, str] = {}
        self.tensors = tensors
        self.device = device
        self.meta_params = meta_params  # constructors make parameters on meta: fill replaces them all
        self.built: dict[int, nn.Module] = {}
        self._filled: set[tuple[int, int]] = set()
        self._filled_index: set[int] = set()
        self._params: dict[int, nn.Parameter] = {}
        self._unfilled: list[int] = []  # built, maybe not yet filled: each rebuild drains only these
        self._roots: list[nn.Module] = []  # what rebuild returned: the modules a caller gets
        self.checked = False  # names and shapes already compared with the records (a reused dry run)
        self.attach = True  # put the file's tensors in place (a dry run without parametrizations: no need)

    @classmethod
    def reusing(
        cls, dry: ModuleBuilder, tensors: Sequence[torch.Tensor], device: torch.device
    ) -> ModuleBuilder:
        """A builder whose modules are those a dry run constructed on meta (`check_rebuild` said they can
        be): filling puts the file's tensors in every slot, so nothing is constructed twice."""
        builder = cls(dry.m, tensors, device, meta_params=True)
        builder.built = dict(dry.built)
        builder._unfilled = list(builder.built)  # config references too: each gets the file's tensors
        builder.checked = True  # the dry run compared every record with these modules
        return builder

    def rebuild(self, index: int) -> nn.Module:
        """The module of record `index`, constructed and filled, with every module its config used filled."""
        module = self.build(index)
        self._roots.append(module)
        self.fill(index, module)
        while self._unfilled:
            i = self._unfilled.pop()
            if i not in self._filled_index:
                self.fill(i, self.built[i])
        return module

    def build(self, index: int) -> nn.Module:
        """The module of record `index`, constructed from its config (once), not yet filled."""
        if index in self.built:
            return self.built[index]
        rec = self.m.modules[index]
        where = f"module {index} ({rec.type})"
        if rec.version is None:
            if self.collect:
                self.unbuildable[index] = rec.type
                raise _Unbuildable
            raise UnregisteredType(
                f"{where}: {rec.type} is not a registered layer, so it must be built by its parent's "
                f"constructor, which did not build it; {_REGISTER_HINT}",
                layer=rec.type,
            )
        spec = spec_for_name(rec.type, where)
        spec.check_version(rec.version, where)
        config = {k: self.value(v) for k, v in rec.config.items()}
        spec.validate(config, "on load")
        # with meta parameters, their initialisers return at once (in a dry run, _Budget counts and skips)
        placed = meta_parameters() if self.meta_params else nullcontext()
        skip = SkipMetaInit() if self.meta_params else nullcontext()
        with torch.device(self.device), placed, skip:
            try:
                module = spec.from_config(config)
            except BadConfig as exc:
                raise BadConfig(f"{where}: {exc}", layer=rec.type, version=rec.version) from None
            except LimitExceeded as exc:
                raise LimitExceeded(f"{where}: {exc}", layer=rec.type, version=rec.version) from None
            except Exception as exc:  # the layer's own code, fed a config from the file
                raise BadConfig(f"{where}: construction from the saved config failed: {exc!r}") from None
        if not spec.made(saved_class(module)):
            raise BadConfig(
                f"{where}: from_config returned a {type(module).__name__}, not a {spec.cls.__name__}"
            )
        self.built[index] = module
        self._unfilled.append(index)
        return module

    def value(self, node: Any) -> Any:
        """A config node as a Python value (modules constructed, dtypes resolved)."""
        return to_python(node, no_tensor(BadConfig), self.build, no_tensor(BadConfig), resolve)

    def fill(self, index: int, module: nn.Module) -> None:
        """Check record `index` against a module built for it, then put its tensors and children in place."""
        if (index, id(module)) in self._filled:
            return
        self._filled.add((index, id(module)))
        self._filled_index.add(index)
        rec = self.m.modules[index]
        where = f"module {index} ({rec.type})"
        spec = None if rec.version is None else spec_for_name(rec.type, where)
        restore(self, rec, module, where)  # a parametrized module's parametrizations, registered again
        cls = saved_class(module)
        if (spec is None and qualified_name(cls) != rec.type) or (spec is not None and not spec.made(cls)):
            raise StateMismatch(
                f"{where}: the constructor built a {qualified_name(type(module))}, the file has {rec.type}"
            )
        if not self.checked:
            self._check(where, rec, module, spec is not None and spec.adopts)
        for name, child_index in rec.children.items():
            existing = module._modules.get(name)
            if child_index is None:
                if existing is not None:  # the saved module's slot held None: so does the rebuilt one
                    module.add_module(name, None)
                continue
            try:
                if existing is None:
                    child = self.build(child_index)
                    module.add_module(name, child)
                    self.fill(child_index, child)
                else:
                    self.built.setdefault(child_index, existing)
                    self.fill(child_index, existing)
            except _Unbuildable:
                continue  # gathered below this child; the dry run reports every such record at once
        module.training = rec.training
        if not self.attach:
            return  # a dry run that need not hold the file's tensors: `_check_bytes` reads the records
        attach = default_attach if spec is None else spec.attach
        for name, ref in rec.parameters.items():
            value = None if ref is None else self._param(ref.tensor, ref.requires_grad)
            attach(module, "parameter", name, value)
        for name, t in rec.buffers.items():
            attach(module, "buffer", name, None if t is None else self.tensors[t])

    def _check(self, where: str, rec: ModuleRecord, module: nn.Module, adopts: bool) -> None:
        """Names and shapes must agree before anything is attached (SPEC.md §5.7). A container that adopts
        children or parameters starts empty: its new names must not shadow anything the module has."""
        persistent = {n for n in module._buffers if n not in module._non_persistent_buffers_set}
        for what, saved, built in (
            ("children", rec.children, module._modules),
            ("parameters", rec.parameters, module._parameters),
        ):
            if adopts and not built:
                for name in saved:
                    if hasattr(module, name):
                        raise StateMismatch(f"{where}: {what[:-1]} name {name!r} shadows an attribute")
            else:
                _same_names(where, what, set(saved), set(built))
        _same_names(where, "persistent buffers", set(rec.buffers), persistent)
        for name, ref in rec.parameters.items():
            _same_shape(
                where, name, module._parameters.get(name), None if ref is None else self.tensors[ref.tensor]
            )
        for name, t in rec.buffers.items():
            _same_shape(where, name, module._buffers.get(name), None if t is None else self.tensors[t])

    def left_on_meta(self) -> bool:
        """After rebuilding with `meta_params`, over the modules returned and everything under them: a
        parameter still on meta is STATE_MISMATCH (each slot was matched by name to the file's, so none
        should be); True if a buffer or a plain tensor attribute is (its constructor computed it from a
        meta parameter), when the modules must be rebuilt with real parameters instead. (A module a config
        gave a constructor that kept no reference to it as a child, such as the layer TransformerEncoder
        copies, is not returned.)"""
        if not self.meta_params:
            return False
        buffer = False
        seen: set[int] = set()
        for root in self._roots:
            for path, module in root.named_modules(prefix=type(root).__name__):
                if id(module) in seen:
                    continue
                seen.add(id(module))
                for name, p in module._parameters.items():
                    if p is not None and p.is_meta:
                        raise StateMismatch(
                            f"{path}: parameter {name!r} was not filled from the file (still on the meta "
                            "device)"
                        )
                held = (*module._buffers.values(), *_attribute_tensors(module))
                buffer = buffer or any(t.is_meta for t in held if t is not None)
        return buffer

    def _param(self, tensor: int, requires_grad: bool) -> nn.Parameter:
        p = self._params.get(tensor)
        if p is None:
            t = self.tensors[tensor]
            grad_ok = t.is_floating_point() or t.is_complex()
            p = nn.Parameter(t, requires_grad=requires_grad and grad_ok)
            self._params[tensor] = p
        return p


def _attribute_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The tensors a module holds outside its parameter and buffer slots: attributes, and the items of
    list, tuple and dict attributes (a constructor's cached values)."""
    out = []
    for k, v in vars(module).items():
        if k in ("_parameters", "_buffers", "_modules"):
            continue
        if isinstance(v, torch.Tensor):
            out.append(v)
        elif isinstance(v, (list, tuple, dict)) and v:
            items = v.values() if isinstance(v, dict) else v
            out.extend(t for t in items if isinstance(t, torch.Tensor))
    return out


class _Unbuildable(Exception):
    """A record the reader cannot construct, met while collecting (ModuleBuilder.unbuildable holds it)."""


_REGISTER_HINT = (
    "register its class (tmodel.register_class, @tmodel.register) or import the tmodel integration of "
    "its library"
)


def _unbuildable_error(m: Manifest, unbuildable: dict[int, str]) -> UnregisteredType:
    """UNREGISTERED_TYPE naming every class the reader would have to construct itself but cannot, each at
    its first path: the root, config references, children their parent's constructor does not make."""
    paths = record_paths(m)
    classes: dict[str, str] = {}
    for index, name in sorted(unbuildable.items()):
        classes.setdefault(name, paths.get(index, f"module {index}"))
    listed = "; ".join(f"{name} (at {where})" for name, where in classes.items())
    return UnregisteredType(
        f"{len(classes)} unregistered class{'es' if len(classes) > 1 else ''} must be constructed by the "
        f"reader (a root, a config reference, or a child its parent's constructor does not make): {listed}; "
        + _REGISTER_HINT,
        layer=next(iter(classes)),
    )


def _same_shape(where: str, name: str, built: torch.Tensor | None, saved: torch.Tensor | None) -> None:
    if built is not None and saved is not None and tuple(built.shape) != tuple(saved.shape):
        raise StateMismatch(
            f"{where}: {name!r} is {list(saved.shape)} in the file, {list(built.shape)} from the config"
        )


def _same_names(where: str, what: str, saved: set[str], built: set[str]) -> None:
    if saved != built:
        only_file, only_code = sorted(saved - built), sorted(built - saved)
        raise StateMismatch(
            f"{where}: {what} differ: only in the file {only_file}, only in the code {only_code} "
            "(did the layer change without a new version and migration?)"
        )


#: torch calls the constructors of a dry run may make, per parameter, buffer, child and record of the file,
#: and in all (SPEC.md Appendix A.4)
OPS_PER_ITEM = 50
OPS_SLACK = 2_000


class _Budget(TorchFunctionMode):
    """Counts the torch calls made under it and stops the build once they exceed `budget` (a config from
    the file, such as `num_layers=10**7`, must not make a constructor run for minutes)."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.left = budget
        self.budget = budget

    def __torch_function__(
        self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        self.left -= 1
        if self.left < 0:
            raise LimitExceeded(
                f"the layers' constructors made more than {self.budget} torch calls for what the file holds "
                "(a config asks for more than the file has)"
            )
        done = meta_init(func, args, kwargs)  # counted, then skipped
        return done if done is not None else func(*args, **(kwargs or {}))


def check_rebuild(m: Manifest, roots: Sequence[int], limits: Limits) -> ModuleBuilder | None:
    """Build every module on the meta device first: names and shapes are checked against the file and what
    the constructors allocate beyond the file's tensors is bounded, before any real memory is spent.
    Returns the dry run's builder when its modules can be the loaded ones (`ModuleBuilder.reusing`): every
    parameter and buffer is a file tensor (a tensor a constructor kept elsewhere is caught by
    `left_on_meta`); else None."""
    builder = ModuleBuilder(m, meta_tensors(m), torch.device("meta"), collect=True)
    parametrized = any(r.type == LIST_TYPE for r in m.modules)  # registered again on each fill
    builder.attach = parametrized  # a parametrization's originals must be in place to register it
    items = sum(1 + len(r.parameters) + len(r.buffers) + len(r.children) for r in m.modules)
    built = []
    with _Budget(OPS_PER_ITEM * items + OPS_SLACK):
        for i in roots:
            try:
                built.append(builder.rebuild(i))
            except _Unbuildable:
                continue
    if builder.unbuildable:
        raise _unbuildable_error(m, builder.unbuildable)
    unsaved = _check_bytes(m, builder, built, limits)
    return None if unsaved or parametrized else builder


def _check_bytes(m: Manifest, builder: ModuleBuilder, built: list[nn.Module], limits: Limits) -> int:
    """The byte rule of SPEC.md Appendix A.4 over the modules of a dry run: `unsaved` bytes of tensors the
    file does not hold, `expanded` bytes of those it does (numel x itemsize of each: a stride-0 view counts
    at its full size), `held` bytes the file stores for them (its blobs, each once). What goes beyond the
    file, unsaved + max(0, expanded - held), may not exceed `max_unsaved_bytes`. Each module's slots are
    read against its record: a slot the record names gets the file's tensor, any other keeps what its
    constructor made. Returns `unsaved`."""
    record_of = {id(module): i for i, module in builder.built.items()}
    seen: set[int] = set()
    used: set[int] = set()
    unsaved = 0
    for root in built:
        for module in root.modules():
            index = record_of.get(id(module))
            rec = None if index is None else m.modules[index]
            saved: dict[str, int | None] = {}
            if rec is not None:
                saved = {n: None if r is None else r.tensor for n, r in rec.parameters.items()}
                saved.update(rec.buffers)
            used.update(t for t in saved.values() if t is not None)
            for name, t in (*module._parameters.items(), *module._buffers.items()):
                if name in saved or t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                unsaved += t.numel() * t.element_size()
    expanded = sum(_full_size(m, i) for i in used)
    blobs = {b for i in used if (b := m.tensors[i].blob) is not None}
    sizes = blob_sizes(m)
    held = sum(sizes[b] for b in blobs)
    held += sum(_extent(m, i) for i in used if m.tensors[i].blob is None)  # in memory: tensors a step made
    beyond = unsaved + max(0, expanded - held)
    if beyond > limits.max_unsaved_bytes:
        raise LimitExceeded(
            f"rebuilding the modules would create {unsaved + expanded} bytes of parameters and buffers "
            f"({unsaved} of them unsaved buffers) for the {held} bytes of tensors the file holds for them: "
            f"{beyond} beyond the file (limit {limits.max_unsaved_bytes}; a stride-0 view counts at its "
            "full size)"
        )
    return unsaved


def _full_size(m: Manifest, i: int) -> int:
    """numel x itemsize of file tensor `i`: what the module holding it has, whatever bytes it views."""
    t = m.tensors[i]
    return math.prod(t.shape) * DTYPES[t.dtype][0]


def _extent(m: Manifest, i: int) -> int:
    t = m.tensors[i]
    return extent(DTYPES[t.dtype][0], t.shape, t.strides)


def check_modules(v: Validated) -> None:
    """The writer's check of the modules it wrote (SPEC.md §11): what `load` checks before reading tensors,
    every root module rebuilt on the meta device, with the default limits."""
    if v.modules:
        m = v.manifest
        check_rebuild(m, [i for _, i in roots(m)], DEFAULT_LIMITS)
