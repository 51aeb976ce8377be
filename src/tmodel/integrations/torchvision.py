"""torchvision's models saved whole (SPEC.md Appendix A.7): importing this module wraps every builder
torchvision registers (`resnet18`, `vit_b_16`, ..., and `get_model`) so a model it makes is recorded as the
layer `torchvision.<builder>` whose config is the builder's keyword arguments: without `weights`,
`weights_backbone` and `progress`, but with every argument torchvision set from the weights' metadata (its
`_ovewrite_named_param` / `_ovewrite_value_param`, e.g. `num_classes`). Loading calls the builder again with
no weights, which come from the file. The names are a closed set, torchvision's registered builders.
Build models after this import: one made before carries no record of its arguments.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

import torchvision
from torch import nn
from torchvision.models import _api, _utils

from ..nn.registry import add_finders, is_registered_name, mark_built, register_builder
from .builders import PLACEMENT, Builder, checked_kwargs, data_kwargs, replace_everywhere

PREFIX = "torchvision."
LIBRARY = ("torchvision", str(torchvision.__version__))
#: arguments that only say where weights come from: the file holds them
_WEIGHTS_ONLY = ("weights", "weights_backbone", "progress")
#: the closed set of builders: name -> torchvision's own function
_BUILDERS: dict[str, Builder] = dict(_api.BUILTIN_MODELS)
_state = threading.local()  # the arguments torchvision set from weights, while a wrapped builder runs


def _recorder(original: Callable[..., Any], named: bool) -> Callable[..., Any]:
    """torchvision's argument-overwriting helper, also noting the value it settles on."""

    @functools.wraps(original)
    def overwrite(*args: Any) -> Any:
        result = original(*args)
        log = getattr(_state, "log", None)
        if log is not None:
            if named:  # (kwargs, param, new_value): sets kwargs[param]
                log[args[1]] = args[0][args[1]]
            else:  # (param, actual, expected): returns the value
                log[args[0]] = result
        return result

    return overwrite


def _wrap(name: str, builder: Builder) -> Builder:
    @functools.wraps(builder)
    def build(*args: Any, **kwargs: Any) -> Any:
        if args:  # torchvision's builders take keywords only: leave anything else untouched
            return builder(*args, **kwargs)
        outer = getattr(_state, "log", None)
        _state.log = {}
        try:
            model = builder(**kwargs)
            settled = _state.log
        finally:
            _state.log = outer
        if isinstance(model, nn.Module):
            _register(PREFIX + name)
            mark_built(model, PREFIX + name, {**data_kwargs(kwargs, (*_WEIGHTS_ONLY, *PLACEMENT)), **settled})
        return model

    return build


def _rebuild(name: str, config: dict[str, Any]) -> nn.Module:
    builder = _BUILDERS[name]
    free = {k: None for k in _WEIGHTS_ONLY[:2] if k in inspect.signature(builder).parameters}
    kwargs = checked_kwargs(config, _WEIGHTS_ONLY)
    model: nn.Module = builder(**kwargs, **free)  # no weights: none downloaded, the file has them
    return model


def _register(name: str) -> None:
    if not is_registered_name(name):
        register_builder(name, functools.partial(_rebuild, name[len(PREFIX) :]), 1, library=LIBRARY)


def _by_name(name: str) -> None:
    if name.startswith(PREFIX) and name[len(PREFIX) :] in _BUILDERS:
        _register(name)


add_finders(_by_name, lambda cls: None)
_replaced: dict[int, tuple[Builder, Builder]] = {id(b): (b, _wrap(n, b)) for n, b in _BUILDERS.items()}
for _helper, _named in (("_ovewrite_named_param", True), ("_ovewrite_value_param", False)):
    _original = getattr(_utils, _helper, None)
    if _original is not None:
        _replaced[id(_original)] = (_original, _recorder(_original, _named))
replace_everywhere("torchvision", _replaced)
for _name, _builder in _BUILDERS.items():
    _api.BUILTIN_MODELS[_name] = _replaced[id(_builder)][1]  # get_model builds through the wrappers too
