"""Load what save_lookalikes.py wrote, in a fresh process with nothing but the integrations imported:
`python load_lookalikes.py DIR`; prints, per model, whether outputs are bit-identical and classes equal."""

import json
import sys
from pathlib import Path

import torch
from zoo_common import layer_codes

import tmodel
import tmodel.integrations.timm
import tmodel.integrations.torchvision

import timm  # isort: skip
import torchvision  # isort: skip

folder = Path(sys.argv[1])
report = {}
for path in sorted(folder.glob("*.expected.tmodel")):
    name = path.name.removesuffix(".expected.tmodel")
    expected = tmodel.load(path)
    model = tmodel.load(folder / f"{name}.tmodel")
    with torch.no_grad():
        y = model(expected["x"])
    report[name] = {
        "equal": torch.equal(y, expected["y"]),
        "class": f"{type(model).__module__}.{type(model).__qualname__}" == expected["class"],
        "training": model.training,
    }
report["_unknown_names"] = layer_codes(
    ("timm.not_a_model", "timm.convnext_lookalike.in22k", "torchvision.get_model", "torchvision.os")
)
report["_pretrained_loads"] = timm.models.convnext.PRETRAINED_LOADS
report["_downloads"] = torchvision.models.resnet.DOWNLOADS
print(json.dumps(report, sort_keys=True))
