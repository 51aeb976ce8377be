"""timm's models saved whole (SPEC.md Appendix A.7): importing this module wraps `timm.create_model` so a
model it makes is recorded as the layer `timm.<architecture>` with the config `{"tag": pretrained tag or
None, "kwargs": the other arguments}`; loading calls `create_model` again with `pretrained=False`, the
weights coming from the file. The names are a closed set, timm's registered architectures. Build models
after this import: one made before carries no record of its arguments.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import timm
from torch import nn

from ..errors import BadConfig
from ..nn.registry import add_finders, is_registered_name, mark_built, register_builder
from .builders import PLACEMENT, checked_kwargs, data_kwargs, replace_everywhere

PREFIX = "timm."
LIBRARY = ("timm", str(timm.__version__))
#: arguments that only say where weights come from: the file holds them
_WEIGHTS_ONLY = ("pretrained", "checkpoint_path", "cache_dir")
_create = timm.create_model
_TAG = re.compile(r"[A-Za-z0-9_]+")


def _architecture(model_name: str) -> tuple[str, str | None] | None:
    """A model name's registered architecture and pretrained tag; None for a name tmodel cannot rebuild
    offline (one sourced from the Hugging Face Hub or a folder, `hf-hub:...`)."""
    if ":" in model_name:
        return None
    arch, _, tag = model_name.partition(".")
    if not arch.isidentifier() or not timm.is_model(arch):
        return None
    return arch, tag or None


@functools.wraps(_create)
def create_model(model_name: str, *args: Any, **kwargs: Any) -> Any:
    model = _create(model_name, *args, **kwargs)
    parts = _architecture(model_name) if isinstance(model_name, str) and not args else None
    if parts is not None and isinstance(model, nn.Module):
        arch, tag = parts
        _register(PREFIX + arch)
        mark_built(
            model, PREFIX + arch, {"tag": tag, "kwargs": data_kwargs(kwargs, (*_WEIGHTS_ONLY, *PLACEMENT))}
        )
    return model


def _rebuild(arch: str, config: dict[str, Any]) -> nn.Module:
    if set(config) != {"tag", "kwargs"}:
        raise BadConfig(f"a timm record's config holds 'tag' and 'kwargs', not {sorted(config)}")
    tag = config["tag"]
    if tag is not None and not (isinstance(tag, str) and _TAG.fullmatch(tag)):
        raise BadConfig(f"a timm pretrained tag is letters, digits and _, not {tag!r}")
    kwargs = checked_kwargs(config["kwargs"], _WEIGHTS_ONLY)
    model: nn.Module = _create(arch if tag is None else f"{arch}.{tag}", pretrained=False, **kwargs)
    return model


def _register(name: str) -> None:
    arch = name[len(PREFIX) :]
    if not is_registered_name(name):
        register_builder(name, functools.partial(_rebuild, arch), 1, library=LIBRARY)


def _by_name(name: str) -> None:
    if name.startswith(PREFIX) and _architecture(name[len(PREFIX) :]) == (name[len(PREFIX) :], None):
        _register(name)


add_finders(_by_name, lambda cls: None)
replace_everywhere("timm", {id(_create): (_create, create_model)})
