from ._api import get_model, get_model_builder, list_models  # noqa: F401
from .detection import DetectorLookalike_Weights, detector_lookalike  # noqa: F401
from .resnet import ResNet, ResNetLookalike_Weights, resnet_lookalike  # noqa: F401
