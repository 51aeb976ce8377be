"""What the model-zoo integrations share: their builder functions replaced, wherever the library's loaded
modules hold them, by wrappers that mark each model they make with its builder's name and arguments; and
the rule for arguments read from a file: none may say where tensors are made or where weights come from
(`device`, `dtype`, a path, a download), which the loader decides [BAD_CONFIG]."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ..errors import BadConfig

Builder = Callable[..., Any]


def replace_everywhere(package: str, wrappers: dict[int, tuple[Builder, Builder]]) -> None:
    """In every loaded module of `package`, replace each attribute that is an original builder
    (`wrappers`: id(original) -> (original, wrapper)) with its wrapper: the library's re-exports too."""
    for name, module in list(sys.modules.items()):
        if module is None or not (name == package or name.startswith(package + ".")):
            continue
        namespace = vars(module)
        for attr, value in list(namespace.items()):
            entry = wrappers.get(id(value))
            if entry is not None and entry[0] is value:
                namespace[attr] = entry[1]


def data_kwargs(kwargs: dict[str, Any], dropped: tuple[str, ...]) -> dict[str, Any]:
    """A builder's keyword arguments as a config: without the ones that only concern weights
    (`dropped`) and, as the libraries themselves do, without those left None."""
    return {k: v for k, v in kwargs.items() if v is not None and k not in dropped}


#: arguments a file may never pass to a builder: the loader places tensors (SPEC.md Appendix A.1)
PLACEMENT = ("device", "dtype", "factory_kwargs")


def checked_kwargs(kwargs: Any, refused: tuple[str, ...]) -> dict[str, Any]:
    """A builder's keyword arguments read from a file: a dict of argument names holding none of
    `refused` (the weights' sources) nor of `PLACEMENT` [BAD_CONFIG]."""
    if type(kwargs) is not dict or any(type(k) is not str for k in kwargs):
        raise BadConfig(f"a builder's arguments are a dict of argument names, not {type(kwargs).__name__}")
    bad = sorted(set(kwargs) & {*refused, *PLACEMENT})
    if bad:
        raise BadConfig(
            f"a builder's config may not hold {bad[0]!r}: the loader places tensors and the file holds the "
            "weights (SPEC.md Appendix A.7)"
        )
    return kwargs
