"""Resuming training from a checkpoint (`tmodel.load_checkpoint`): the model's weights, each optimizer's
state matched to its parameters by path, schedulers, scalers and the random generators, after every layer
migration the file needs.

Rules: optimizer state is matched by parameter path in the model (groups by position), never by the order
in which the optimizer was built; a parameter with no saved state starts fresh; saved state for a parameter
the optimizer does not hold is STATE_MISMATCH (strict). An object given alone is matched to the one node of
its kind anywhere in the checkpoint; with several, give a mapping {top-level key: object}.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import api
from .archive.progress import ProgressArg, progress_for
from .archive.trust import require
from .checkpoint import ROOT, training_value
from .errors import InvalidArgument, NotFound, StateMismatch
from .limits import DEFAULT_LIMITS, Limits
from .manifest.module_tree import roots
from .manifest.nodes import ModuleRef, OptimizerNode, mapping_items, walk
from .manifest.schema import Manifest
from .nn.apply import needs_steps
from .nn.records import ModuleBuilder
from .nn.registry import finding
from .tensors.into import load_into
from .tensors.load import MapLocation, placement
from .tensors.values import to_python
from .training import RNGState, optimizer_state_for, state_dict_of


@dataclass
class _Optimizer:
    """An optimizer node as Python values: settings per group, and (group, record, name, state)."""

    groups: list[dict[str, Any]]
    params: list[tuple[int, int, str, dict[str, Any]]]


def load_checkpoint(
    f: api.ReadTarget,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer] | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    *,
    strict: bool = True,
    restore_rng: bool = True,
    map_location: MapLocation = None,
    limits: Limits = DEFAULT_LIMITS,
    threads: int = 0,
    progress: ProgressArg = None,
    trusted_keys: Any = None,
    require_signature: bool = False,
    key: Any = None,
) -> Any:
    """Load a training checkpoint and put its state back: `model`'s weights (or, without a model, the
    checkpoint's module rebuilt), `optimizer` state by parameter path, `scheduler` and `scaler` state, and
    (`restore_rng`) the random generators; signatures and `key` as `load` takes them. Returns the
    checkpoint as `load` would, the model given in place of the saved one. Layer migrations apply first,
    carrying optimizer state with its parameters.

    >>> ckpt = tmodel.load_checkpoint("run.tmodel", model=model, optimizer=opt, scheduler=sched)
    >>> step = ckpt["step"]
    """
    where = placement(map_location)
    with (
        api._reader(f, limits, threads, key) as reader,
        progress_for(progress, "load") as report,
        finding(limits.max_found_names),
    ):
        require(reader.signatures, trusted_keys, require_signature)
        m = reader.manifest
        loaded = api._tensors(reader, where, None, False, report)
        device = api._device_of(where, loaded)
        m, tensors = api._upgraded(reader, m, loaded, device) if needs_steps(m) else (m, loaded)
        base = _root_record(m)
        builder = ModuleBuilder(m, tensors, device)

        def module(i: int) -> nn.Module:
            return model if model is not None and i == base else builder.rebuild(i)

        nodes: dict[int, Any] = {}  # id of a training-state node -> what resuming restores from it

        def training(node: Any, convert: Any) -> Any:
            """What `load` gives for the node; an optimizer's state is also kept by parameter."""
            if not isinstance(node, OptimizerNode):
                nodes[id(node)] = training_value(node, convert)
                return nodes[id(node)]
            body = node.value
            saved = _Optimizer(
                [convert(g) for g in body.groups],
                [(p.group, p.module, p.name, convert(p.state)) for p in body.params],
            )
            nodes[id(node)] = saved
            return state_dict_of(saved.groups, [(g, st) for g, _, _, st in saved.params])

        tree = to_python(m.root, tensors.__getitem__, module, training=training)
        root_module = module(base) if base is not None else None
        found = _found(m, nodes)
        # every object matched and every optimizer's state mapped before anything is changed
        optimizers = [
            (opt, _optimizer_state(m, base, root_module, opt, saved, strict))
            for opt, saved in _pick(optimizer, found["optimizer"], "optimizer")
        ]
        schedulers = _pick(scheduler, found["lr_scheduler"], "scheduler")
        scalers = _pick(scaler, found["grad_scaler"], "scaler")
        if model is not None:
            load_into(
                model,
                m,
                lambda ix: [tensors[i] for i in ix],
                strict=strict,
                key=_key_of(m, base) if base is not None else None,
                assign=False,
                dtype=None,
            )
    for opt, state_dict in optimizers:
        opt.load_state_dict(state_dict)
    for obj, state in schedulers + scalers:
        obj.load_state_dict(state)
    if restore_rng:
        for state in found["rng"].values():
            state.restore()
    return tree


def _optimizer_state(
    m: Manifest, base: int | None, model: nn.Module | None, opt: Any, saved: _Optimizer, strict: bool
) -> dict[str, Any]:
    """The state dict for `opt` from a saved optimizer, its parameters matched by path in `model`."""
    if model is None:
        raise NotFound(
            "the checkpoint holds no single model, so optimizer state cannot be matched to parameters"
        )
    paths = _param_paths(m, base)
    entries = [(g, paths[(mod, name)], st) for g, mod, name, st in saved.params if (mod, name) in paths]
    if len(entries) != len(saved.params):
        raise StateMismatch("the checkpoint's optimizer holds parameters of modules outside its model")
    return optimizer_state_for(opt, model, saved.groups, entries, strict)


def _root_record(m: Manifest) -> int | None:
    """The checkpoint's one module root (its model), or None when it holds none or several."""
    found = {i for _, i in roots(m)}
    return next(iter(found)) if len(found) == 1 else None


def _key_of(m: Manifest, index: int) -> str | None:
    """The top-level key of a dict checkpoint whose value is module `index` (None: the root itself)."""
    if isinstance(m.root, ModuleRef):
        return None
    for k, v in mapping_items(m.root) or ():
        if isinstance(v, ModuleRef) and v.module == index and isinstance(k, str):
            return k
    raise InvalidArgument("the checkpoint's model is not a top-level entry: pass model=None to rebuild it")


def _found(m: Manifest, nodes: dict[int, Any]) -> dict[str, dict[str, Any]]:
    """Training-state values by kind, keyed by their top-level key (or their place) in the checkpoint."""
    top = {id(v): k for k, v in mapping_items(m.root) or () if isinstance(k, str)}
    out: dict[str, dict[str, Any]] = {"optimizer": {}, "lr_scheduler": {}, "grad_scaler": {}, "rng": {}}
    for n, node in enumerate(n for n in walk([m.root]) if id(n) in nodes):
        kind = "optimizer" if isinstance(node, OptimizerNode) else node.value.kind
        out[kind][top.get(id(node), f"{ROOT} node {n}")] = nodes[id(node)]
    return out


def _pick(given: Any, found: dict[str, Any], what: str) -> list[tuple[Any, Any]]:
    """(object, saved state) pairs: one object for the one node of its kind, or a mapping by key."""
    if given is None:
        return []
    if isinstance(given, Mapping):
        missing = sorted(set(given) - set(found))
        if missing:
            raise NotFound(f"the checkpoint has no {what} state under {missing} (it has {sorted(found)})")
        return [(obj, found[k]) for k, obj in given.items()]
    if len(found) != 1:
        raise InvalidArgument(
            f"the checkpoint holds {len(found)} {what} states ({sorted(found)}): pass {what}={{key: object}}"
        )
    return [(given, next(iter(found.values())))]


def _param_paths(m: Manifest, base: int | None) -> dict[tuple[int, str], str]:
    """(record, local name) -> the parameter's path in the model under record `base` (first path)."""
    out: dict[tuple[int, str], str] = {}
    seen: set[int] = set()
    queue = [(base, "")] if base is not None else []
    for i, pre in queue:
        if i in seen:
            continue
        seen.add(i)
        rec = m.modules[i]
        for name, p in rec.parameters.items():
            if p is not None:
                out.setdefault((i, name), pre + name)
        queue.extend((c, f"{pre}{n}.") for n, c in rec.children.items() if c is not None)
    return out


__all__ = ["RNGState", "load_checkpoint"]
