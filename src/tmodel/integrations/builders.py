"""What the model-zoo integrations share: their builder functions replaced, wherever the library's loaded
modules hold them, by wrappers that mark each model they make with its builder's name and arguments."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

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
