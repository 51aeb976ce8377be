"""A look-alike of torchvision (see tests/lookalike/README.md)."""

__version__ = "0.0.lookalike"

from . import models  # noqa: F401
