"""ResNet-like: the block class and the norm layer class as arguments, blocks built by their parent, and a
builder whose weights set `num_classes` (through `_ovewrite_named_param`)."""

import torch
from torch import nn

from ._api import WeightsEnum, register_model
from ._utils import _ovewrite_named_param

DOWNLOADS = []  # weights "downloaded": a rebuild must never add to it


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None, norm_layer=None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, width=8, norm_layer=None):
        super().__init__()
        self._norm_layer = norm_layer or nn.BatchNorm2d
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 3, 2, 1, bias=False)
        self.bn1 = self._norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2 * width, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), self._norm_layer(planes)
            )
        layers = [block(self.inplanes, planes, stride, downsample, self._norm_layer)]
        self.inplanes = planes
        layers += [block(planes, planes, norm_layer=self._norm_layer) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _demo_state_dict():
    DOWNLOADS.append("resnet_lookalike")
    model = ResNet(BasicBlock, [1, 1], num_classes=7)
    generator = torch.Generator().manual_seed(99)
    return {
        k: (torch.rand(v.shape, generator=generator) + 0.5).to(v.dtype) for k, v in model.state_dict().items()
    }


class ResNetLookalike_Weights(WeightsEnum):
    DEMO = {"meta": {"categories": [f"c{i}" for i in range(7)]}, "state_dict": _demo_state_dict}  # noqa: RUF012


@register_model()
def resnet_lookalike(*, weights=None, progress=True, **kwargs):
    weights = ResNetLookalike_Weights.verify(weights)
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", len(weights.meta["categories"]))
    model = ResNet(BasicBlock, [1, 1], **kwargs)
    if weights is not None:
        model.load_state_dict(weights.get_state_dict(progress=progress))
    return model
