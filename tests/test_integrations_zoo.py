"""The timm and torchvision integrations in CI, over look-alikes of both libraries (tests/lookalike: the
real torchvision does not import beside CI's torch; `make zoo` runs the real ones). Models are saved in
one process and loaded in a fresh one that imports nothing but the integrations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "zoo_scripts"


def run(script: str, *args: str) -> Any:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE / "lookalike"), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    first, second = tmp_path_factory.mktemp("zoo1"), tmp_path_factory.mktemp("zoo2")
    report = run("save_lookalikes.py", str(first))
    assert run("save_lookalikes.py", str(second)) == report
    return first, second, report


TIMM = {"tmodel.libraries": {"timm": "0.0.lookalike"}}
TORCHVISION = {"tmodel.libraries": {"torchvision": "0.0.lookalike"}}
EXPECTED_RECORDS = {  # builder name and arguments: what every user's file of that model holds
    "timm_convnext": ("timm.convnext_lookalike", {"tag": None, "kwargs": {"dict": []}}, TIMM),
    "timm_tag": ("timm.convnext_lookalike", {"tag": "in22k", "kwargs": {"dict": []}}, TIMM),
    "timm_pretrained": (
        "timm.convnext_lookalike_relu",
        {"tag": None, "kwargs": {"dict": [["num_classes", 3]]}},
        TIMM,
    ),
    "tv_partial": (
        "torchvision.resnet_lookalike",
        {"norm_layer": {"partial": {"ref": "torch.nn.BatchNorm2d", "args": [], "kwargs": [["eps", 0.001]]}}},
        TORCHVISION,
    ),
    "tv_weights": ("torchvision.resnet_lookalike", {"num_classes": 7}, TORCHVISION),  # set by the weights
    "tv_get_model": ("torchvision.resnet_lookalike", {"width": 4}, TORCHVISION),
    "tv_detector_weights": ("torchvision.detector_lookalike", {"num_classes": 5}, TORCHVISION),
    "tv_detector_backbone": ("torchvision.detector_lookalike", {"num_classes": 4}, TORCHVISION),
}


def test_records_name_the_builder_and_its_arguments(saved: tuple[Path, Path, dict[str, Any]]) -> None:
    report = saved[2]
    assert set(report) == set(EXPECTED_RECORDS)
    for name, (type_, config, metadata) in EXPECTED_RECORDS.items():
        assert report[name] == {"type": type_, "version": 1, "config": config, "metadata": metadata}, name


def test_two_saves_of_the_same_model_are_identical_files(saved: tuple[Path, Path, dict[str, Any]]) -> None:
    first, second, _ = saved
    names = sorted(p.name for p in first.glob("*.tmodel"))
    assert len(names) == 2 * len(EXPECTED_RECORDS)
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_a_fresh_process_loads_every_model_bit_identical(saved: tuple[Path, Path, dict[str, Any]]) -> None:
    report = run("load_lookalikes.py", str(saved[0]))
    for name in EXPECTED_RECORDS:
        assert report[name] == {"equal": True, "class": True, "training": False}, name
    assert report["_pretrained_loads"] == []  # rebuilt with pretrained=False: the weights are the file's
    assert report["_downloads"] == []  # nor weights, nor weights_backbone
    assert report["_unknown_names"] == {  # the closed sets: registered architectures and builders only
        "timm.not_a_model": "UNREGISTERED_TYPE",
        "timm.convnext_lookalike.in22k": "UNREGISTERED_TYPE",
        "torchvision.get_model": "UNREGISTERED_TYPE",
        "torchvision.os": "UNREGISTERED_TYPE",
    }


def test_builder_records_edited_by_an_attacker_are_refused_at_once(tmp_path: Path) -> None:
    """Arguments from a file never choose a path, a download, a device or a dtype, and never make the
    rebuild allocate anything real before the dry run refuses it (SPEC.md Appendix A.4, A.7)."""
    report = run("hostile_lookalikes.py", str(tmp_path))
    expected = {
        "timm_checkpoint_path": "BAD_CONFIG",
        "timm_pretrained": "BAD_CONFIG",
        "timm_device": "BAD_CONFIG",
        "timm_hub_tag": "BAD_CONFIG",
        "timm_extra_key": "BAD_CONFIG",
        "timm_huge": "STATE_MISMATCH",  # 10**9 classes: shapes that are not the file's, on meta
        "tv_weights": "BAD_CONFIG",
        "tv_weights_backbone": "BAD_CONFIG",
        "tv_dtype": "BAD_CONFIG",
        "tv_huge": "STATE_MISMATCH",
    }
    assert {k: report[k]["code"] for k in expected} == expected
    assert all(report[k]["seconds"] < 1.0 for k in expected), report
    assert report["_pretrained_loads"] == [] and report["_downloads"] == []
