"""A detector-like builder: `num_classes` settled by `_ovewrite_value_param`, and a `weights_backbone` that
downloads by default (a rebuild must pass None)."""

import torch
from torch import nn

from ._api import WeightsEnum, register_model
from ._utils import _ovewrite_value_param
from .resnet import DOWNLOADS, BasicBlock, ResNet


class Detector(nn.Module):
    def __init__(self, backbone, num_classes):
        super().__init__()
        self.backbone = backbone
        self.cls_head = nn.Linear(1000, num_classes)

    def forward(self, x):
        return self.cls_head(self.backbone(x))


class DetectorLookalike_Weights(WeightsEnum):
    COCO = {"meta": {"categories": [f"k{i}" for i in range(5)]}, "state_dict": lambda: None}  # noqa: RUF012


@register_model()
def detector_lookalike(
    *, weights=None, progress=True, num_classes=None, weights_backbone="IMAGENET", **kwargs
):
    weights = DetectorLookalike_Weights.verify(weights)
    if weights is not None:
        weights_backbone = None
        num_classes = _ovewrite_value_param("num_classes", num_classes, len(weights.meta["categories"]))
    elif num_classes is None:
        num_classes = 91
    backbone = ResNet(BasicBlock, [1, 1], **kwargs)
    if weights_backbone is not None:
        DOWNLOADS.append("backbone")
        with torch.no_grad():
            for p in backbone.parameters():
                p.fill_(0.01)
    return Detector(backbone, num_classes)
