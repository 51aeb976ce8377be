"""Constructing modules with their parameters on the meta device and their buffers real (as accelerate's
`init_empty_weights(include_buffers=False)`): rebuilding replaces every parameter by the file's tensor
(SPEC.md §5.7 step 4), so initialising the constructor's own parameters is wasted memory and time, while
buffers the file does not hold (a rotary `inv_freq`) must keep the values their constructor computes.

Rules: inside `meta_parameters()`, every parameter of exactly the class `nn.Parameter` that a module
registers in this thread (`register_parameter`, which attribute assignment calls) is replaced by a meta
`nn.Parameter` of the same shape, strides, dtype, `requires_grad` and instance attributes; subclasses of
`nn.Parameter` (whose constructors may take other arguments) and meta parameters are left as they are.
The constructor still allocates each parameter's memory for an instant (torch.empty, never written, so its
pages are not touched), and its initialisation runs on meta. Other threads are not affected: the global
registration hook of torch is installed while any thread is inside and removed when the last one leaves,
even on error. Initialising a meta tensor in place (`nn.init.*`, `Tensor.normal_` and the like) returns the
tensor unchanged, which is all it does on meta, without running torch's Python meta kernels
(`skip_meta_init`; the dry run's op budget counts such calls all the same).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_parameter_registration_hook
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

_INIT_NAMES = frozenset(
    [
        "uniform_",
        "normal_",
        "trunc_normal_",
        "constant_",
        "ones_",
        "zeros_",
        "eye_",
        "dirac_",
        "xavier_uniform_",
        "xavier_normal_",
        "kaiming_uniform_",
        "kaiming_normal_",
        "orthogonal_",
        "sparse_",
    ]
)
_TENSOR_INIT = "normal_ uniform_ zero_ fill_ random_ bernoulli_ exponential_ log_normal_ cauchy_ geometric_"
#: in-place initialisers: each returns its tensor argument, and on a meta tensor changes nothing
_INIT: frozenset[Any] = frozenset(
    [getattr(nn.init, n) for n in _INIT_NAMES] + [getattr(torch.Tensor, n) for n in _TENSOR_INIT.split()]
)
#: modules whose functions of those names are the same initialisers (transformers swaps torch.nn.init's
#: for guarded ones of its own while it initialises a model)
_INIT_MODULES = ("torch.nn.init", "transformers.initialization")
_lock = threading.Lock()
_local = threading.local()
_handle: RemovableHandle | None = None  # the hook, while any thread is inside meta_parameters()
_users = 0


def _on_meta(module: nn.Module, name: str, param: nn.Parameter) -> Any:
    """The registration hook: a meta twin of `param` inside `meta_parameters()` in this thread."""
    if not getattr(_local, "depth", 0) or type(param) is not nn.Parameter or param.device.type == "meta":
        return None
    twin = nn.Parameter(torch.empty_like(param, device="meta"), requires_grad=param.requires_grad)
    twin.__dict__.update(param.__dict__)
    return twin


@contextmanager
def meta_parameters() -> Iterator[None]:
    """Parameters registered in this thread, inside, are created on the meta device (see the module)."""
    global _handle, _users
    with _lock:
        if _handle is None:
            _handle = register_module_parameter_registration_hook(_on_meta)
        _users += 1
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        with _lock:
            _users -= 1
            if _users == 0 and _handle is not None:
                _handle.remove()
                _handle = None


def meta_init(func: Any, args: Sequence[Any], kwargs: dict[str, Any] | None) -> torch.Tensor | None:
    """The tensor an in-place initialiser called on a meta tensor returns (itself), or None for any
    other call."""
    if func not in _INIT and (
        getattr(func, "__module__", None) not in _INIT_MODULES
        or getattr(func, "__name__", None) not in _INIT_NAMES
    ):
        return None
    target = args[0] if args else (kwargs or {}).get("tensor")
    return target if isinstance(target, torch.Tensor) and target.is_meta else None


class SkipMetaInit(TorchFunctionMode):
    """In-place initialisers of meta tensors return at once (see the module)."""

    def __torch_function__(
        self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        done = meta_init(func, args, kwargs)
        return done if done is not None else func(*args, **(kwargs or {}))
