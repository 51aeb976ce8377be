"""The README's custom-layer story runs as written."""

from __future__ import annotations

import os
import re
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


def test_library_classes_story_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second example: a library model saved whole from a root and a config-object registration."""
    pytest.importorskip("transformers")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text().split("## Your own layers")[1], re.S)
    block = blocks[1]
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
