"""The ten real models of issue 14 saved whole and loaded back in a fresh process (`make zoo`, run by hand:
it needs torchvision and timm, which need `torch==2.14.1 torchvision==0.29.1`; see constraints-zoo.txt).

`python benchmarks/zoo.py` saves torchvision resnet18, mobilenet_v3_small, vit_b_16; timm resnet18,
convnext_atto, vit_tiny_patch16_224; transformers GPT2LMHeadModel, BertModel, LlamaForCausalLM,
T5ForConditionalGeneration (tiny random-init configs) in one process, each using nothing but its
integration's import line, then loads every file in a second process that imports only the three
integrations, and prints per model: record type, bytes, save and load seconds, bit-identical outputs, the
same class, tied weights still tied.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn


def _families() -> dict[str, tuple[Any, Any]]:
    """name -> (make the model, make its input)."""
    import timm
    import torchvision
    import transformers as hf

    image = lambda: torch.randn(1, 3, 224, 224)  # noqa: E731
    ids = lambda: torch.arange(1, 9).reshape(1, 8)  # noqa: E731
    small = dict(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=37, vocab_size=99
    )
    return {
        "torchvision resnet18": (lambda: torchvision.models.resnet18(), image),
        "torchvision mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(), image),
        "torchvision vit_b_16": (lambda: torchvision.models.vit_b_16(), image),
        "timm resnet18": (lambda: timm.create_model("resnet18"), image),
        "timm convnext_atto": (lambda: timm.create_model("convnext_atto"), image),
        "timm vit_tiny_patch16_224": (lambda: timm.create_model("vit_tiny_patch16_224"), image),
        "transformers GPT2LMHeadModel": (
            lambda: hf.GPT2LMHeadModel(hf.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=99)),
            ids,
        ),
        "transformers BertModel": (lambda: hf.BertModel(hf.BertConfig(**small)), ids),
        "transformers LlamaForCausalLM": (
            lambda: hf.LlamaForCausalLM(hf.LlamaConfig(**small, num_key_value_heads=1)),
            ids,
        ),
        "transformers T5ForConditionalGeneration": (
            lambda: hf.T5ForConditionalGeneration(
                hf.T5Config(num_layers=2, d_model=32, num_heads=2, d_kv=8, d_ff=37, vocab_size=99)
            ),
            ids,
        ),
    }


def _output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        if "T5" in type(model).__name__:
            return model(input_ids=x, decoder_input_ids=x).logits
        out = model(x)
    if isinstance(out, torch.Tensor):
        return out
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def _tied(model: nn.Module) -> bool | None:
    head = getattr(model, "lm_head", None)
    return None if head is None else head.weight is model.get_input_embeddings().weight


def _file(folder: Path, name: str, kind: str = "") -> Path:
    return folder / (name.replace(" ", "_") + kind + ".tmodel")


def save(folder: Path) -> dict[str, Any]:
    import tmodel
    import tmodel.integrations.timm
    import tmodel.integrations.torchvision
    import tmodel.integrations.transformers

    torch.manual_seed(0)
    report = {}
    for name, (make, make_input) in _families().items():
        model, x = make().eval(), make_input()
        start = time.perf_counter()
        tmodel.save(model, _file(folder, name))
        seconds = time.perf_counter() - start
        cls = f"{type(model).__module__}.{type(model).__qualname__}"
        tmodel.save(
            {"x": x, "y": _output(model, x), "class": cls, "tied": _tied(model)}, _file(folder, name, ".in")
        )
        with tmodel.open(_file(folder, name)) as f:
            report[name] = {
                "type": f.reader.manifest.modules[0].type,
                "bytes": _file(folder, name).stat().st_size,
                "save_s": round(seconds, 3),
                "libraries": f.metadata.get("tmodel.libraries"),
            }
    return report


def load(folder: Path) -> dict[str, Any]:
    import tmodel
    import tmodel.integrations.timm
    import tmodel.integrations.torchvision
    import tmodel.integrations.transformers

    report = {}
    for name in _families():
        expected = tmodel.load(_file(folder, name, ".in"))
        start = time.perf_counter()
        model = tmodel.load(_file(folder, name))
        seconds = time.perf_counter() - start
        report[name] = {
            "load_s": round(seconds, 3),
            "identical": torch.equal(_output(model, expected["x"]), expected["y"]),
            "same_class": f"{type(model).__module__}.{type(model).__qualname__}" == expected["class"],
            "ties_kept": _tied(model) == expected["tied"],
        }
    return report


def main() -> int:
    if len(sys.argv) == 3:  # a child process: save or load
        result = (save if sys.argv[1] == "save" else load)(Path(sys.argv[2]))
        print(json.dumps(result))
        return 0
    import timm
    import torchvision
    import transformers

    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}, "
        f"transformers {transformers.__version__}"
    )
    with tempfile.TemporaryDirectory() as d:
        runs = {}
        for step in ("save", "load"):  # each in its own fresh process
            done = subprocess.run([sys.executable, __file__, step, d], capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr[-4000:])
                return 1
            runs[step] = json.loads(done.stdout.splitlines()[-1])
    ok = True
    print(f"{'model':42} {'record type':41} {'bytes':>10} {'save s':>7} {'load s':>7}  identical class ties")
    for name, saved in runs["save"].items():
        loaded = runs["load"][name]
        good = loaded["identical"] and loaded["same_class"] and loaded["ties_kept"]
        ok = ok and good
        print(
            f"{name:42} {saved['type']:41} {saved['bytes']:>10,} {saved['save_s']:>7.3f}"
            f" {loaded['load_s']:>7.3f}  {loaded['identical']!s:9} {loaded['same_class']!s:5}"
            f" {loaded['ties_kept']!s:5}"
        )
    print("ALL TEN PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
