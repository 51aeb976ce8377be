"""transformers' models saved whole (SPEC.md Appendix A.7): importing this module registers every
`PreTrainedModel` class of transformers' auto classes as the layer `transformers.<ClassName>`, its config
`{"config": model.config}`, and every `PretrainedConfig` class as the value type `transformers.<ClassName>`,
stored as its `to_diff_dict()` (with its attention implementation) minus `transformers_version`, which the
file's metadata holds instead. The names are a closed set, the model and config classes transformers'
auto classes list; each is registered on first use, for saving and loading alike. `save_pretrained` /
`from_pretrained` write and read a model folder holding `model.tmodel`.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import transformers as hf
from torch import nn

from .. import api
from ..errors import BadConfig, BadSourceFile, InvalidArgument
from ..nn.placement import SkipMetaInit, meta_parameters
from ..nn.references import register_value_type
from ..nn.registry import add_finders, register_class

PREFIX = "transformers."
LIBRARY = ("transformers", hf.__version__)
#: the file of a model folder that holds the model (beside transformers' `config.json`)
MODEL_FILE = "model.tmodel"
_VERSION_KEY = "transformers_version"
_ATTENTION = "attn_implementation"


@functools.cache
def _closed_set() -> frozenset[str]:
    """The names a file may select from: the model and config classes transformers' auto classes list
    (its own registry of architectures, names only: nothing is imported to read it) that it exports."""
    from transformers.models.auto import configuration_auto, modeling_auto

    names: set[str] = set(getattr(configuration_auto, "CONFIG_MAPPING_NAMES").values())  # noqa: B009
    for attr in dir(modeling_auto):
        if attr.endswith("_MAPPING_NAMES"):
            for value in getattr(modeling_auto, attr).values():
                names.update(value if isinstance(value, (tuple, list)) else [value])
    return frozenset(n for n in names if isinstance(n, str)) & frozenset(dir(hf))


def _exported(name: str) -> Any:
    """The model or config class transformers exports as `name`, if it is one of the closed set; else None
    (or if its optional dependencies are missing)."""
    if name not in _closed_set():
        return None
    try:
        return getattr(hf, name)
    except Exception:  # an export whose optional dependency is not installed
        return None


def _register(cls: Any) -> None:
    """Register one of transformers' model or config classes under its stable name, if it is one."""
    if not isinstance(cls, type) or _exported(cls.__name__) is not cls:
        return
    name = PREFIX + cls.__name__
    try:
        if issubclass(cls, hf.PreTrainedModel):
            register_class(
                cls,
                name,
                1,
                get_config=_model_config,
                from_config=lambda c: cls(c["config"]),
                library=LIBRARY,
            )
        elif issubclass(cls, hf.PretrainedConfig):
            register_value_type(cls, name, to_data=config_data, from_data=functools.partial(_config, cls))
    except InvalidArgument:
        pass  # the program registered the class itself, under a name of its own: that one stands


def _model_config(model: nn.Module) -> dict[str, Any]:
    return {"config": model.config}


def config_data(config: Any) -> dict[str, Any]:
    """A transformers config as the data a file stores: what differs from its class's defaults."""
    data: dict[str, Any] = config.to_diff_dict()
    data.pop(_VERSION_KEY, None)
    attention = getattr(config, "_attn_implementation_internal", None)
    if isinstance(attention, str):
        data[_ATTENTION] = attention
    return data


#: config fields that make a model's constructor fetch weights (a pretrained backbone): off on load, as
#: the file holds every weight
_FETCHES = ("use_pretrained_backbone",)


def _config(cls: Any, data: Any) -> Any:
    """A config class's instance from the data a file stores: a dict of field names, nothing fetched."""
    if type(data) is not dict or any(type(k) is not str for k in data):
        raise BadConfig(f"{cls.__name__}: a config's data is a dict of field names")
    return cls.from_dict({**data, **{k: False for k in _FETCHES if data.get(k)}})


def _by_name(name: str) -> None:
    if name.startswith(PREFIX):
        _register(_exported(name[len(PREFIX) :]))


def _by_class(cls: type) -> None:
    if cls.__module__.partition(".")[0] == "transformers":
        _register(cls)


add_finders(_by_name, _by_class)


# -- model folders ---------------------------------------------------------------------------------------
def save_pretrained(model: nn.Module, folder: str | os.PathLike[str], **options: Any) -> None:
    """Write a model folder: transformers' `config.json` (and `generation_config.json`) beside
    `model.tmodel`, the whole model; `options` are `tmodel.save`'s."""
    if not isinstance(model, hf.PreTrainedModel):
        raise InvalidArgument(f"save_pretrained takes a transformers PreTrainedModel, not {type(model)!r}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    model.config.architectures = [type(model).__name__]  # as transformers' own save_pretrained records
    model.config.save_pretrained(out)
    generation = getattr(model, "generation_config", None)
    if generation is not None and model.can_generate():
        generation.save_pretrained(out)
    api.save(model, out / MODEL_FILE, **options)


def from_pretrained(folder: str | os.PathLike[str], **options: Any) -> nn.Module:
    """Load a model folder's `model.tmodel`: a whole model as saved, or a state dict (e.g. converted
    from `model.safetensors`) loaded into the class `config.json` names, in eval mode; `options` are
    `tmodel.load`'s (`tmodel.load_into`'s for a state dict)."""
    path = Path(folder) / MODEL_FILE
    with api.open_file(path) as f:
        whole = bool(f.reader.manifest.modules)
    if whole:
        model = api.load(path, **options)
        if not isinstance(model, hf.PreTrainedModel):
            raise BadSourceFile(f"{path}: holds a {type(model).__name__}, not a transformers model")
        return model
    model = _from_config_file(Path(folder))
    api.load_into(model, path, assign=True, **options)
    return model.eval()  # as transformers' from_pretrained returns it


def _from_config_file(folder: Path) -> nn.Module:
    """The model `config.json` describes, built with its parameters on the meta device (buffers real)."""
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        architectures = raw["architectures"]
        model_type = raw["model_type"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadSourceFile(f"{folder / 'config.json'}: not a transformers model config: {exc!r}") from None
    names = architectures if isinstance(architectures, list) else []
    cls = _exported(names[0]) if names and isinstance(names[0], str) else None
    if not (isinstance(cls, type) and issubclass(cls, hf.PreTrainedModel)):
        raise BadSourceFile(f"{folder / 'config.json'}: architectures {names!r} names no transformers model")
    config_cls = cls.config_class
    if config_cls is None or getattr(config_cls, "model_type", model_type) != model_type:
        raise BadSourceFile(f"{folder / 'config.json'}: model_type {model_type!r} is not {cls.__name__}'s")
    config = config_cls.from_dict({k: v for k, v in raw.items() if k != _VERSION_KEY})
    with meta_parameters(), SkipMetaInit():
        model: nn.Module = cls(config)
    return model
