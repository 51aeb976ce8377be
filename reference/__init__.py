"""tmodel: a versioned, safe, compressed file format for PyTorch models and checkpoints.

The torch-free layers (errors, limits, digests, codecs, container, manifest, reader, writer) import without
torch; `save`, `load` and `open` need it and are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import TModelError
from .limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from .api import TModelFile, load, save
    from .api import open_file as open

__all__ = ["DEFAULT_LIMITS", "Limits", "TModelError", "TModelFile", "load", "open", "save"]
__version__ = "0.1.0"

_LAZY = {
    "save": "save",
    "load": "load",
    "load_into": "load_into",
    "open": "open_file",
    "TModelFile": "TModelFile",
    "LoadReport": "LoadReport",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import api

        return getattr(api, _LAZY[name])
    if name == "testing":
        import importlib

        return importlib.import_module(".testing", __name__)
    if name == "register":
        from .nn import builtins  # noqa: F401  (torch.nn's layers are registered before any user layer)
        from .nn.registry import register

        return register
    raise AttributeError(f"module 'tmodel' has no attribute {name!r}")
