"""The README's custom-layer story runs as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tmodel.nn import registry

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
