"""Save the look-alike zoo (tests/lookalike) whole, with the inputs and outputs a fresh process compares:
`python save_lookalikes.py OUT_DIR`; prints each file's first record and metadata as JSON."""

import functools
import json
import sys
from pathlib import Path

import torch
from torch import nn

import tmodel
import tmodel.integrations.timm
import tmodel.integrations.torchvision

import timm  # isort: skip
import torchvision  # isort: skip

out = Path(sys.argv[1])
torch.manual_seed(0)
tv = torchvision.models
models = {
    "timm_convnext": lambda: timm.create_model("convnext_lookalike"),
    "timm_tag": lambda: timm.create_model("convnext_lookalike.in22k", drop_rate=None),
    "timm_pretrained": lambda: timm.create_model("convnext_lookalike_relu", pretrained=True, num_classes=3),
    "tv_partial": lambda: tv.resnet_lookalike(norm_layer=functools.partial(nn.BatchNorm2d, eps=1e-3)),
    "tv_weights": lambda: tv.resnet_lookalike(weights=tv.ResNetLookalike_Weights.DEMO),
    "tv_get_model": lambda: tv.get_model("resnet_lookalike", width=4),
    "tv_detector_weights": lambda: tv.detector_lookalike(weights=tv.DetectorLookalike_Weights.COCO),
    "tv_detector_backbone": lambda: tv.detector_lookalike(num_classes=4),
}
x = torch.randn(2, 3, 32, 32)
report = {}
for name, make in models.items():
    model = make().eval()
    with torch.no_grad():
        y = model(x)
    tmodel.save(model, out / f"{name}.tmodel")
    cls = f"{type(model).__module__}.{type(model).__qualname__}"
    tmodel.save({"x": x, "y": y, "class": cls}, out / f"{name}.expected.tmodel")
    with tmodel.open(out / f"{name}.tmodel") as f:
        record = f.reader.manifest.to_wire()["modules"][0]
        report[name] = {
            "type": record["type"],
            "version": record["version"],
            "config": record["config"],
            "metadata": f.metadata,
        }
print(json.dumps(report, sort_keys=True))
