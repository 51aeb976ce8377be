"""Applying layer migrations to a whole file's manifest: which records need which steps, running them on
lazily loaded tensors, and the new tensor table, in which every tensor no step touched keeps its blob.

Rules: records are upgraded one at a time, each by its own steps; a tensor a step did not read or replace
stays a reference to the old file's tensor (and blob), so a rewrite copies its bytes without decoding them.
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
from ..manifest.nodes import WIRE, ModuleRef, fold, tensor_index, walk, with_tensor
from ..manifest.schema import Manifest
from ..manifest.wire import ModuleWire
from ..tensors.values import NOT_PLAIN, no_tensor, plain_node, to_python
from .chain import steps_between, upgrade_steps
from .registry import known_name
from .steps import LayerRecord, Slot, Step, run_step

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


def apply_steps(m: Manifest, load: Load, targets: dict[str, int] | None = None) -> Upgraded:
    """Run every record's steps; tensors are decoded through `load` only when a step reads them."""
    per_record = steps_per_record(m, targets)
    records = [cast(ModuleWire, r.model_dump(by_alias=True)) for r in m.modules]
    new: list[NewTensor] = []
    prefixes = _prefixes(m)
    taken = {t.name for t in m.tensors}
    refs: dict[int, int] = {}  # old tensor index -> uses in records and root after migration
    wanted: dict[int, str] = {}  # untouched tensors whose local name a step changed
    for i, steps in per_record.items():
        rec = m.modules[i]
        assert rec.version is not None  # records built by their parent have no steps
        layer = LayerRecord(rec.type, rec.version, _config_in(rec.config), _slots(m, i, load))
        down = steps[0].to_version == rec.version
        for step in steps:
            run_step(step, layer, down=down)
        prefix = prefixes.get(i, "")
        records[i] = _record_out(records[i], layer, new, prefix, len(m.tensors), taken)
        for name, slot in layer.slots().items():
            if slot.source is not None and m.tensors[slot.source].name != prefix + name:
                wanted[slot.source] = prefix + name
    for r in records:
        for p in r["parameters"].values():
            if p is not None:
                refs[p["tensor"]] = refs.get(p["tensor"], 0) + 1
        for b in r["buffers"].values():
            if b is not None:
                refs[b] = refs.get(b, 0) + 1
    for node in walk([m.root]):
        index = tensor_index(node)
        if index is not None:
            refs[index] = refs.get(index, 0) + 1
    n_old = len(m.tensors)
    kept = [t for t in range(n_old) if t in refs]
    remap = {old: k for k, old in enumerate(kept)}
    remap.update({n_old + j: len(kept) + j for j in range(len(new))})
    for r in records:
        for p in r["parameters"].values():
            if p is not None:
                p["tensor"] = remap[p["tensor"]]
        r["buffers"] = {k: None if b is None else remap[b] for k, b in r["buffers"].items()}
    root = fold(
        m.root, lambda n: _wire(n) if (t := tensor_index(n)) is None else with_tensor(n, remap[t]), WIRE
    )
    for old in wanted:
        taken.discard(m.tensors[old].name)
    renamed = {old: unique_name(name, old, taken) for old, name in wanted.items()}
    return Upgraded(records, root, kept, new, describe_steps(m, per_record), renamed)


def _slots(m: Manifest, i: int, load: Load) -> dict[str, Slot]:
    rec = m.modules[i]
    slots: dict[str, Slot] = {}
    for name, p in rec.parameters.items():
        if p is not None:
            slots[name] = Slot("parameter", p.requires_grad, source=p.tensor, load=load)
    for name, b in rec.buffers.items():
        if b is not None:
            slots[name] = Slot("buffer", False, source=b, load=load)
    return slots


def _record_out(
    wire: ModuleWire, layer: LayerRecord, new: list[NewTensor], prefix: str, n_old: int, taken: set[str]
) -> ModuleWire:
    wire["version"] = layer.version
    wire["config"] = {k: _config_out(v) for k, v in layer.config.items()}
    params: dict[str, Any] = {k: None for k, v in wire["parameters"].items() if v is None}
    buffers: dict[str, Any] = {k: None for k, v in wire["buffers"].items() if v is None}
    for name, slot in layer.slots().items():
        if slot.touched:
            assert slot.tensor is not None
            index = n_old + len(new)
            new.append(
                NewTensor(unique_name(prefix + name, n_old + len(new), taken), slot.tensor.contiguous())
            )
        else:
            assert slot.source is not None
            index = slot.source
        if slot.kind == "parameter":
            params[name] = {"tensor": index, "requires_grad": slot.requires_grad}
            buffers.pop(name, None)
        else:
            buffers[name] = index
            params.pop(name, None)
    wire["parameters"] = params
    wire["buffers"] = buffers
    return wire


def _prefixes(m: Manifest) -> dict[int, str]:
    """A state-dict prefix for every record reachable from the object tree (first path wins)."""
    out: dict[int, str] = {}
    stack = [(i, "" if path == "<root>" else path + ".") for path, i in roots(m)]
    while stack:
        i, pre = stack.pop()
        if i in out:
            continue
        out[i] = pre
        stack.extend((c, f"{pre}{n}.") for n, c in m.modules[i].children.items() if c is not None)
    return out


def _config_in(config: dict[str, Any]) -> dict[str, Any]:
    """A record's config as the Python values a step edits; module references stay handles a step passes
    through untouched."""
    return {
        k: to_python(v, no_tensor(MigrationError), lambda i: ModuleRef(module=i), no_tensor(MigrationError))
        for k, v in config.items()
    }


def _config_out(v: Any) -> Any:
    if isinstance(v, ModuleRef):
        return {"module": v.module}
    node = plain_node(v, "a migrated config", MigrationError)
    if node is not NOT_PLAIN:
        return node
    if isinstance(v, list):
        return {"list": [_config_out(x) for x in v]}
    if isinstance(v, tuple):
        return {"tuple": [_config_out(x) for x in v]}
    if isinstance(v, dict):
        return {"dict": [[k, _config_out(x)] for k, x in v.items()]}
    raise MigrationError(f"a step left a config value of type {type(v).__name__}, which is not data")


def _wire(node: Any) -> Any:
    """A leaf node (a scalar or a reference) as its plain wire form."""
    return node.model_dump(by_alias=True) if isinstance(node, BaseModel) else node
