"""tmodel: a versioned, safe, compressed file format for PyTorch models and checkpoints.

The torch-free layers (errors, limits, digests, codecs, container, manifest, reader, writer) import without
torch; everything that needs torch is imported on first use.
"""

from __future__ import annotations

import importlib
import types
from typing import TYPE_CHECKING, Any

from .errors import TModelError
from .limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from . import testing
    from .api import LoadReport, TModelFile, load, load_bytes, load_into, save, save_bytes
    from .api import open_file as open
    from .archive.encryption import Passphrase
    from .encrypt import decrypt_file, encrypt_file
    from .interop.convert import convert
    from .nn.checkpoint_steps import checkpoint_migration, register_checkpoint
    from .nn.references import register_function, register_value_type
    from .nn.registry import register, register_class
    from .nn.steps import migration
    from .resume import load_checkpoint
    from .rewrite import migrate_file
    from .sign import keygen, sign_file, signatures
    from .training import RNGState, rng_state

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "LoadReport",
    "Passphrase",
    "RNGState",
    "TModelError",
    "TModelFile",
    "checkpoint_migration",
    "convert",
    "decrypt_file",
    "encrypt_file",
    "keygen",
    "load",
    "load_bytes",
    "load_checkpoint",
    "load_into",
    "migrate_file",
    "migration",
    "open",
    "register",
    "register_checkpoint",
    "register_class",
    "register_function",
    "register_value_type",
    "rng_state",
    "save",
    "save_bytes",
    "sign_file",
    "signatures",
    "testing",
]
__version__ = "0.1.0"

#: public name -> (module, attribute); None: the module itself
_LAZY: dict[str, tuple[str, str | None]] = {
    "save": (".api", "save"),
    "save_bytes": (".api", "save_bytes"),
    "load": (".api", "load"),
    "load_bytes": (".api", "load_bytes"),
    "load_into": (".api", "load_into"),
    "open": (".api", "open_file"),
    "TModelFile": (".api", "TModelFile"),
    "LoadReport": (".api", "LoadReport"),
    "register": (".nn.registry", "register"),
    "register_class": (".nn.registry", "register_class"),
    "register_function": (".nn.references", "register_function"),
    "register_value_type": (".nn.references", "register_value_type"),
    "migration": (".nn.steps", "migration"),
    "register_checkpoint": (".nn.checkpoint_steps", "register_checkpoint"),
    "checkpoint_migration": (".nn.checkpoint_steps", "checkpoint_migration"),
    "migrate_file": (".rewrite", "migrate_file"),
    "sign_file": (".sign", "sign_file"),
    "signatures": (".sign", "signatures"),
    "keygen": (".sign", "keygen"),
    "encrypt_file": (".encrypt", "encrypt_file"),
    "decrypt_file": (".encrypt", "decrypt_file"),
    "convert": (".interop.convert", "convert"),
    "Passphrase": (".archive.encryption", "Passphrase"),
    "load_checkpoint": (".resume", "load_checkpoint"),
    "rng_state": (".training", "rng_state"),
    "RNGState": (".training", "RNGState"),
    "testing": (".testing", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tmodel' has no attribute {name!r}")
    importlib.import_module(".nn.builtins", __name__)  # torch.nn's layers are registered before any other
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name, __name__)
    return module if attr is None else getattr(module, attr)


def __dir__() -> list[str]:
    """The public API, lazy names included (for tab completion and `dir(tmodel)`), the submodules loaded
    so far and the module's dunders; not the names this file imports for itself."""
    own = {
        name
        for name, value in globals().items()
        if name.startswith("__")
        or (isinstance(value, types.ModuleType) and value.__name__.startswith(__name__ + "."))
    }
    return sorted(own | set(__all__))
