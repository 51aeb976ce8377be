"""What a migration step edits: one module record (`LayerRecord`) with its config, its own tensors by local
name, the optimizer state of each parameter, and its children, which a step may add, remove or replace.

Rules: tensor data is decoded only when a step reads it; renaming and moving never decode. Every operation
on a parameter applies to its optimizer state too (SPEC.md §5.8): a rename or move carries it, `split`,
`merge` and `transform` apply the same change to each state tensor shaped like the parameter and copy 0-d
entries (such as `step`), `drop` drops it, an added parameter starts with none (fresh), and replacing a
parameter's data with `rec[name] = ...` is refused while it has state (use `transform`, or `reset` to start
it fresh), so that resuming after a migration is never silently wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..errors import BadName, MigrationError
from ..limits import DEFAULT_LIMITS
from ..manifest.names import check_local_name
from .registry import known_name, registered_spec

KINDS = ("parameter", "buffer")


@dataclass
class Slot:
    """One tensor: where its data comes from, until a step reads or replaces it; a parameter's slot also
    carries the optimizer state of that parameter."""

    kind: str
    requires_grad: bool
    source: int | None = None  # the file's tensor index while untouched
    tensor: torch.Tensor | None = None
    load: Callable[[int], torch.Tensor] | None = None
    shape: tuple[int, ...] | None = None  # known without decoding while untouched
    states: list[ParamState] = field(default_factory=list)

    @property
    def touched(self) -> bool:
        return self.source is None

    def value(self) -> torch.Tensor:
        if self.tensor is None:
            assert self.source is not None and self.load is not None
            self.tensor = self.load(self.source)
        return self.tensor

    def size(self) -> tuple[int, ...]:
        return tuple(self.value().shape) if self.shape is None or self.touched else self.shape


@dataclass
class ParamState:
    """One optimizer's state of one parameter: tensor entries as slots, other entries as wire nodes."""

    optimizer: int
    group: int
    order: tuple[int, ...]  # where it sits in the optimizer's parameter order
    values: dict[str, Any]


@dataclass(frozen=True)
class Opaque:
    """A config node a step carries without reading (a ref, partial or object node)."""

    node: Any


def _new(tensor: torch.Tensor, kind: str = "state", requires_grad: bool = False) -> Slot:
    return Slot(kind, requires_grad, tensor=tensor.detach())


class LayerRecord:
    """One module's type, version, config, own tensors by local name, and children by name."""

    def __init__(
        self,
        type: str,
        version: int | None,
        config: dict[str, Any] | Callable[[], dict[str, Any]],
        slots: dict[str, Slot],
        children: dict[str, LayerRecord | None] | None = None,
        training: bool = True,
    ) -> None:
        self.type = type
        self.version = version
        self._config: dict[str, Any] | None = None if callable(config) else config
        self._config_from = config if callable(config) else None
        self.training = training
        self._slots = slots
        self._children: dict[str, LayerRecord | None] = dict(children or {})
        #: what the steps did, one line per operation (`migrate --dry-run` prints them)
        self.ops: list[str] = []
        #: set by anything that edits the record; untouched records are written back as they were
        self.edited = False

    @property
    def config(self) -> dict[str, Any]:
        """The config as Python values (decoded from the file when first read)."""
        if self._config is None:
            assert self._config_from is not None
            self._config = self._config_from()
        return self._config

    @config.setter
    def config(self, value: dict[str, Any]) -> None:
        self._config = value

    @property
    def config_read(self) -> bool:
        """Whether a step may have changed the config (it was read or set)."""
        return self._config is not None

    # -- reading -----------------------------------------------------------------------------------------
    def names(self, kind: str | None = None) -> list[str]:
        return [n for n, s in self._slots.items() if kind is None or s.kind == kind]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name, missing_ok=True) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    def __getitem__(self, name: str) -> torch.Tensor:
        """The tensor's data (decoded now if it was not yet); `a.b.w` reads child `a.b`'s tensor `w`."""
        record, local = self._at(name)
        return record._slot(local).value()

    def kind(self, name: str) -> str:
        record, local = self._at(name)
        return record._slot(local).kind

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape, without decoding it."""
        record, local = self._at(name)
        return record._slot(local).size()

    def has_state(self, name: str) -> bool:
        """Whether the parameter has optimizer state in this file."""
        record, local = self._at(name)
        return bool(record._slot(local).states)

    def slots(self) -> dict[str, Slot]:
        return dict(self._slots)

    def children(self) -> list[str]:
        return list(self._children)

    def child(self, name: str) -> LayerRecord:
        """A child's record, to edit its tensors and config within this step; `a.b` for a grandchild."""
        record: LayerRecord = self
        for part in name.split("."):
            found = record._children.get(part)
            if found is None:
                raise self._error(f"no child {name!r} (has {sorted(record._children)})")
            record = found
        return record

    def child_records(self) -> dict[str, LayerRecord | None]:
        return dict(self._children)

    # -- editing tensors ---------------------------------------------------------------------------------
    def __setitem__(self, name: str, tensor: torch.Tensor) -> None:
        """Replace a tensor's data keeping its kind; refused for a parameter that has optimizer state."""
        record, local = self._at(name)
        slot = record._slot(local)
        if slot.states:
            raise self._error(
                f"{name!r} has optimizer state, which replaced data cannot carry: use "
                f"rec.transform({name!r}, fn) to apply the same change to the parameter and its state, or "
                f"rec.reset({name!r}) first to start its state fresh"
            )
        record._slots[local] = Slot(slot.kind, slot.requires_grad, tensor=_check(tensor, name))
        record.edited = True
        self._log(f"replace {name}")

    def transform(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor], what: str = "") -> None:
        """Apply `fn` (a reshape, transpose, cast ...) to a tensor and to each optimizer state tensor
        shaped like it; 0-d state entries (`step`) are kept."""
        record, local = self._at(name)
        slot = record._slot(local)
        before = slot.size()
        tensor = _check(_call(fn, slot.value(), name, self), name)
        states = [self._map_state(st, before, name, [fn])[0] for st in slot.states]
        record._slots[local] = Slot(slot.kind, slot.requires_grad, tensor=tensor, states=states)
        record.edited = True
        self._log(f"transform {name}{f' ({what})' if what else ''}: {list(before)} -> {list(tensor.shape)}")

    def transpose(self, name: str, dim0: int = 0, dim1: int = 1) -> None:
        self.transform(name, lambda t: t.transpose(dim0, dim1).contiguous(), f"transpose {dim0}, {dim1}")

    def reshape(self, name: str, *shape: int) -> None:
        self.transform(name, lambda t: t.reshape(*shape), f"reshape {list(shape)}")

    def cast(self, name: str, dtype: torch.dtype) -> None:
        """Cast a tensor; its optimizer state keeps its own dtype (the optimizer casts state on load)."""
        record, local = self._at(name)
        slot = record._slot(local)
        tensor = _check(slot.value().to(dtype), name)
        record._slots[local] = Slot(slot.kind, slot.requires_grad, tensor=tensor, states=slot.states)
        record.edited = True
        self._log(f"cast {name} to {dtype}")

    def reset(self, name: str) -> None:
        """Drop a parameter's optimizer state: it starts fresh when training resumes."""
        record, local = self._at(name)
        slot = record._slot(local)
        record._slots[local] = replace(slot, states=[])
        record.edited = True
        self._log(f"reset the optimizer state of {name}")

    def add(
        self, name: str, tensor: torch.Tensor, kind: str = "parameter", requires_grad: bool = True
    ) -> None:
        """A new tensor; a new parameter has no optimizer state (it starts fresh)."""
        record, local = self._at(name, new=True)
        if kind not in KINDS:
            raise self._error(f"kind must be one of {KINDS}")
        record._slots[local] = Slot(kind, requires_grad, tensor=_check(tensor, name))
        record.edited = True
        self._log(f"add {kind} {name} {list(tensor.shape)}")

    def drop(self, name: str) -> torch.Tensor | None:
        """Remove a tensor (and its optimizer state); returns its data only if it had been read."""
        record, local = self._at(name)
        record._slot(local)
        record.edited = True
        self._log(f"drop {name}")
        return record._slots.pop(local).tensor

    def rename(self, old: str, new: str) -> None:
        """Rename within the record without decoding: the data stays where it is in the file."""
        if "." in old or "." in new:
            self.move(old, new)
            return
        slot = self._slot(old)
        self._check_local(new)
        if new in self._slots:
            raise self._error(f"cannot rename {old!r} to {new!r}, which exists")
        self._slots = {(new if n == old else n): s for n, s in self._slots.items()}
        del slot
        self._log(f"rename {old} -> {new}")

    def move(self, src: str, dst: str) -> None:
        """Move a tensor (with its optimizer state) to another place under this record, `proj.weight` for
        a child's; without decoding it."""
        record, local = self._at(src)
        target, name = self._at(dst, new=True)
        target._slots[name] = record._slots.pop(local)
        record.edited = target.edited = True
        self._log(f"move {src} -> {dst}")

    def split(self, name: str, parts: dict[str, int], dim: int = 0) -> None:
        """Replace one tensor by consecutive pieces along `dim`, sized as given (e.g. a fused qkv); its
        optimizer state is split the same way."""
        record, local = self._at(name)
        slot = record._slot(local)
        sizes = list(parts.values())
        before = slot.size()
        pieces = torch.split(slot.value(), sizes, dim=dim)
        if len(pieces) != len(parts) or sum(sizes) != (before[dim] if before else 0):
            raise self._error(f"split {name!r}: sizes {sizes} do not add up to {list(before)}[{dim}]")
        split_fns = [_piece(sizes, dim, k) for k in range(len(parts))]
        per_state = [self._map_state(st, before, name, split_fns) for st in slot.states]
        del record._slots[local]
        for k, (part, piece) in enumerate(zip(parts, pieces, strict=True)):
            at, part_name = self._at(part if "." in part else _sibling(name, part), new=True)
            states = [pieces_of[k] for pieces_of in per_state]
            at._slots[part_name] = Slot(slot.kind, slot.requires_grad, tensor=piece.clone(), states=states)
            at.edited = record.edited = True
        self._log(
            f"split {name} {list(before)} along {dim} into " + ", ".join(f"{p} {s}" for p, s in parts.items())
        )

    def merge(self, names: list[str], into: str, dim: int = 0) -> None:
        """Replace several tensors by their concatenation along `dim`; their optimizer states are merged
        the same way (all or none must have state; 0-d entries must be equal)."""
        found = [self._at(n) for n in names]
        slots = [r._slot(loc) for r, loc in found]
        merged = torch.cat([s.value() for s in slots], dim=dim)
        states = self._merge_states(names, slots, dim)
        for r, loc in found:
            del r._slots[loc]
            r.edited = True
        record, local = self._at(into, new=True)
        first = slots[0]
        record._slots[local] = Slot(first.kind, first.requires_grad, tensor=merged, states=states)
        record.edited = True
        self._log(f"merge {', '.join(names)} along {dim} into {into} {list(merged.shape)}")

    # -- editing children --------------------------------------------------------------------------------
    def add_child(
        self, name: str, type: str, config: dict[str, Any] | None = None, version: int | None = None
    ) -> LayerRecord:
        """A new child record with no tensors (move or add them): a registered layer type at its registered
        version by default, or, with a class's qualified name and no version, a child its parent builds."""
        self._check_local(name)
        if name in self._children:
            raise self._error(f"child {name!r} exists already")
        if version is None and known_name(type):
            version = registered_spec(type).version
        if version is None and config:
            raise self._error(f"child {name!r}: a child built by its parent (no version) has no config")
        child = LayerRecord(type, version, dict(config or {}), {}, training=self.training)
        child.edited = True
        self._children[name] = child
        self._log(f"add child {name}: {type}" + (f" v{version}" if version is not None else ""))
        return child

    def remove_child(self, name: str) -> LayerRecord:
        """Detach a child (its tensors and their optimizer state go with it, unless moved out first from the
        record returned)."""
        if self._children.get(name) is None:
            raise self._error(f"no child {name!r} (has {sorted(self._children)})")
        child = self._children.pop(name)
        assert child is not None
        self._log(f"remove child {name}")
        return child

    def replace_child(
        self, name: str, type: str, config: dict[str, Any] | None = None, version: int | None = None
    ) -> LayerRecord:
        """Put a record of another type in a child's place, keeping the old child's tensors (with their
        optimizer state) and children, which the step may then rename, move or drop."""
        old = self.remove_child(name)
        new = self.add_child(name, type, config, version)
        new._slots = old._slots
        new._children = old._children
        new.training = old.training
        return new

    # -- internals ---------------------------------------------------------------------------------------
    def _log(self, line: str) -> None:
        self.edited = True
        self.ops.append(line)

    def _error(self, message: str) -> MigrationError:
        where = f"{self.type} v{self.version}" if self.version is not None else self.type
        return MigrationError(f"{where}: {message}")

    def _check_local(self, name: Any) -> None:
        """A name a tensor or child can have (SPEC.md §5.7: no '.', which would make the file unreadable)."""
        try:
            if not isinstance(name, str):
                raise BadName(f"a name must be a str, not {type(name).__name__}")
            check_local_name(name, DEFAULT_LIMITS, f"{self.type} v{self.version}")
        except BadName as exc:
            raise self._error(f"name {name!r}: {exc}") from None

    def _slot(self, name: str) -> Slot:
        if name not in self._slots:
            raise self._error(f"no tensor {name!r} (has {sorted(self._slots)})")
        return self._slots[name]

    def _find(self, path: str, missing_ok: bool = False) -> tuple[LayerRecord, str] | None:
        *parts, local = path.split(".")
        record: LayerRecord | None = self
        for part in parts:
            record = record._children.get(part) if record is not None else None
        if record is None or local not in record._slots:
            if missing_ok:
                return None
            raise self._error(
                f"no tensor {path!r} (has {sorted(self._slots)}, children {sorted(self._children)})"
            )
        return record, local

    def _at(self, path: Any, new: bool = False) -> tuple[LayerRecord, str]:
        """The record and local name of a (dotted) tensor path; with `new`, a free name to create."""
        if not isinstance(path, str):
            raise self._error(f"a tensor name must be a str, not {type(path).__name__}")
        if not new:
            found = self._find(path)
            assert found is not None
            return found
        *parts, local = path.split(".")
        try:
            record = self.child(".".join(parts)) if parts else self
        except MigrationError:
            raise self._error(
                f"tensor name {path!r}: a dotted name is a path through children, and this record has no "
                f"child {'.'.join(parts)!r} (children: {sorted(self._children)})"
            ) from None
        record._check_local(local)
        if local in record._slots:
            raise self._error(f"tensor {path!r} exists already")
        return record, local

    def _map_state(
        self,
        st: ParamState,
        shape: tuple[int, ...],
        name: str,
        fns: list[Callable[[torch.Tensor], torch.Tensor]],
    ) -> list[ParamState]:
        """One state per function: tensor entries shaped like the parameter go through it, 0-d entries
        are copied, other entries (wire nodes) are kept; anything else cannot be carried."""
        out = [ParamState(st.optimizer, st.group, (*st.order, k), {}) for k in range(len(fns))]
        for key, v in st.values.items():
            if not isinstance(v, Slot):
                if _holds_tensor(v):
                    raise self._error(
                        f"optimizer state {key!r} of {name!r} nests tensors, which no step can carry"
                    )
                for piece in out:
                    piece.values[key] = v
                continue
            size = v.size()
            if size == ():
                for k, piece in enumerate(out):
                    piece.values[key] = v if k == 0 else _new(v.value().clone())
            elif size == shape:
                for fn, piece in zip(fns, out, strict=True):
                    piece.values[key] = _new(_check(_call(fn, v.value(), name, self), name))
            else:
                raise self._error(
                    f"optimizer state {key!r} of {name!r} has shape {list(size)}, not the parameter's "
                    f"{list(shape)}, so no step can carry it: rec.reset({name!r}) first to start it fresh"
                )
        return out

    def _merge_states(self, names: list[str], slots: list[Slot], dim: int) -> list[ParamState]:
        by_optimizer = [{st.optimizer: st for st in s.states} for s in slots]
        keys = {frozenset(b) for b in by_optimizer}
        if len(keys) != 1:
            raise self._error(
                f"merge {names}: some have optimizer state and some do not; rec.reset each one first"
            )
        out = []
        for o in sorted(next(iter(keys))):
            states = [b[o] for b in by_optimizer]
            merged: dict[str, Any] = {}
            for key in states[0].values:
                vs = [st.values.get(key) for st in states]
                if any(v is None for v in vs):
                    raise self._error(f"merge {names}: optimizer state {key!r} is missing from some")
                if all(isinstance(v, Slot) for v in vs):
                    ts = [v.value() for v in vs]  # type: ignore[union-attr]
                    if ts[0].dim() == 0:
                        if not all(torch.equal(ts[0], t) for t in ts):
                            raise self._error(f"merge {names}: optimizer state {key!r} differs ({ts})")
                        merged[key] = vs[0]
                    else:
                        merged[key] = _new(torch.cat(ts, dim=dim))
                elif all(v == vs[0] for v in vs) and not _holds_tensor(vs[0]):
                    merged[key] = vs[0]
                else:
                    raise self._error(f"merge {names}: optimizer state {key!r} differs between them")
            order = min(st.order for st in states)
            out.append(ParamState(o, states[0].group, order, merged))
        return out


def _sibling(name: str, part: str) -> str:
    """A split piece sits beside the tensor it came from."""
    head, _, _ = name.rpartition(".")
    return f"{head}.{part}" if head else part


def _piece(sizes: list[int], dim: int, k: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def take(t: torch.Tensor) -> torch.Tensor:
        return torch.split(t, sizes, dim=dim)[k].clone()

    return take


def _call(fn: Callable[[torch.Tensor], torch.Tensor], t: torch.Tensor, name: str, rec: LayerRecord) -> Any:
    try:
        return fn(t)
    except Exception as exc:  # a step's own function: report where
        raise rec._error(f"{name!r}: the step's function failed: {type(exc).__name__}: {exc}") from exc


def _holds_tensor(wire: Any) -> bool:
    """Whether a wire node holds a tensor reference."""
    stack = [wire]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            if len(v) == 1 and next(iter(v)) in ("tensor", "parameter", "requires_grad"):
                return True
            stack.extend(v.values())
        elif type(v) is list:
            stack.extend(v)
    return False


def _check(tensor: Any, name: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise MigrationError(
            f"tensor {name!r}: a step must store a torch.Tensor, not {type(tensor).__name__}"
        )
    return tensor.detach()
