"""Load what save_transformers.py wrote in a fresh process importing nothing but the integration:
`python load_transformers.py DIR`; prints per model whether outputs are bit-identical, classes equal and
ties kept, the same for both model folders, and the codes of names outside the closed set."""

import json
import sys
from pathlib import Path

import torch
from hf_models import run, tied
from zoo_common import layer_codes

import tmodel
from tmodel.errors import TModelError
from tmodel.integrations import transformers as integration

folder = Path(sys.argv[1])
report = {}


def check(name: str, model: torch.nn.Module) -> dict:
    expected = tmodel.load(folder / f"{name}.expected.tmodel")
    return {
        "equal": torch.equal(run(name, model), expected["y"]),
        "class": f"{type(model).__module__}.{type(model).__qualname__}" == expected["class"],
        "tied": tied(model) == expected["tied"],
        "training": model.training,
    }


for name in ("gpt2", "bert", "llama", "t5"):
    report[name] = check(name, tmodel.load(folder / f"{name}.tmodel"))
report["gpt2_folder"] = check("gpt2", integration.from_pretrained(folder / "gpt2_folder"))
llama = integration.from_pretrained(folder / "llama_folder")
report["llama_folder"] = {**check("llama", llama), "on_meta": any(p.is_meta for p in llama.parameters())}
if (folder / "bert_tm").is_dir():  # `tmodel convert bert_hf bert_tm` made it from transformers' folder
    report["bert_converted"] = check("bert", integration.from_pretrained(folder / "bert_tm"))
report["_unknown_names"] = layer_codes(
    (
        "transformers.GPT2Block",  # not exported: built by its parent, never by a name
        "transformers.Trainer",  # exported, not a model: outside the closed set
        "transformers.GPT2Config",  # a config: a value type, not a layer
        "transformers.logging",
        "transformers.",
    )
)
import transformers as hf  # noqa: E402

fetching = integration._config(hf.GPT2Config, {"n_layer": 1, "use_pretrained_backbone": True})
report["_fetch_turned_off"] = fetching.use_pretrained_backbone is False and fetching.n_layer == 1
try:
    integration._config(hf.GPT2Config, ["n_layer"])
    report["_list_data"] = "made"
except TModelError as exc:
    report["_list_data"] = exc.code
print(json.dumps(report, sort_keys=True))
