"""Registrations of torch.nn's own layers under `torch.nn.<Name>`, version 1.

Rules: a layer's config is its constructor's arguments, read back from the attributes torch stores them
under; arguments torch does not store are left at their defaults, which is only correct where the state the
argument initialises is restored from the file anyway (PReLU's `init`, Embedding's `_weight`). Tensor-valued
arguments (loss weights) are restored as buffers, so their config value is None. `device` and `dtype` are
never config: tensors carry their own. Classes that hold code (callables) or are abstract stay unregistered,
so saving one fails with the unregistered-layer error.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from ..errors import BadConfig
from .references import register_function
from .registry import mark_unsupported, register_class

_SKIP = {"self", "device", "dtype", "factory_kwargs"}
#: Classes left unregistered on purpose: abstract bases, wrappers, lazy (uninitialised) modules, and
#: layers whose constructor takes code.
UNSUPPORTED: dict[str, str] = {
    "Module": "the abstract base class",
    "Container": "deprecated abstract container",
    "RNNBase": "abstract base of RNN/LSTM/GRU",
    "RNNCellBase": "abstract base of the cells",
    "DataParallel": "a wrapper: save its .module",
    "TripletMarginWithDistanceLoss": "its config is a Python callable",
    **{
        name: "uninitialised lazy module: run a forward pass first, it then becomes its eager class"
        for name in dir(nn)
        if name.startswith("Lazy")
    },
}


def _generic(
    cls: type[nn.Module], overrides: dict[str, Callable[[Any], Any]]
) -> Callable[[nn.Module], dict[str, Any]]:
    params = [
        p
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name not in _SKIP
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]

    def get_config(module: nn.Module) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for p in params:
            if p.name in overrides:
                config[p.name] = overrides[p.name](module)
                continue
            if p.name in module.__dict__ or hasattr(module, p.name):
                value = getattr(module, p.name)
                if p.name == "bias" and (value is None or isinstance(value, torch.Tensor)):
                    value = value is not None
                elif isinstance(value, torch.Tensor):
                    value = None  # restored as a buffer
                config[p.name] = value
            elif p.default is not inspect.Parameter.empty:
                config[p.name] = p.default
            else:
                raise BadConfig(f"{cls.__name__}: cannot read back constructor argument {p.name!r}")
        return config

    return get_config


def _activation(module: nn.Module) -> Any:
    act = module.activation
    if act is F.relu:
        return "relu"
    if act is F.gelu:
        return "gelu"
    if isinstance(act, nn.Module):
        return act
    raise BadConfig(
        f"{type(module).__name__}: activation {act!r} is code, not data; pass 'relu', 'gelu' or a module"
    )


def _layer_overrides() -> dict[str, Callable[[Any], Any]]:
    """Transformer encoder and decoder layers keep their arguments on their sublayers."""
    return {
        "d_model": lambda m: m.self_attn.embed_dim,
        "nhead": lambda m: m.self_attn.num_heads,
        "dim_feedforward": lambda m: m.linear1.out_features,
        "dropout": lambda m: m.dropout.p,
        "activation": _activation,
        "layer_norm_eps": lambda m: m.norm1.eps,
        "batch_first": lambda m: m.self_attn.batch_first,
        "bias": lambda m: m.linear1.bias is not None,
    }


_RNN_KEYS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional")

OVERRIDES: dict[type[nn.Module], dict[str, Callable[[Any], Any]]] = {
    nn.MultiheadAttention: {
        "bias": lambda m: m.in_proj_bias is not None,
        "add_bias_kv": lambda m: m.bias_k is not None,
    },
    nn.PairwiseDistance: {"p": lambda m: m.norm},
    nn.AdaptiveLogSoftmaxWithLoss: {"cutoffs": lambda m: list(m.cutoffs[:-1])},
    nn.TransformerEncoderLayer: _layer_overrides(),
    nn.TransformerDecoderLayer: _layer_overrides(),
    nn.TransformerEncoder: {"encoder_layer": lambda m: m.layers[0]},
    nn.TransformerDecoder: {"decoder_layer": lambda m: m.layers[0]},
}


def _lce_options(module: nn.Module) -> dict[str, Any] | None:
    options: Any = module.options
    if options is None:
        return None
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


_LCE: Any = getattr(nn, "LinearCrossEntropyLoss", None)
if _LCE is not None:
    # torch stores in_features and bias on the inner Linear, and options as a frozen dataclass of data
    OVERRIDES[_LCE] = {
        "in_features": lambda m: m.linear.in_features,
        "bias": lambda m: m.linear.bias is not None,
        "options": _lce_options,
    }


def _construct_lce(config: dict[str, Any]) -> nn.Module:
    options = config.get("options")
    if options is not None:
        if not isinstance(options, dict):
            raise BadConfig(f"LinearCrossEntropyLoss: options must be a dict of fields, not {options!r}")
        options = nn.LinearCrossEntropyOptions(**options)
    module: nn.Module = _LCE(**{**config, "options": options})
    return module


def _rnn_config(module: nn.Module) -> dict[str, Any]:
    config = {k: getattr(module, k) for k in _RNN_KEYS}
    if isinstance(module, nn.LSTM):
        config["proj_size"] = module.proj_size
    if isinstance(module, nn.RNN):
        config["nonlinearity"] = module.nonlinearity
    return config


def _transformer_config(module: nn.Module) -> dict[str, Any]:
    m: Any = module
    return {
        "d_model": m.d_model,
        "nhead": m.nhead,
        "batch_first": m.batch_first,
        "custom_encoder": m.encoder,
        "custom_decoder": m.decoder,
    }


def _construct_transformer(config: dict[str, Any]) -> nn.Module:
    """Build around placeholders, then attach the loaded encoder and decoder: the constructor re-initialises
    every parameter of the modules it is given (`_reset_parameters`), which would overwrite loaded weights."""
    encoder, decoder = config.get("custom_encoder"), config.get("custom_decoder")
    if not (isinstance(encoder, nn.Module) and isinstance(decoder, nn.Module)):
        raise BadConfig("Transformer: custom_encoder and custom_decoder must be modules")
    module = nn.Transformer(**{**config, "custom_encoder": nn.Identity(), "custom_decoder": nn.Identity()})
    module.encoder, module.decoder = encoder, decoder
    return module


def _append_parameter(module: nn.Module, kind: str, name: str, value: Any) -> None:
    plist: Any = module
    if kind == "parameter" and name not in module._parameters:
        if name != str(len(plist)):
            raise BadConfig(f"ParameterList entry {name!r} out of order")
        plist.append(value)
    else:
        setattr(module, name, value)


def _put_parameter(module: nn.Module, kind: str, name: str, value: Any) -> None:
    pdict: Any = module
    if kind == "parameter":
        pdict[name] = value
    else:
        setattr(module, name, value)


def _empty(cls: type[nn.Module]) -> Callable[[dict[str, Any]], nn.Module]:
    return lambda config: cls()


def _classes() -> list[type[nn.Module]]:
    found = {obj for obj in vars(nn).values() if isinstance(obj, type) and issubclass(obj, nn.Module)}
    return sorted(found | {NonDynamicallyQuantizableLinear}, key=lambda c: c.__name__)


def register_builtins() -> list[str]:
    """Register every supported torch.nn layer; returns the names registered."""
    names = []
    for cls in _classes():
        if cls.__name__ in UNSUPPORTED:
            mark_unsupported(cls, UNSUPPORTED[cls.__name__])
            continue
        name = f"torch.nn.{cls.__name__}"
        if cls in (nn.Sequential, nn.ModuleList, nn.ModuleDict):
            _register(cls, name, lambda m: {}, _empty(cls), adopts=True)
        elif cls is nn.ParameterList:
            _register(cls, name, lambda m: {}, _empty(cls), attach=_append_parameter, adopts=True)
        elif cls is nn.ParameterDict:
            _register(cls, name, lambda m: {}, _empty(cls), attach=_put_parameter, adopts=True)
        elif cls in (nn.RNN, nn.LSTM, nn.GRU):
            _register(cls, name, _rnn_config, _construct(cls))
        elif cls is nn.Transformer:
            _register(cls, name, _transformer_config, _construct_transformer)
        elif cls is _LCE:
            _register(cls, name, _generic(cls, OVERRIDES[cls]), _construct_lce)
        else:
            _register(cls, name, _generic(cls, OVERRIDES.get(cls, {})), _construct(cls))
        names.append(name)
    return names


def _register(
    cls: type[nn.Module],
    name: str,
    get_config: Callable[[nn.Module], dict[str, Any]],
    from_config: Callable[[dict[str, Any]], nn.Module],
    **options: Any,
) -> None:
    """A built-in layer's registration, version 1, its constructor refusing configs that place tensors."""
    register_class(
        cls, name, 1, get_config=get_config, from_config=_placed_by_the_loader(from_config), **options
    )


def _construct(cls: type[nn.Module]) -> Callable[[dict[str, Any]], nn.Module]:
    return lambda config: cls(**config)


def _placed_by_the_loader(
    from_config: Callable[[dict[str, Any]], nn.Module],
) -> Callable[[dict[str, Any]], nn.Module]:
    """A built-in layer's constructor, refusing a config that would choose where or how tensors are made
    (a file's `device` would override the meta-device dry run and `map_location`) [BAD_CONFIG]."""

    def construct(config: dict[str, Any]) -> nn.Module:
        placed = sorted((_SKIP - {"self"}) & set(config))
        if placed:
            raise BadConfig(
                f"a torch.nn layer's config may not hold {placed[0]!r}: the loader places tensors "
                "(SPEC.md Appendix A.1)"
            )
        return from_config(config)

    return construct


#: torch's own functions that configs commonly pass (activations and elementwise maps), as `torch.<name>`
TORCH_FUNCTIONS = (
    "relu", "relu_", "sigmoid", "tanh", "softmax", "log_softmax", "exp", "log", "sin", "cos", "abs", "neg",
    "sqrt", "rsqrt", "square", "erf", "clamp", "softplus", "selu", "celu", "rrelu", "hardshrink",
    "matmul", "mul", "add", "sub", "div", "maximum", "minimum", "sign", "floor", "ceil", "round",
    "layer_norm", "group_norm", "dropout", "flatten", "cat", "stack", "mean", "sum", "amax", "amin",
)  # fmt: skip


def register_functions() -> list[str]:
    """Register torch.nn.functional's public functions as `torch.nn.functional.<name>` and TORCH_FUNCTIONS,
    so configs can refer to them (`act=F.gelu`); returns the names registered."""
    functional = [
        (f"torch.nn.functional.{name}", obj)
        for name, obj in sorted(vars(F).items())
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isbuiltin(obj))
        and str(getattr(obj, "__module__", None) or "").startswith("torch")
    ]
    own = [(f"torch.{name}", getattr(torch, name)) for name in TORCH_FUNCTIONS if hasattr(torch, name)]
    for name, obj in functional + own:
        register_function(obj, name)
    return [name for name, _ in functional + own]


BUILTIN_NAMES = register_builtins()
FUNCTION_NAMES = register_functions()
