"""The four tiny transformers models of issue 14 and how to run each (shared by the save and load scripts)."""

import torch
import transformers as hf

IDS = torch.arange(1, 9).reshape(1, 8)


def models() -> dict:
    return {
        "gpt2": hf.GPT2LMHeadModel(
            hf.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=99, bos_token_id=0, eos_token_id=0)
        ),
        "bert": hf.BertModel(
            hf.BertConfig(
                num_hidden_layers=2,
                hidden_size=32,
                num_attention_heads=2,
                intermediate_size=37,
                vocab_size=99,
            )
        ),
        "llama": hf.LlamaForCausalLM(
            hf.LlamaConfig(
                num_hidden_layers=2,
                hidden_size=32,
                num_attention_heads=2,
                num_key_value_heads=1,
                intermediate_size=37,
                vocab_size=99,
            )
        ),
        "t5": hf.T5ForConditionalGeneration(
            hf.T5Config(num_layers=2, d_model=32, num_heads=2, d_kv=8, d_ff=37, vocab_size=99)
        ),
    }


def run(name: str, model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        if name == "t5":
            return model(input_ids=IDS, decoder_input_ids=IDS).logits
        out = model(IDS)
        return out.last_hidden_state if name == "bert" else out.logits


def tied(model: torch.nn.Module) -> bool | None:
    head = getattr(model, "lm_head", None)
    return None if head is None else head.weight is model.get_input_embeddings().weight
