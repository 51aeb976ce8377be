"""Applying layer migrations to a whole file's manifest: which records need which steps, running them on
lazily loaded tensors (with each parameter's optimizer state), and the new records, object tree and tensor
table, in which every tensor no step touched keeps its blob.

Rules: a record's children are upgraded before it (as constructors build them first), so a parent's step
sees its children at their current versions; records a step removed, and what only they held, are left
out, and the rest renumbered; a record no step edited is written back as it was. A tensor a step did not
read or replace stays a reference to the old file's tensor (and blob), so a rewrite copies its bytes without
decoding them; optimizer parameters follow their records and local names (SPEC.md §5.8).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from pydantic import BaseModel

from ..errors import MigrationError
from ..manifest.module_tree import roots
from ..manifest.names import unique_name
from ..manifest.nodes import (
    WIRE,
    ModuleRef,
    OptimizerNode,
    StatefulNode,
    TensorRef,
    fold,
    mapping_items,
    tensor_index,
    walk,
    with_tensor,
)
from ..manifest.schema import Manifest
from ..manifest.wire import CheckpointWire, ModuleWire
from ..tensors.values import NOT_PLAIN, no_tensor, plain_node, to_python
from .chain import steps_between, upgrade_steps
from .checkpoint_steps import CheckpointStep, steps_for, unview, view
from .checkpoint_steps import run as run_checkpoint_step
from .layer_record import LayerRecord, Opaque, ParamState, Slot
from .registry import known_name, registered_spec
from .steps import Step, check_against_class, config_ops, run_step

Load = Callable[[int], torch.Tensor]


@dataclass
class NewTensor:
    """A tensor a step created or changed: written anew."""

    name: str
    tensor: torch.Tensor


@dataclass
class Upgraded:
    """The result of migrating a manifest: new records and object tree (as wire maps), and the tensor table
    as old tensor indices (kept, blob and all) followed by new tensors."""

    modules: list[ModuleWire]
    root: Any
    kept: list[int]
    new: list[NewTensor]
    applied: list[str] = field(default_factory=list)
    #: kept tensors a step renamed: old index -> new name (state-dict names follow local names)
    renamed: dict[int, str] = field(default_factory=dict)
    #: per record path, what its steps did (one line per operation)
    ops: dict[str, list[str]] = field(default_factory=dict)
    #: the manifest's `checkpoint` after the checkpoint steps (wire)
    checkpoint: CheckpointWire | None = None

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def steps_per_record(m: Manifest, targets: dict[str, int] | None = None) -> dict[int, list[Step]]:
    """Per record index, the steps that take it to its registered version (or to `targets[layer]`)."""
    out: dict[int, list[Step]] = {}
    for i, rec in enumerate(m.modules):
        if rec.version is None:
            continue  # built by its parent: no registration, so no steps (SPEC.md §5.7)
        if targets and rec.type in targets:
            steps = steps_between(rec.type, rec.version, targets[rec.type])
        elif known_name(rec.type):
            steps = upgrade_steps(rec.type, rec.version)
        else:
            continue
        if steps:
            out[i] = steps
    return out


def describe_steps(m: Manifest, per_record: dict[int, list[Step]]) -> list[str]:
    """One line per (layer, from, to): the steps and how many modules they apply to."""
    groups: dict[tuple[str, int, int, str], int] = {}
    for i, steps in per_record.items():
        start = m.modules[i].version
        assert start is not None  # records built by their parent have no steps
        down = steps[0].to_version == start
        end = steps[-1].from_version if down else steps[-1].to_version
        names = " -> ".join(f"{s.name} (downgrade)" if down else s.name for s in steps)
        key = (m.modules[i].type, start, end, names)
        groups[key] = groups.get(key, 0) + 1
    return [
        f"{layer} {'downgrade ' if b < a else ''}v{a} -> v{b}: {names} ({n} module{'s' * (n != 1)})"
        for (layer, a, b, names), n in groups.items()
    ]


def checkpoint_steps_of(m: Manifest) -> list[CheckpointStep]:
    """The checkpoint steps a file needs (none without a recorded checkpoint version)."""
    return [] if m.checkpoint is None else steps_for(m.checkpoint.type, m.checkpoint.version)


def needs_steps(m: Manifest) -> bool:
    """Whether loading the file runs any layer or checkpoint step."""
    return bool(checkpoint_steps_of(m)) or bool(m.modules and steps_per_record(m))


def describe_checkpoint_steps(m: Manifest, steps: list[CheckpointStep]) -> list[str]:
    if not steps or m.checkpoint is None:
        return []
    names = " -> ".join(s.name for s in steps)
    return [
        f"checkpoint {m.checkpoint.type} v{m.checkpoint.version} -> v{steps[-1].from_version + 1}: {names}"
    ]


def apply_steps(m: Manifest, load: Load, targets: dict[str, int] | None = None) -> Upgraded:
    """Run every record's steps, children first, then the checkpoint's steps; tensors are decoded through
    `load` only when a step reads them."""
    per_record = steps_per_record(m, targets)
    graph = _Graph(m, load)
    for i in _children_first(m, per_record):
        steps = per_record[i]
        layer = graph.records[i]
        down = steps[0].to_version == layer.version
        for step in steps:
            done, config = len(layer.ops), dict(layer.config)
            run_step(step, layer, down=down)
            layer.ops += config_ops(config, layer.config)
            layer.ops[done:] = [f"{step.name}: {op}" for op in layer.ops[done:]]
        graph.stepped.add(id(layer))
        if not down and known_name(layer.type) and registered_spec(layer.type).version == layer.version:
            check_against_class(layer, steps[-1])
    up = graph.emit(describe_steps(m, per_record))
    if m.checkpoint is not None:
        up.checkpoint = {"type": m.checkpoint.type, "version": m.checkpoint.version}
    ckpt_steps = checkpoint_steps_of(m)
    if ckpt_steps:
        _run_checkpoint_steps(m, up, ckpt_steps, load)
    return up


def _run_checkpoint_steps(m: Manifest, up: Upgraded, steps: list[CheckpointStep], load: Load) -> None:
    """The checkpoint steps on the upgraded tree (tensor indices of the upgraded table)."""

    def read(i: int) -> torch.Tensor:
        return load(up.kept[i]) if i < len(up.kept) else up.new[i - len(up.kept)].tensor

    tree = view(up.root, read)
    for step in steps:
        tree = run_checkpoint_step(step, tree)
    taken = {up.renamed.get(i, m.tensors[i].name) for i in up.kept} | {t.name for t in up.new}

    def add(keys: tuple[str, ...], tensor: torch.Tensor) -> int:
        index = len(up.kept) + len(up.new)
        up.new.append(NewTensor(unique_name(".".join(keys) or "tensor", index, taken), tensor))
        return index

    up.root = unview(tree, add)
    assert up.checkpoint is not None
    up.checkpoint = {"type": up.checkpoint["type"], "version": steps[-1].from_version + 1}
    up.applied += describe_checkpoint_steps(m, steps)


def _children_first(m: Manifest, per_record: dict[int, list[Step]]) -> list[int]:
    """The records with steps, each after every record below it (post-order from the object tree)."""
    order: list[int] = []
    seen: set[int] = set()
    for start in [i for _, i in roots(m)] + sorted(per_record):
        stack = [(start, False)]
        while stack:
            i, done = stack.pop()
            if done:
                order.append(i)
                continue
            if i in seen:
                continue
            seen.add(i)
            stack.append((i, True))
            stack.extend((c, False) for c in reversed(m.modules[i].children.values()) if c is not None)
    return [i for i in order if i in per_record]


class _Graph:
    """Every record of a file as a LayerRecord (children linked, optimizer states on their parameters'
    slots), and the way back to wire form."""

    def __init__(self, m: Manifest, load: Load) -> None:
        self.m = m
        self.stepped: set[int] = set()
        self.records = [
            LayerRecord(r.type, r.version, _lazy_config(r.config), _slots(m, i, load), training=r.training)
            for i, r in enumerate(m.modules)
        ]
        self._file_index = {id(r): i for i, r in enumerate(self.records)}
        for rec, r in zip(self.records, m.modules, strict=True):
            rec._children = {n: None if c is None else self.records[c] for n, c in r.children.items()}
        self.optimizers = [n for n in walk([m.root]) if type(n) is OptimizerNode]
        self._index = {id(n): o for o, n in enumerate(self.optimizers)}
        for o, node in enumerate(self.optimizers):
            for j, p in enumerate(node.value.params):
                values = {
                    k: _state_slot(m, v, load) if type(v) is TensorRef else _wire(v)
                    for k, v in mapping_items(p.state) or ()
                }
                state = ParamState(o, p.group, (j,), values)
                self.records[p.module]._slots[p.name].states.append(state)

    def emit(self, applied: list[str]) -> Upgraded:
        m = self.m
        order = self._reachable()
        index = {id(r): k for k, r in enumerate(order)}
        prefixes = self._prefixes(index)
        n_old = len(m.tensors)
        taken = {t.name for t in m.tensors}
        new: list[NewTensor] = []
        wanted: dict[int, str] = {}

        def tensor_of(slot: Slot, name: str) -> int:
            if not slot.touched:
                assert slot.source is not None
                return slot.source
            new.append(NewTensor(unique_name(name, n_old + len(new), taken), slot.value().contiguous()))
            return n_old + len(new) - 1

        records: list[ModuleWire] = []
        params: dict[int, list[tuple[tuple[int, ...], int, dict[str, Any]]]] = {}  # optimizer -> entries
        for k, rec in enumerate(order):
            prefix = prefixes.get(k, "")
            original = self._original(rec)
            if original is not None and not (rec.edited or rec.config_read or id(rec) in self.stepped):
                records.append(self._as_was(original, index))
            else:
                records.append(self._record_out(rec, original, index, prefix, tensor_of, wanted))
            for name, slot in rec.slots().items():
                for st in slot.states:
                    state = {
                        key: {"tensor": tensor_of(v, f"{prefix}{name}.{key}")} if isinstance(v, Slot) else v
                        for key, v in st.values.items()
                    }
                    entry = {"group": st.group, "module": k, "name": name, "state": _dict(state)}
                    params.setdefault(st.optimizer, []).append(((st.group, *st.order), len(records), entry))

        def leaf(n: Any) -> Any:
            t = tensor_index(n)
            if t is not None:
                return with_tensor(n, t)
            if type(n) is ModuleRef:
                return {"module": index[id(self.records[n.module])]}
            if type(n) is OptimizerNode:
                o = self._index[id(n)]
                body = n.value
                ordered = [e for _, _, e in sorted(params.get(o, []), key=lambda x: x[:2])]
                groups = [_wire(g) for g in body.groups]
                return {"optimizer": {"class": body.cls, "groups": groups, "params": ordered}}
            if type(n) is StatefulNode:
                return _wire(n)
            return _wire(n)

        root = fold(m.root, leaf, WIRE)
        kept, remap = self._tensor_table(records, root, n_old, len(new))
        for r in records:
            for p in r["parameters"].values():
                if p is not None:
                    p["tensor"] = remap[p["tensor"]]
            r["buffers"] = {k: None if b is None else remap[b] for k, b in r["buffers"].items()}
        root = _remap_tensors(root, remap)
        for old in wanted:
            taken.discard(m.tensors[old].name)
        renamed = {old: unique_name(name, old, taken) for old, name in wanted.items() if old in remap}
        ops = {prefixes.get(k, "").rstrip(".") or "<root>": r.ops for k, r in enumerate(order) if r.ops}
        return Upgraded(records, root, kept, new, applied, renamed, ops)

    def _original(self, rec: LayerRecord) -> int | None:
        return self._file_index.get(id(rec))

    def _reachable(self) -> list[LayerRecord]:
        """Records still reachable from the object tree (children, config references), the file's in
        their old order, then new ones in the order they were met."""
        seen: dict[int, LayerRecord] = {}
        stack: list[LayerRecord] = [self.records[i] for _, i in reversed(roots(self.m))]
        while stack:
            rec = stack.pop()
            if id(rec) in seen:
                continue
            seen[id(rec)] = rec
            below = [c for c in rec._children.values() if c is not None]
            below += [self.records[i] for i in _config_modules(rec, self.m, self._original(rec))]
            stack.extend(reversed(below))
        old = [r for r in self.records if id(r) in seen]
        olds = {id(r) for r in self.records}
        return old + [r for r in seen.values() if id(r) not in olds]

    def _prefixes(self, index: dict[int, int]) -> dict[int, str]:
        """A state-dict prefix for every emitted record reachable through children (first path wins)."""
        out: dict[int, str] = {}
        queue = [(self.records[i], "" if path == "<root>" else path + ".") for path, i in roots(self.m)]
        for rec, pre in queue:
            k = index.get(id(rec))
            if k is None or k in out:
                continue
            out[k] = pre
            queue.extend((c, f"{pre}{n}.") for n, c in rec._children.items() if c is not None)
        return out

    def _as_was(self, i: int, index: dict[int, int]) -> ModuleWire:
        """A record no step edited, its child and config references renumbered."""
        wire = cast(ModuleWire, self.m.modules[i].model_dump(by_alias=True))
        wire["children"] = {
            n: None if c is None else index[id(self.records[c])] for n, c in wire["children"].items()
        }
        wire["config"] = {k: _remap_modules(v, self.records, index) for k, v in wire["config"].items()}
        return wire

    def _record_out(
        self,
        rec: LayerRecord,
        original: int | None,
        index: dict[int, int],
        prefix: str,
        tensor_of: Callable[[Slot, str], int],
        wanted: dict[int, str],
    ) -> ModuleWire:
        file = self.m.modules[original] if original is not None else None
        params: dict[str, Any] = {}
        buffers: dict[str, Any] = {}
        if file is not None:
            params = {k: None for k, v in file.parameters.items() if v is None}
            buffers = {k: None for k, v in file.buffers.items() if v is None}
        for name, slot in rec.slots().items():
            at = tensor_of(slot, prefix + name)
            if not slot.touched and self.m.tensors[at].name != prefix + name:
                wanted[at] = prefix + name
            if slot.kind == "parameter":
                params[name] = {"tensor": at, "requires_grad": slot.requires_grad}
                buffers.pop(name, None)
            else:
                buffers[name] = at
                params.pop(name, None)
        if rec.config_read or file is None:
            config = {k: _config_out(v, self.records, index) for k, v in rec.config.items()}
        else:
            wire = file.model_dump(by_alias=True)["config"]
            config = {k: _remap_modules(v, self.records, index) for k, v in wire.items()}
        return {
            "type": rec.type,
            "version": rec.version,
            "config": config,
            "parameters": params,
            "buffers": buffers,
            "children": {n: None if c is None else index[id(c)] for n, c in rec._children.items()},
            "training": rec.training,
        }

    @staticmethod
    def _tensor_table(
        records: list[ModuleWire], root: Any, n_old: int, n_new: int
    ) -> tuple[list[int], dict[int, int]]:
        """The old tensors still referenced, in order, and every index's new place."""
        used: set[int] = set()
        for r in records:
            used.update(p["tensor"] for p in r["parameters"].values() if p is not None)
            used.update(b for b in r["buffers"].values() if b is not None)
        used.update(_wire_tensors(root))
        kept = sorted(t for t in used if t < n_old)
        remap = {old: k for k, old in enumerate(kept)}
        remap.update({n_old + j: len(kept) + j for j in range(n_new)})
        return kept, remap


def _slots(m: Manifest, i: int, load: Load) -> dict[str, Slot]:
    rec = m.modules[i]
    slots: dict[str, Slot] = {}
    for name, p in rec.parameters.items():
        if p is not None:
            shape = tuple(m.tensors[p.tensor].shape)
            slots[name] = Slot("parameter", p.requires_grad, source=p.tensor, load=load, shape=shape)
    for name, b in rec.buffers.items():
        if b is not None:
            slots[name] = Slot("buffer", False, source=b, load=load, shape=tuple(m.tensors[b].shape))
    return slots


def _state_slot(m: Manifest, node: TensorRef, load: Load) -> Slot:
    return Slot("state", False, source=node.tensor, load=load, shape=tuple(m.tensors[node.tensor].shape))


def _lazy_config(config: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: _config_in(config)


def _config_in(config: dict[str, Any]) -> dict[str, Any]:
    """A record's config as the Python values a step edits; module references and the registered-name
    nodes (ref, partial, object) stay handles a step passes through untouched."""
    return {
        k: to_python(
            v,
            no_tensor(MigrationError),
            lambda i: ModuleRef(module=i),
            no_tensor(MigrationError),
            reference=lambda node, _convert: Opaque(node),
        )
        for k, v in config.items()
    }


def _config_out(v: Any, records: list[LayerRecord], index: dict[int, int]) -> Any:
    if isinstance(v, ModuleRef):
        return {"module": index[id(records[v.module])]}
    if isinstance(v, Opaque):
        return _remap_modules(_wire(v.node), records, index)
    node = plain_node(v, "a migrated config", MigrationError)
    if node is not NOT_PLAIN:
        return node
    if isinstance(v, list):
        return {"list": [_config_out(x, records, index) for x in v]}
    if isinstance(v, tuple):
        return {"tuple": [_config_out(x, records, index) for x in v]}
    if isinstance(v, dict):
        return {"dict": [[k, _config_out(x, records, index)] for k, x in v.items()]}
    raise MigrationError(f"a step left a config value of type {type(v).__name__}, which is not data")


def _config_modules(rec: LayerRecord, m: Manifest, original: int | None) -> list[int]:
    """Record indices a config refers to (read or not)."""
    if rec.config_read:
        found: list[int] = []
        stack: list[Any] = list(rec.config.values())
        while stack:
            v = stack.pop()
            if isinstance(v, ModuleRef):
                found.append(v.module)
            elif isinstance(v, Opaque):
                stack.append(_wire(v.node))
            elif isinstance(v, (list, tuple)):
                stack.extend(v)
            elif isinstance(v, dict):
                stack.extend(v.values())
        return found
    if original is None:
        return []
    return [n.module for n in walk(m.modules[original].config.values()) if type(n) is ModuleRef]


def _remap_modules(wire: Any, records: list[LayerRecord], index: dict[int, int]) -> Any:
    """A wire node with its module references renumbered."""
    if type(wire) is dict:
        if len(wire) == 1 and type(wire.get("module")) is int:
            return {"module": index[id(records[wire["module"]])]}
        return {k: _remap_modules(v, records, index) for k, v in wire.items()}
    if type(wire) is list:
        return [_remap_modules(v, records, index) for v in wire]
    return wire


def _wire_tensors(wire: Any) -> list[int]:
    """Tensor indices a wire tree refers to."""
    out: list[int] = []
    stack = [wire]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            key, value = next(iter(v.items())) if len(v) == 1 else ("", None)
            if key in ("tensor", "requires_grad") and type(value) is int:
                out.append(value)
            elif len(v) == 1 and "parameter" in v:
                out.append(v["parameter"]["tensor"])
            else:
                stack.extend(v.values())
        elif type(v) is list:
            stack.extend(v)
    return out


def _remap_tensors(wire: Any, remap: dict[int, int]) -> Any:
    if type(wire) is dict:
        if len(wire) == 1:
            key, value = next(iter(wire.items()))
            if key in ("tensor", "requires_grad") and type(value) is int:
                return {key: remap[value]}
            if key == "parameter":
                return {"parameter": {**value, "tensor": remap[value["tensor"]]}}
        return {k: _remap_tensors(v, remap) for k, v in wire.items()}
    if type(wire) is list:
        return [_remap_tensors(v, remap) for v in wire]
    return wire


def _dict(values: dict[str, Any]) -> dict[str, Any]:
    return {"dict": [[k, v] for k, v in values.items()]}


def _wire(node: Any) -> Any:
    """A node as its plain wire form."""
    return node.model_dump(by_alias=True) if isinstance(node, BaseModel) else node
