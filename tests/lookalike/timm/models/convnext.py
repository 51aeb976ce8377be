"""ConvNeXt-like: a partial as the norm layer, a class as the activation, every block built by its parent,
a layer-scale parameter and a buffer the constructor computes."""

from functools import partial

import torch
from torch import nn

from ._registry import register_model

#: the default number of classes of each pretrained tag (timm takes it from the tag's pretrained config)
TAGS = {None: 10, "in1k": 10, "in22k": 22}
PRETRAINED_LOADS = []  # what pretrained=True "downloaded": a rebuild must never add to it


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Mlp(nn.Module):
    def __init__(self, dim, hidden, act_layer=nn.GELU):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), act_layer(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, norm_layer, act_layer, ls_init_value=1e-6):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = norm_layer(dim)
        self.mlp = Mlp(dim, 4 * dim, act_layer=act_layer)
        self.gamma = nn.Parameter(ls_init_value * torch.ones(dim))

    def forward(self, x):
        y = self.norm(self.conv_dw(x)).permute(0, 2, 3, 1)
        return x + (self.mlp(y) * self.gamma).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, depths=(1, 1), dims=(8, 16), num_classes=10, act_layer=nn.GELU, norm_layer=None):
        super().__init__()
        norm_layer = norm_layer or partial(LayerNorm2d, eps=1e-6)
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), norm_layer(dims[0]))
        stages = []
        for i, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
            down = nn.Identity() if i == 0 else nn.Conv2d(dims[i - 1], dim, 2, stride=2)
            stages.append(nn.Sequential(down, *[Block(dim, norm_layer, act_layer) for _ in range(depth)]))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(dims[-1], num_classes)
        self.register_buffer("mean", torch.linspace(0.4, 0.5, 3).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return self.head(self.stages(self.stem(x - self.mean)).mean((2, 3)))


def _create(pretrained, tag, defaults, **kwargs):
    kwargs.setdefault("num_classes", TAGS[tag])
    model = ConvNeXt(**{**defaults, **kwargs})
    if pretrained:
        PRETRAINED_LOADS.append(tag)
        generator = torch.Generator().manual_seed(1234)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return model


@register_model
def convnext_lookalike(pretrained=False, tag=None, **kwargs):
    return _create(pretrained, tag, dict(depths=(1, 1), dims=(8, 16)), **kwargs)


@register_model
def convnext_lookalike_relu(pretrained=False, tag=None, **kwargs):
    return _create(pretrained, tag, dict(depths=(2,), dims=(8,), act_layer=nn.ReLU), **kwargs)
