"""The README's custom-layer story runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tmodel.nn import references, registry

README = Path(__file__).resolve().parents[1] / "README.md"


def test_custom_layer_story_runs_and_is_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    match = re.search(r"## Your own layers\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert match is not None
    block = match.group(1)
    assert len([line for line in block.splitlines() if line.strip()]) <= 15
    monkeypatch.chdir(tmp_path)
    try:
        namespace: dict[str, object] = {}
        exec(compile(block, "README.md", "exec"), namespace)
        assert os.path.exists("model.tmodel")
        assert type(namespace["model"]).__name__ == "Sequential"
    finally:
        registry.unregister("acme.Gate")


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text().split("## Your own layers")[1], re.S)


def test_integration_story_runs_in_a_fresh_process(tmp_path: Path) -> None:
    """The second example, in its own process (importing an integration registers for the whole process)."""
    pytest.importorskip("transformers")
    checks = (
        "assert type(back) is type(model)\n"
        "assert back.lm_head.weight is back.transformer.wte.weight\n"
        "assert sorted(os.listdir('gpt2')) == ['config.json', 'generation_config.json', 'model.tmodel']\n"
        "assert tmodel.open('gpt2.tmodel').metadata == "
        "{'tmodel.libraries': {'transformers': transformers.__version__}}\n"
    )
    code = "import os\n" + _blocks()[1] + checks
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_library_classes_story_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The third example: a library model saved whole from a root and a config-object registration."""
    pytest.importorskip("transformers")
    block = _blocks()[2]
    monkeypatch.chdir(tmp_path)
    try:
        namespace: dict[str, object] = {}
        exec(compile(block, "README.md", "exec"), namespace)
        back, model = namespace["back"], namespace["model"]
        assert type(back) is type(model)
        assert back.lm_head.weight is back.transformer.wte.weight  # type: ignore[attr-defined]
    finally:
        registry.unregister("hf.GPT2LMHeadModel")
        references.unregister_reference("hf.GPT2Config")
        references.unregister_reference("acme.expit")


def test_migration_story_resumes_training_in_a_fresh_process(tmp_path: Path) -> None:
    """The "Writing a migration" story runs as written: v1 trained and saved, v2 resumes from it."""
    text = README.read_text().split("### A story end to end")[1]
    block = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    done = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run.tmodel").exists()


def test_remote_files_story_runs() -> None:
    """The "Remote files" example, over memory:// (no network), as written."""
    block = re.findall(r"```python\n(.*?)```", README.read_text().split("## Remote files")[1], re.S)[0]
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    import fsspec

    fs = fsspec.filesystem("memory")
    assert fs.ls("/models", detail=False) == ["/models/net.tmodel"]
    fs.rm("/models/net.tmodel")


def _section_block(title: str) -> str:
    return re.findall(r"```python\n(.*?)```", README.read_text().split(f"## {title}\n")[1], re.S)[0]


def test_sharding_story_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The "Sharding" example as written: four shards and an index, then a Hugging Face set beside them."""
    namespace: dict[str, object] = {}
    exec(compile(_section_block("Sharding"), "README.md", "exec"), namespace)
    folder = str(namespace["folder"])
    shards = [f"model-0000{k}-of-00004.tmodel" for k in range(1, 5)]
    assert capsys.readouterr().out == repr([*shards, "model.tmodel"]) + "\n"
    hf = sorted(n for n in os.listdir(folder) if "safetensors" in n)
    assert hf == [
        *(f"model-0000{k}-of-00004.safetensors" for k in range(1, 5)),
        "model.safetensors.index.json",
    ]


def test_dcp_story_runs() -> None:
    """The "Distributed checkpoints (DCP)" example as written, in one process (no_dist)."""
    namespace: dict[str, object] = {}
    exec(compile(_section_block("Distributed checkpoints (DCP)"), "README.md", "exec"), namespace)
    assert sorted(os.listdir(str(namespace["folder"]))) == [".metadata.tmodel", "__0_0.tmodel"]
