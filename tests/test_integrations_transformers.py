"""The transformers integration on the four tiny models of issue 14: saved whole in one process, loaded in
a fresh one that imports nothing but `tmodel.integrations.transformers`; model folders both ways."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")  # a dev dependency: installed in CI

SCRIPTS = Path(__file__).resolve().parent / "zoo_scripts"
MODELS = {
    "gpt2": ("transformers.GPT2LMHeadModel", "transformers.GPT2Config"),
    "bert": ("transformers.BertModel", "transformers.BertConfig"),
    "llama": ("transformers.LlamaForCausalLM", "transformers.LlamaConfig"),
    "t5": ("transformers.T5ForConditionalGeneration", "transformers.T5Config"),
}


def run(script: str, *args: str) -> Any:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("hf")
    return out, run("save_transformers.py", str(out))


def test_records_use_stable_names_and_the_library_version_is_metadata(
    saved: tuple[Path, dict[str, Any]],
) -> None:
    import transformers

    report = saved[1]
    for name, (model_type, config_type) in MODELS.items():
        assert report[name] == {
            "type": model_type,
            "version": 1,
            "config_type": config_type,
            "has_transformers_version": False,  # the config data is the same for every version's user
            "metadata": {"tmodel.libraries": {"transformers": transformers.__version__}},
        }, name
    assert report["_folders"] == ["config.json", "generation_config.json", "model.tmodel"]


def test_a_fresh_process_loads_every_model_and_both_folders(saved: tuple[Path, dict[str, Any]]) -> None:
    from tmodel.cli.main import main

    assert main(["convert", str(saved[0] / "bert_hf"), str(saved[0] / "bert_tm")]) == 0
    assert sorted(p.name for p in (saved[0] / "bert_tm").iterdir()) == ["config.json", "model.tmodel"]
    report = run("load_transformers.py", str(saved[0]))
    assert report["bert_converted"] == {"equal": True, "class": True, "tied": True, "training": False}
    same = {"equal": True, "class": True, "tied": True, "training": False}
    for name in [*MODELS, "gpt2_folder"]:
        assert report[name] == same, name
    assert report["llama_folder"] == {**same, "on_meta": False}  # a state dict under config.json
    assert report["_fetch_turned_off"] is True  # a config from a file never makes a constructor download
    assert report["_list_data"] == "BAD_CONFIG"
    assert report["_unknown_names"] == {  # the closed set: exported PreTrainedModel classes only
        "transformers.GPT2Block": "UNREGISTERED_TYPE",
        "transformers.Trainer": "UNREGISTERED_TYPE",
        "transformers.GPT2Config": "UNREGISTERED_TYPE",
        "transformers.logging": "UNREGISTERED_TYPE",
        "transformers.": "UNREGISTERED_TYPE",
    }
