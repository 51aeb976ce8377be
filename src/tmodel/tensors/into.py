"""A file's weights into a model the caller built (`tmodel.load_into`), matched by state-dict key.

Rules: tensors the model ties (one tensor under several keys, as a tied embedding and output head) form
one group, filled once: the file may hold any of the group's keys, one or several; several distinct
tensors in the file for one group must be equal, or the group is mismatched. Keys are missing when no key
of their group is in the file, unexpected when the model has no such key, mismatched when shapes differ.
With `assign=False` the file's values are copied into the model's tensors, which keep their device, dtype
and ties; copying into tensors on the meta device would do nothing, so it is refused. With `assign=True`
the model gets the file's tensors themselves (on `map_location`, cast to `dtype`), one object per group,
so its ties are kept and none are added; parameters keep their `requires_grad`. Strict (the default): any
missing, unexpected or mismatched key raises STATE_MISMATCH before the model is changed at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InvalidArgument, NotFound, StateMismatch
from ..manifest.dtypes import extent
from ..manifest.module_tree import state_of
from ..manifest.nodes import ModuleRef, TensorAttrsNode, mapping_items, tensor_index
from ..manifest.schema import Manifest


@dataclass(frozen=True)
class LoadReport:
    """What `load_into` matched: keys the model has and the file lacks, the reverse, and mismatches (of
    shapes, or of tied keys the file holds different tensors for)."""

    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]

    def __bool__(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def state_keys(m: Manifest, key: str | None) -> dict[str, int]:
    """The file's state-dict keys -> tensor index: of a saved module, or of a str -> tensor dict (the top
    level, or its entry `key`)."""
    node = m.root
    if key is not None:
        entries = dict((k, v) for k, v in mapping_items(node) or () if type(k) is str)
        if key not in entries:
            raise NotFound(f"the file's top level has no entry {key!r}")
        node = entries[key]
    if isinstance(node, ModuleRef):
        return state_of(m, node.module)
    node_pairs = mapping_items(node)  # a state dict: a dict or an OrderedDict (keep_vars: of Parameters,
    # and of buffers that carry attributes, as nn.Buffer's do)
    pairs = [(k, v.value.of if type(v) is TensorAttrsNode else v) for k, v in node_pairs or ()]
    if node_pairs is not None and all(type(k) is str and tensor_index(v) is not None for k, v in pairs):
        return {str(k): int(tensor_index(v)) for k, v in pairs}  # type: ignore[arg-type]
    raise InvalidArgument("the file (or its entry `key`) holds neither a module nor a state dict")


def _identity(t: torch.Tensor) -> object:
    """Equal for two state-dict entries exactly when they are one tensor (the same elements in memory)."""
    if t.device.type == "meta" or t.numel() == 0:
        return ("object", id(t))
    return (str(t.device), t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride(), t.dtype)


def _file_identity(m: Manifest, index: int) -> object:
    t = m.tensors[index]
    if t.blob is None:
        return ("tensor", index)
    return (t.blob, t.offset, tuple(t.shape), tuple(t.strides), t.dtype)


def _slots(model: nn.Module) -> dict[str, tuple[nn.Module, str, bool]]:
    """State-dict key -> (module, attribute, is a parameter), for every parameter and persistent buffer
    under every name it has."""
    out: dict[str, tuple[nn.Module, str, bool]] = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        pre = f"{prefix}." if prefix else ""
        for name, p in module._parameters.items():
            if p is not None:
                out[pre + name] = (module, name, True)
        for name, b in module._buffers.items():
            if b is not None and name not in module._non_persistent_buffers_set:
                out[pre + name] = (module, name, False)
    return out


def load_into(
    model: nn.Module,
    m: Manifest,
    read: Callable[[list[int]], list[torch.Tensor]],
    *,
    strict: bool,
    key: str | None,
    assign: bool,
    dtype: torch.dtype | None,
) -> LoadReport:
    """See the module's docstring; `read(indices)` gives the file's tensors of those indices of `m`."""
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise InvalidArgument(f"dtype must be a floating-point dtype, not {dtype}")
    if not isinstance(model, torch.nn.Module):
        raise InvalidArgument(f"load_into fills a torch.nn.Module, not {type(model).__name__}")
    keys = state_keys(m, key)
    want = {k: v for k, v in model.state_dict(keep_vars=True).items() if isinstance(v, torch.Tensor)}
    grouped: dict[object, list[str]] = {}
    for k, v in want.items():
        grouped.setdefault(_identity(v), []).append(k)
    groups = list(grouped.values())
    missing = sorted(k for g in groups if not any(k in keys for k in g) for k in g)
    unexpected = sorted(set(keys) - set(want))
    mismatched: list[str] = []
    loadable: list[tuple[list[str], list[str]]] = []  # (the group's keys, those the file holds)
    for g in groups:
        held = [k for k in g if k in keys]
        bad = [k for k in held if list(m.tensors[keys[k]].shape) != list(want[k].shape)]
        mismatched += [
            f"{k}: file {list(m.tensors[keys[k]].shape)}, model {list(want[k].shape)}" for k in bad
        ]
        if held and not bad:
            loadable.append((g, held))
    report = LoadReport(missing, unexpected, sorted(mismatched))
    if strict and not report:
        raise _mismatch(report)
    slots = _slots(model) if assign else {}
    for g, _ in loadable:
        if not assign and want[g[0]].is_meta:
            raise InvalidArgument(
                f"the model's {g[0]!r} is on the meta device, where copying the file's values in does "
                "nothing: pass assign=True to give the model the file's tensors"
            )
        if assign and (lost := [k for k in g if k not in slots]):
            raise InvalidArgument(f"assign=True cannot set {lost[0]!r}: not a parameter or buffer attribute")
    indices = sorted({keys[k] for _, held in loadable for k in held})
    got = dict(zip(indices, read(indices), strict=True))
    if dtype is not None:
        got = {i: t.to(dtype) if t.is_floating_point() else t for i, t in got.items()}
    sources: list[tuple[list[str], torch.Tensor]] = []
    for g, held in loadable:
        distinct = {_file_identity(m, keys[k]): keys[k] for k in held}
        first, *others = distinct.values()
        if any(got[i].dtype != got[first].dtype or not torch.equal(got[first], got[i]) for i in others):
            mismatched.append(f"{', '.join(held)}: tied in the model, different tensors in the file")
        else:
            sources.append((g, got[first]))
    report = LoadReport(missing, unexpected, sorted(mismatched))
    if strict and not report:
        raise _mismatch(report)
    if assign:
        _assign(sources, want, slots)
    else:
        with torch.no_grad():
            for g, t in sources:
                want[g[0]].copy_(t)
    return report


def _assign(
    sources: list[tuple[list[str], torch.Tensor]],
    want: dict[str, torch.Tensor],
    slots: dict[str, tuple[nn.Module, str, bool]],
) -> None:
    """Give each group its file tensor: one parameter object (or buffer tensor) for all of its keys."""
    given: dict[tuple[str, int], list[tuple[int, int]]] = {}  # storage -> byte ranges already given
    for g, t in sources:
        if t.numel():
            lo = int(t.storage_offset()) * t.element_size()
            hi = lo + extent(t.element_size(), list(t.shape), list(t.stride()))
            ranges = given.setdefault((str(t.device), t.untyped_storage().data_ptr()), [])
            if any(a < hi and lo < b for a, b in ranges):  # the file ties what the model does not
                t = t.clone()  # so the model gets no new tie
            else:
                ranges.append((lo, hi))
        old = want[g[0]]
        grad = old.requires_grad and (t.is_floating_point() or t.is_complex())
        param = nn.Parameter(t, requires_grad=grad)
        for k in g:
            module, name, is_param = slots[k]
            if is_param:
                module._parameters[name] = param
            else:
                module._buffers[name] = t


def _mismatch(report: LoadReport) -> StateMismatch:
    return StateMismatch(
        f"weights do not match the model: missing {report.missing}, unexpected {report.unexpected}, "
        f"mismatched {report.mismatched}"
    )
