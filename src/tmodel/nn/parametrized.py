"""Modules with hooks and wrappers (SPEC.md Appendix A.6): parametrized modules are saved and rebuilt
whole; wrappers and torch's hook-based reparametrizations are refused at save, with the fix.

Rules: a module parametrized with `torch.nn.utils.parametrize` (torch swaps its class for a subclass such
as `ParametrizedLinear`) is recorded under its base class's registration, with its `parametrizations`
child as torch keeps it: a ModuleDict of ParametrizationLists, each holding the originals (`original`, or
`original0`, `original1`, …) and the parametrization modules, which are registered layers. On load the
base is constructed, each tensor's parametrizations are registered again in the file's order, without
running their `right_inverse` (the originals and the parametrizations' state come from the file), and the
module is then filled like any other. A ParametrizationList is never constructed from its record alone.
`DataParallel`, `DistributedDataParallel` and `torch.compile`'s `OptimizedModule` (wrappers), and modules
pruned by `torch.nn.utils.prune` or carrying the old forward-pre-hook `weight_norm` / `spectral_norm` are
refused [UNSUPPORTED_TYPE]: their state lives in hooks, which are code. Other hooks are not saved.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.utils import parametrizations as pz
from torch.nn.utils import parametrize, prune
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

from ..errors import BadConfig, StateMismatch, UnsupportedType
from ..manifest.schema import Manifest, ModuleRecord
from .builtins import _register
from .registry import LayerSpec, module_spec, spec_for_name


class ModuleBuilder(Protocol):
    """What `restore` uses of `records.ModuleBuilder` (which sits above this module)."""

    m: Manifest
    tensors: Sequence[torch.Tensor]

    def build(self, index: int) -> nn.Module: ...


#: the record type of torch's ParametrizationList, rebuilt only by the module it belongs to
LIST_TYPE = "torch.nn.utils.parametrize.ParametrizationList"
HOLDER = "parametrizations"  # the child torch adds to a parametrized module


def saved_class(module: nn.Module) -> type[nn.Module]:
    """The class whose registration a module is saved and rebuilt under: a parametrized module's base."""
    cls: type[nn.Module] = parametrize.type_before_parametrizations(module)
    return cls


def spec_for_saved(module: nn.Module, path: str) -> LayerSpec | None:
    """The registration `module` is saved under (None: unregistered, its parent must build it), after
    refusing wrappers and hook-based state."""
    refuse_hooked(module, path)
    return module_spec(module, saved_class(module), path)


# -- refused at save -------------------------------------------------------------------------------------
def _wrapper_fix(module: nn.Module) -> str | None:
    if isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return "save model.module, the model it wraps"
    dynamo = sys.modules.get("torch._dynamo.eval_frame")  # no OptimizedModule exists before it is imported
    optimized = getattr(dynamo, "OptimizedModule", None)
    if optimized is not None and isinstance(module, optimized):
        return "save model._orig_mod, the model torch.compile wrapped, and compile it again after loading"
    return None


def _hook_fix(hook: Any) -> str | None:
    if isinstance(hook, prune.BasePruningMethod):
        name = hook._tensor_name
        return (
            f"it is pruned (torch.nn.utils.prune: {name}_orig, {name}_mask and a forward pre-hook, which is "
            f"code); call torch.nn.utils.prune.remove(module, {name!r}) before saving to make the pruning "
            f"permanent (the zeros stay in {name}), or save model.state_dict() to keep {name}_orig and "
            f"{name}_mask (tmodel.load_into loads it into a model pruned the same way)"
        )
    if isinstance(hook, WeightNorm):
        return (
            f"it has the old torch.nn.utils.weight_norm on {hook.name!r} (a forward pre-hook, which is "
            "code); use torch.nn.utils.parametrizations.weight_norm, which is saved and loaded whole, or "
            f"call torch.nn.utils.remove_weight_norm(module, {hook.name!r}) before saving"
        )
    if isinstance(hook, SpectralNorm):
        return (
            f"it has the old torch.nn.utils.spectral_norm on {hook.name!r} (a forward pre-hook, which is "
            "code); use torch.nn.utils.parametrizations.spectral_norm, which is saved and loaded whole, or "
            f"call torch.nn.utils.remove_spectral_norm(module, {hook.name!r}) before saving"
        )
    return None


def refuse_hooked(module: nn.Module, path: str) -> None:
    """UNSUPPORTED_TYPE for a wrapper, or a module whose state torch keeps in a forward pre-hook."""
    cls = type(module)
    what = f"{path}: {cls.__module__}.{cls.__qualname__}"
    fix = _wrapper_fix(module)
    if fix is not None:
        raise UnsupportedType(f"{what} is a wrapper, not a layer, and cannot be saved; {fix}")
    for hook in module._forward_pre_hooks.values():
        fix = _hook_fix(hook)
        if fix is not None:
            raise UnsupportedType(f"{what} cannot be saved: {fix}")


# -- rebuilt on load ---------------------------------------------------------------------------------------
def restore(builder: ModuleBuilder, rec: ModuleRecord, module: nn.Module, where: str) -> None:
    """Register again, on a module its constructor built unparametrized, the parametrizations record
    `rec` holds, in the file's order; the generic fill then checks and fills what they hold."""
    lists = _lists(builder, rec, where)
    if not lists or parametrize.is_parametrized(module):
        return  # nothing to register, or the constructor did it (the fill compares names)
    for name, index in lists:
        held = builder.m.modules[index]
        at = f"{where} {HOLDER}[{name!r}] (module {index})"
        unsafe = _list_config(held, at)
        chain = _chain(held, at)
        if name not in module._parameters and name not in module._buffers:
            raise StateMismatch(f"{at}: the constructed module has no parameter or buffer {name!r}")
        parts = [builder.build(i) for i in chain]
        try:
            with _originals_from_file(parts[0], builder, held, at):
                parametrize.register_parametrization(module, name, parts[0], unsafe=True)
            for part in parts[1:]:
                parametrize.register_parametrization(module, name, part, unsafe=True)
        except (ValueError, RuntimeError, AssertionError, TypeError) as exc:
            raise StateMismatch(f"{at}: the parametrization cannot be registered again: {exc}") from None
        holder: Any = module.parametrizations
        holder[name].unsafe = unsafe


def _lists(builder: ModuleBuilder, rec: ModuleRecord, where: str) -> list[tuple[str, int]]:
    """The (tensor name, ParametrizationList record) pairs of a parametrized module's record, in order;
    empty for a record whose `parametrizations` child (if any) is not torch's."""
    index = rec.children.get(HOLDER)
    if index is None:
        return []
    holder = builder.m.modules[index]
    if holder.type != "torch.nn.ModuleDict":
        return []
    pairs = [(k, i) for k, i in holder.children.items() if i is not None]
    lists = [(k, i) for k, i in pairs if builder.m.modules[i].type == LIST_TYPE]
    if lists and len(lists) != len(holder.children):
        raise StateMismatch(f"{where}: {HOLDER} mixes ParametrizationLists with other entries")
    return lists


def _list_config(held: ModuleRecord, at: str) -> bool:
    spec_for_name(held.type, at).check_version(held.version, at)
    unsafe = held.config.get("unsafe")
    if set(held.config) != {"unsafe"} or type(unsafe) is not bool:
        raise BadConfig(f"{at}: a ParametrizationList's config is {{'unsafe': bool}}", layer=held.type)
    return unsafe


def _chain(held: ModuleRecord, at: str) -> list[int]:
    """The parametrization records of a list, children `0`, `1`, … in order, at least one."""
    names = [str(i) for i in range(len(held.children))]
    chain = [held.children.get(n) for n in names]
    if not chain or list(held.children) != names or None in chain:
        raise StateMismatch(f"{at}: a ParametrizationList's children are modules named 0, 1, …")
    return [i for i in chain if i is not None]


@contextmanager
def _originals_from_file(
    first: nn.Module, builder: ModuleBuilder, held: ModuleRecord, at: str
) -> Iterator[None]:
    """While the first parametrization is registered, its `right_inverse` gives placeholders shaped as the
    file's originals (on the meta device: they are replaced by the file's tensors), so no code of the
    parametrization runs, and nothing it would compute is spent or changed."""
    refs = {**{n: None if r is None else r.tensor for n, r in held.parameters.items()}, **held.buffers}
    names = list(held.parameters) + list(held.buffers)
    tensors = [builder.tensors[i] for i in refs.values() if i is not None]
    if len(tensors) != len(names) or names not in (["original"], [f"original{i}" for i in range(len(names))]):
        raise StateMismatch(f"{at}: a ParametrizationList holds 'original' or 'original0', 'original1', …")
    if names == ["original"]:

        def inverse(x: torch.Tensor) -> Any:
            return x  # the constructed tensor stays the original until the fill replaces it

    else:
        stand_ins = tuple(torch.empty_like(t, device="meta") for t in tensors)

        def inverse(x: torch.Tensor) -> Any:
            return stand_ins

    object.__setattr__(first, "right_inverse", inverse)
    try:
        yield
    finally:
        object.__delattr__(first, "right_inverse")


# -- registrations -----------------------------------------------------------------------------------------
def _built_by_its_module(config: dict[str, Any]) -> nn.Module:
    raise BadConfig(
        "a ParametrizationList is rebuilt by the parametrized module it belongs to, never alone; "
        "save the module (torch.nn.utils.parametrize)"
    )


def _stand_in(shape: Any) -> torch.Tensor:
    """A weight of `shape` that allocates nothing, for constructors that read only a weight's shape."""
    if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
        raise BadConfig(f"a weight shape is a list of sizes, not {shape!r}")
    return torch.zeros(()).expand(*shape)


def _spectral_config(m: Any) -> dict[str, Any]:
    matrix = [m._u.shape[0], m._v.shape[0]] if "_u" in m._buffers else None
    return {
        "n_power_iterations": getattr(m, "n_power_iterations", 1),
        "dim": m.dim,
        "eps": m.eps,
        "matrix_shape": matrix,
    }


def _spectral(config: dict[str, Any]) -> nn.Module:
    """Built around a stand-in weight of the matrix's shape (its power iterations run on zeros; `_u` and
    `_v` come from the file), then given its `dim`, which only the weight's rank bounds."""
    dim, matrix = config["dim"], config["matrix_shape"]
    if type(dim) is not int or dim < 0 or (matrix is None and dim != 0):
        raise BadConfig(f"_SpectralNorm: dim {dim!r} out of range")
    module = pz._SpectralNorm(
        _stand_in([1] if matrix is None else matrix), config["n_power_iterations"], 0, config["eps"]
    )
    module.dim = dim
    return module


def _orthogonal(config: dict[str, Any]) -> nn.Module:
    kind = config["orthogonal_map"]
    if kind not in pz._OrthMaps.__members__:
        raise BadConfig(
            f"_Orthogonal: orthogonal_map {kind!r} is not one of {list(pz._OrthMaps.__members__)}"
        )
    return pz._Orthogonal(
        _stand_in(config["shape"]), pz._OrthMaps[kind], use_trivialization=config["use_trivialization"]
    )


def register_parametrizations() -> list[str]:
    """Register torch's parametrization modules, which are data, and ParametrizationList."""
    specs = {
        LIST_TYPE: (parametrize.ParametrizationList, lambda m: {"unsafe": m.unsafe}, _built_by_its_module),
        "torch.nn.utils.parametrizations._WeightNorm": (
            pz._WeightNorm,
            lambda m: {"dim": m.dim},
            lambda c: pz._WeightNorm(**c),
        ),
        "torch.nn.utils.parametrizations._SpectralNorm": (pz._SpectralNorm, _spectral_config, _spectral),
        "torch.nn.utils.parametrizations._Orthogonal": (
            pz._Orthogonal,
            lambda m: {
                "shape": list(m.shape),
                "orthogonal_map": m.orthogonal_map.name,
                "use_trivialization": "base" in m._buffers,
            },
            _orthogonal,
        ),
    }
    for name, (cls, get_config, from_config) in specs.items():
        _register(cls, name, get_config, from_config)
    return list(specs)


PARAMETRIZATION_NAMES = register_parametrizations()
