"""How the CLI finds the layers a file names: modules given with `--import MODULE` (an integration, such as
`tmodel.integrations.transformers`, or the user's own), then every `tmodel.layers` entry point of the
installed packages; never through names read from a file."""

from __future__ import annotations

import argparse
import importlib
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
    """Import the modules named on the command line, then every `tmodel.layers` entry point."""
    importlib.import_module("tmodel.nn.builtins")
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise InvalidArgument(f"--import {name}: {exc}") from None
    for ep in metadata.entry_points(group=ENTRY_POINTS):
        ep.load()
