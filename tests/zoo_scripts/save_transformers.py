"""Save the tiny transformers models whole, a model folder of each kind, and the outputs a fresh process
compares: `python save_transformers.py OUT_DIR`; prints each file's first record and metadata as JSON."""

import json
import sys
from pathlib import Path

import torch
from hf_models import models, run, tied

import tmodel
from tmodel.integrations import transformers as integration

out = Path(sys.argv[1])
torch.manual_seed(0)
report = {}
made = models()
for name, model in made.items():
    model.eval()
    tmodel.save(model, out / f"{name}.tmodel")
    cls = f"{type(model).__module__}.{type(model).__qualname__}"
    tmodel.save({"y": run(name, model), "class": cls, "tied": tied(model)}, out / f"{name}.expected.tmodel")
    with tmodel.open(out / f"{name}.tmodel") as f:
        record = f.reader.manifest.to_wire()["modules"][0]
        config = record["config"]["config"]["object"]
        report[name] = {
            "type": record["type"],
            "version": record["version"],
            "config_type": config["type"],
            "has_transformers_version": "transformers_version" in json.dumps(config["data"]),
            "metadata": f.metadata,
        }
integration.save_pretrained(made["gpt2"], out / "gpt2_folder")  # config.json + model.tmodel, whole
made["llama"].config.architectures = ["LlamaForCausalLM"]  # what transformers' save_pretrained records
made["llama"].config.save_pretrained(out / "llama_folder")  # config.json + a state dict (as converted)
tmodel.save(made["llama"].state_dict(), out / "llama_folder" / "model.tmodel")
made["bert"].save_pretrained(out / "bert_hf")  # transformers' own folder: config.json + model.safetensors
report["_folders"] = sorted(p.name for p in (out / "gpt2_folder").iterdir())
print(json.dumps(report, sort_keys=True))
