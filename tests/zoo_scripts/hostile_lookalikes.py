"""Files whose builder records were edited as an attacker would, loaded with the look-alike integrations:
`python hostile_lookalikes.py DIR`; prints per case the error code, the seconds it took and whether any
weights were fetched."""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: fuzz_mutators
import fuzz_mutators as fm
import timm
import torchvision

import tmodel
import tmodel.integrations.timm
import tmodel.integrations.torchvision
from tmodel.errors import TModelError

folder = Path(sys.argv[1])
timm_file, tv_file = folder / "timm.tmodel", folder / "tv.tmodel"
tmodel.save(timm.create_model("convnext_lookalike"), timm_file)
tmodel.save(torchvision.models.resnet_lookalike(), tv_file)


def edited(source: Path, name: str, config: dict) -> Path:
    parts = fm.split(source.read_bytes())
    region, wire = fm.layout(parts)
    wire["modules"][0]["config"] = config
    out = folder / f"{name}.tmodel"
    out.write_bytes(fm.sign(parts.header, region, fm.encode(wire), parts.digest_name))
    return out


def kw(**kwargs: object) -> dict:
    return {"dict": [[k, v] for k, v in kwargs.items()]}


CASES = {
    "timm_checkpoint_path": (timm_file, {"tag": None, "kwargs": kw(checkpoint_path="/etc/passwd")}),
    "timm_pretrained": (timm_file, {"tag": None, "kwargs": kw(pretrained=True)}),
    "timm_device": (timm_file, {"tag": None, "kwargs": kw(device="cpu")}),
    "timm_hub_tag": (timm_file, {"tag": "x:hf-hub:evil/model", "kwargs": kw()}),
    "timm_extra_key": (timm_file, {"tag": None, "kwargs": kw(), "url": "http://x"}),
    "timm_huge": (timm_file, {"tag": None, "kwargs": kw(num_classes=10**9)}),
    "tv_weights": (tv_file, {"weights": "DEMO"}),
    "tv_weights_backbone": (tv_file, {"weights_backbone": "IMAGENET"}),
    "tv_dtype": (tv_file, {"dtype": {"dtype": "float64"}}),
    "tv_huge": (tv_file, {"width": 10**6}),
}
report = {}
for name, (source, config) in CASES.items():
    path = edited(source, name, config)
    began = time.perf_counter()
    try:
        tmodel.load(path)
        code = "loaded"
    except TModelError as exc:
        code = exc.code
    report[name] = {"code": code, "seconds": time.perf_counter() - began}
report["_pretrained_loads"] = timm.models.convnext.PRETRAINED_LOADS
report["_downloads"] = torchvision.models.resnet.DOWNLOADS
print(json.dumps(report))
