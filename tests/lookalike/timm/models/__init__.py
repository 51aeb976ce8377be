from . import convnext  # noqa: F401  (registers its models)
from ._factory import create_model  # noqa: F401
from ._registry import is_model, list_models, register_model  # noqa: F401
