"""How the CLI finds the layers a file names: modules given with `--import MODULE` (an integration, such as
`tmodel.integrations.transformers`, the user's own module found from the current directory, or a path to a
`.py` file), then every `tmodel.layers` entry point of the installed packages; never through names read
from a file."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from importlib import metadata

from ..errors import InvalidArgument

ENTRY_POINTS = "tmodel.layers"


def add_import_option(parser: argparse.ArgumentParser) -> None:
    """The repeatable `--import MODULE` option of a command that rebuilds or migrates layers."""
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, to register its layers (repeatable)",
    )


def load_layers(modules: list[str]) -> None:
    """Import the modules named on the command line, then every `tmodel.layers` entry point. A module is
    found on `sys.path` with the current directory first (as alembic does), or given as a `.py` path."""
    importlib.import_module("tmodel.nn.builtins")
    if modules and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        try:
            _import(name)
        except ImportError as exc:
            raise InvalidArgument(f"--import {name}: {exc}") from None
    for ep in metadata.entry_points(group=ENTRY_POINTS):
        ep.load()


def _import(name: str) -> None:
    if not name.endswith(".py"):
        importlib.import_module(name)
        return
    path = os.path.abspath(name)
    module_name = os.path.splitext(os.path.basename(path))[0]
    if not os.path.isfile(path) or not module_name.isidentifier():
        raise ImportError(f"no Python file {path!r} (a .py file whose name is an identifier)")
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # so that its own imports, and pickled references, find it
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
