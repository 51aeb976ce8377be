"""A look-alike of timm (see tests/lookalike/README.md)."""

__version__ = "0.0.lookalike"

from .models import create_model, is_model, list_models  # noqa: F401
