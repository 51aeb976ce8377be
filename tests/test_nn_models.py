"""Whole models: composite architectures round-trip through assert_roundtrip; ties, frozen layers and
training flags survive; training checkpoints resume bit-identically; load_into, map_location="meta",
dtype casting and the lazy `tmodel.open` view of a saved model."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tmodel
from tmodel.errors import TModelError
from tmodel.nn import registry
from tmodel.testing import assert_roundtrip

register = tmodel.register


# -- composite models --------------------------------------------------------------------------------------
@register("tests.nn_models.TinyTransformer")
class TinyTransformer(nn.Module):
    """A causal transformer LM: embeddings, a learned position table, encoder stack, output head."""

    def __init__(self, vocab: int = 30, dim: int = 16, heads: int = 4, layers: int = 2, max_len: int = 12):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 2 * dim, dropout=0.1, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False
        )
        self.head = nn.Linear(dim, vocab)
        mask = torch.triu(torch.full((max_len, max_len), float("-inf")), 1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = ids.shape[1]
        h = self.tok(ids) + self.pos[:n]
        return self.head(self.encoder(h, mask=self.mask[:n, :n], is_causal=True))


@register("tests.nn_models.SmallCNN")
class SmallCNN(nn.Module):
    def __init__(self, channels: tuple[int, ...] = (3, 8, 12), classes: int = 5, dropout: float = 0.2):
        super().__init__()
        blocks: list[nn.Module] = []
        for cin, cout in itertools.pairwise(channels):
            blocks += [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(channels[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(self.features(x)).flatten(1)))


@register("tests.nn_models.LSTMTagger")
class LSTMTagger(nn.Module):
    def __init__(self, vocab: int, tags: int, emb_dim: int = 8, hidden: int = 10):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb_dim, padding_idx=0)
        self.lstm = nn.LSTM(emb_dim, hidden, num_layers=2, batch_first=True, bidirectional=True, dropout=0.1)
        self.out = nn.Linear(2 * hidden, tags)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.emb(ids))
        return self.out(h).log_softmax(-1)


@register("tests.nn_models.TiedLM")
class TiedLM(nn.Module):
    """A language model whose output projection is its input embedding."""

    def __init__(self, vocab: int = 40, dim: int = 12):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.rnn = nn.GRU(dim, dim, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.emb(ids))
        return self.head(self.norm(h))


@register("tests.nn_models.GatedBlock")
class GatedBlock(nn.Module):
    def __init__(self, dim: int, hidden: int | None = None, act: str = "silu"):
        super().__init__()
        hidden = hidden or 2 * dim
        self.act = act
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, 2 * hidden)
        self.down = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.up(self.norm(x)).chunk(2, -1)
        return self.down(getattr(F, self.act)(a) * b)


@register("tests.nn_models.Residual")
class Residual(nn.Module):
    """Takes its inner module as a constructor argument (a module-valued config)."""

    def __init__(self, inner: nn.Module, scale: float = 1.0):
        super().__init__()
        self.inner = inner
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.inner(x)


@register("tests.nn_models.Router")
class Router(nn.Module):
    """Experts in a ModuleDict, each a Sequential of custom blocks."""

    def __init__(self, dim: int, names: list[str] | None = None):
        super().__init__()
        names = names or ["a", "b"]
        self.experts = nn.ModuleDict(
            {
                n: nn.Sequential(GatedBlock(dim), Residual(GatedBlock(dim, hidden=3, act="gelu"), scale=0.5))
                for n in names
            }
        )
        self.gate = nn.Linear(dim, len(names))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.gate(x).softmax(-1)
        return sum(w[..., i : i + 1] * e(x) for i, e in enumerate(self.experts.values()))  # type: ignore[return-value]


@register("tests.nn_models.FlatConv")
class FlatConv(nn.Module):
    """A conv-like layer: its weight is (out, in, 3, 3) and its forward flattens it to a matrix."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.1)
        self.bias = nn.Parameter(torch.randn(cout) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        cols = F.unfold(x, 3, padding=1)  # (n, in*9, h*w)
        out = self.weight.view(self.weight.shape[0], -1) @ cols + self.bias[:, None]
        return out.view(n, -1, h, w)


def nested_model() -> nn.Sequential:
    return nn.Sequential(
        GatedBlock(8),
        Router(8, ["x", "y", "z"]),
        Residual(nn.Sequential(GatedBlock(8, act="relu"), nn.Dropout(0.1)), scale=0.25),
    )


def ids(*shape: int, vocab: int = 30) -> torch.Tensor:
    return torch.randint(1, vocab, shape)


MODELS: dict[str, Callable[[], tuple[nn.Module, tuple[Any, ...]]]] = {
    "transformer": lambda: (TinyTransformer(), (ids(2, 7),)),
    "cnn-batchnorm": lambda: (SmallCNN(), (torch.randn(3, 3, 8, 8),)),
    "lstm-tagger": lambda: (LSTMTagger(20, 6), (ids(3, 5, vocab=20),)),
    "tied-lm": lambda: (TiedLM(), (ids(2, 6, vocab=40),)),
    "nested-sequential": lambda: (nested_model(), (torch.randn(4, 8),)),
    "flat-conv": lambda: (
        nn.Sequential(FlatConv(3, 5), nn.ReLU(), FlatConv(5, 2)),
        (torch.randn(2, 3, 6, 6),),
    ),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_composite_model_roundtrip(name: str, training: bool) -> None:
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    if training:
        with torch.no_grad():
            model(*inputs)  # move BatchNorm statistics off their initial values
    model.train(training)
    rebuilt = assert_roundtrip(model, *inputs)
    assert type(rebuilt) is type(model)
    for (n1, p1), (n2, p2) in zip(
        model.named_parameters(remove_duplicate=False),
        rebuilt.named_parameters(remove_duplicate=False),
        strict=True,
    ):
        assert n1 == n2
        assert p1.stride() == p2.stride(), n1
        assert type(p2) is nn.Parameter


def test_module_dict_of_custom_blocks_roundtrip() -> None:
    torch.manual_seed(0)
    model = nn.ModuleDict(
        {"enc": nested_model(), "router": Router(8), "head": nn.ModuleList([GatedBlock(8), FlatConv(2, 2)])}
    )
    rebuilt = assert_roundtrip(model)
    assert isinstance(rebuilt["router"], Router)
    assert isinstance(rebuilt["enc"][2], Residual)
    x = torch.randn(3, 8)
    assert torch.equal(rebuilt["enc"].eval()(x), model["enc"].eval()(x))
    assert list(rebuilt) == ["enc", "router", "head"]


def test_flat_conv_matches_conv2d_after_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    layer = FlatConv(3, 4)
    tmodel.save(layer, tmp_path / "c.tmodel")
    back = tmodel.load(tmp_path / "c.tmodel")
    assert back.weight.shape == (4, 3, 3, 3) and back.weight.is_contiguous()
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(
        back(x), F.conv2d(x, layer.weight, layer.bias, padding=1), rtol=1e-5, atol=1e-5
    )


def test_tied_embeddings_share_one_parameter(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TiedLM()
    tmodel.save(model, tmp_path / "lm.tmodel")
    back = tmodel.load(tmp_path / "lm.tmodel")
    assert back.head.weight is back.emb.weight
    assert len(list(back.parameters())) == len(list(model.parameters()))
    with tmodel.open(tmp_path / "lm.tmodel") as f:
        assert sum(1 for k in f if k.endswith(".weight") and k.split(".")[0] in ("emb", "head")) == 1
    # training still updates one tensor seen from both places
    opt = torch.optim.SGD(back.parameters(), lr=0.5)
    back(ids(2, 4, vocab=40)).sum().backward()
    opt.step()
    assert back.head.weight is back.emb.weight
    assert not torch.equal(back.emb.weight, model.emb.weight)


def test_frozen_layer_and_eval_submodule_survive(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyTransformer()
    model.tok.weight.requires_grad_(False)
    model.pos.requires_grad_(False)
    model.train()
    model.encoder.layers[1].eval()
    tmodel.save(model, tmp_path / "t.tmodel")
    back = tmodel.load(tmp_path / "t.tmodel")
    assert back.tok.weight.requires_grad is False
    assert back.pos.requires_grad is False
    assert back.head.weight.requires_grad is True
    assert back.training is True
    assert back.encoder.layers[0].training is True
    assert back.encoder.layers[1].training is False
    assert all(not m.training for m in back.encoder.layers[1].modules())
    assert [m.training for m in back.modules()] == [m.training for m in model.modules()]
    assert_roundtrip(model, ids(2, 5))


def test_model_inside_checkpoint_dict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SmallCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        model(torch.randn(2, 3, 8, 8)).sum().backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    ckpt = {
        "model": model,
        "optim": opt.state_dict(),
        "sched": sched.state_dict(),
        "step": 7,
        "rng": torch.get_rng_state(),
    }
    tmodel.save(ckpt, tmp_path / "ckpt.tmodel", metadata={"epoch": 1})
    back = tmodel.load(tmp_path / "ckpt.tmodel")
    assert set(back) == set(ckpt)
    assert back["step"] == 7
    assert torch.equal(back["rng"], ckpt["rng"]) and back["rng"].dtype == torch.uint8
    assert back["sched"] == ckpt["sched"]
    assert back["optim"]["param_groups"] == ckpt["optim"]["param_groups"]
    for i, state in ckpt["optim"]["state"].items():
        for k, v in state.items():
            assert torch.equal(back["optim"]["state"][i][k], v)
    assert isinstance(back["model"], SmallCNN)
    sd, want = back["model"].state_dict(), model.state_dict()
    assert list(sd) == list(want)
    assert all(torch.equal(sd[k], want[k]) for k in want)
    with tmodel.open(tmp_path / "ckpt.tmodel") as f:
        assert f.metadata == {"epoch": 1}
        assert {k for k in f if k.startswith("model.")} == {f"model.{k}" for k in want}


# -- bit-identical resume ---------------------------------------------------------------------------------
@register("tests.nn_models.ResumeNet")
class ResumeNet(nn.Module):
    def __init__(self, dim: int = 6):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, 16), nn.BatchNorm1d(16), nn.GELU(), nn.Dropout(0.3), nn.Linear(16, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _make(kind: str, model: nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    if kind == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4
        )
        return opt, None
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)


def _train(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, steps: int) -> None:
    model.train()
    for _ in range(steps):
        x = torch.randn(8, 6)  # the data comes from the RNG too, so its state must be restored
        y = torch.randint(0, 3, (8,))
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_resume_is_bit_identical(kind: str, tmp_path: Path) -> None:
    n, m = 5, 4
    torch.manual_seed(123)
    straight = ResumeNet()
    opt_s, sched_s = _make(kind, straight)
    _train(straight, opt_s, sched_s, n + m)

    torch.manual_seed(123)
    model = ResumeNet()
    opt, sched = _make(kind, model)
    _train(model, opt, sched, n)
    ckpt = {
        "model": model,
        "optim": opt.state_dict(),
        "sched": None if sched is None else sched.state_dict(),
        "step": n,
        "rng": torch.get_rng_state(),
    }
    tmodel.save(ckpt, tmp_path / "ckpt.tmodel")
    del model, opt, sched

    torch.manual_seed(999)  # anything: the restored state must not depend on it
    back = tmodel.load(tmp_path / "ckpt.tmodel")
    model2 = back["model"]
    opt2, sched2 = _make(kind, model2)
    opt2.load_state_dict(back["optim"])
    if sched2 is not None:
        sched2.load_state_dict(back["sched"])
    torch.set_rng_state(back["rng"])
    assert back["step"] == n
    _train(model2, opt2, sched2, m)

    want, got = straight.state_dict(), model2.state_dict()
    assert list(got) == list(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert opt2.param_groups[0]["lr"] == opt_s.param_groups[0]["lr"]
    if sched2 is not None:
        assert sched2.state_dict() == sched_s.state_dict()
        assert opt2.param_groups[0]["lr"] < 3e-3  # the schedule did decay
    for p2, ps in zip(model2.parameters(), straight.parameters(), strict=True):
        s2, ss = opt2.state[p2], opt_s.state[ps]
        assert s2.keys() == ss.keys()
        assert all(torch.equal(s2[k], ss[k]) for k in ss)


# -- load_into ----------------------------------------------------------------------------------------------
@register("tests.nn_models.Mlp")
class Mlp(nn.Module):
    def __init__(self, sizes: list[int], norm: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.norm = nn.BatchNorm1d(sizes[-1]) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x))
        return x if self.norm is None else self.norm(x)


def test_load_into_same_architecture(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = Mlp([4, 6, 3])
    with torch.no_grad():
        src.norm.running_mean.uniform_()
        src.norm.num_batches_tracked.fill_(5)
    tmodel.save(src, tmp_path / "m.tmodel")
    dst = Mlp([4, 6, 3])
    report = tmodel.load_into(dst, tmp_path / "m.tmodel")
    assert report and report.missing == [] and report.unexpected == [] and report.mismatched == []
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_load_into_strict_mismatch_lists_the_keys(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = Mlp([4, 6, 3, 2])
    tmodel.save(src, tmp_path / "m.tmodel")
    dst = Mlp(
        [4, 7, 3], norm=True
    )  # layers.0 and layers.1 shapes differ, layers.2 is gone, norm size differs
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(TModelError) as info:
        tmodel.load_into(dst, tmp_path / "m.tmodel")
    assert info.value.code == "STATE_MISMATCH"
    msg = str(info.value)
    for key in (
        "layers.2.weight",
        "layers.2.bias",
        "layers.0.weight",
        "layers.1.weight",
        "norm.running_mean",
    ):
        assert key in msg, key
    after = dst.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items()), (
        "strict failure must not change the model"
    )


def test_load_into_non_strict_report(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = Mlp([4, 6, 3], norm=False)
    tmodel.save(src, tmp_path / "m.tmodel")
    dst = Mlp([4, 6, 5], norm=True)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    report = tmodel.load_into(dst, tmp_path / "m.tmodel", strict=False)
    assert isinstance(report, tmodel.LoadReport)
    assert not report
    assert report.missing == [
        "norm.bias",
        "norm.num_batches_tracked",
        "norm.running_mean",
        "norm.running_var",
        "norm.weight",
    ]
    assert report.unexpected == []
    assert report.mismatched == [
        "layers.1.bias: file [3], model [5]",
        "layers.1.weight: file [3, 6], model [5, 6]",
    ]
    sd = dst.state_dict()
    assert torch.equal(sd["layers.0.weight"], src.layers[0].weight)
    assert torch.equal(sd["layers.0.bias"], src.layers[0].bias)
    for k in ("layers.1.weight", "layers.1.bias", "norm.weight", "norm.running_var"):
        assert torch.equal(sd[k], before[k]), k

    # the reverse direction: the file has keys the model lacks
    tmodel.save(Mlp([4, 6, 3], norm=True), tmp_path / "n.tmodel")
    report = tmodel.load_into(Mlp([4, 6, 3], norm=False), tmp_path / "n.tmodel", strict=False)
    assert report.missing == [] and report.mismatched == []
    assert report.unexpected == [
        "norm.bias",
        "norm.num_batches_tracked",
        "norm.running_mean",
        "norm.running_var",
        "norm.weight",
    ]


def test_load_into_from_plain_state_dict_and_key(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = TiedLM()
    want = src.state_dict()

    tmodel.save(src.state_dict(), tmp_path / "sd.tmodel")
    dst = TiedLM()
    assert tmodel.load_into(dst, tmp_path / "sd.tmodel")
    assert all(torch.equal(dst.state_dict()[k], v) for k, v in want.items())
    assert dst.head.weight is dst.emb.weight

    tmodel.save({"model": src, "step": 3}, tmp_path / "ck.tmodel")
    dst = TiedLM()
    assert tmodel.load_into(dst, tmp_path / "ck.tmodel", key="model")
    assert all(torch.equal(dst.state_dict()[k], v) for k, v in want.items())

    tmodel.save({"model": src.state_dict(), "step": 3}, tmp_path / "cks.tmodel")
    dst = TiedLM()
    assert tmodel.load_into(dst, tmp_path / "cks.tmodel", key="model")
    assert all(torch.equal(dst.state_dict()[k], v) for k, v in want.items())

    with pytest.raises(TModelError) as info:
        tmodel.load_into(TiedLM(), tmp_path / "ck.tmodel", key="nope")
    assert info.value.code == "NOT_FOUND"
    with pytest.raises(TModelError) as info:
        tmodel.load_into(TiedLM(), tmp_path / "ck.tmodel")  # the top level is a checkpoint, not weights
    assert info.value.code == "INVALID_ARGUMENT"


def test_load_into_needs_no_registration(tmp_path: Path) -> None:
    """The weights of a file are readable without the layer classes: load_into a model of other classes."""
    name = f"tests.nn_models.Ephemeral_{uuid.uuid4().hex}"

    @register(name)
    class Ephemeral(nn.Module):
        def __init__(self, dim: int):
            super().__init__()
            self.block = GatedBlock(dim)

    torch.manual_seed(0)
    src = nn.Sequential(Ephemeral(4))
    tmodel.save(src, tmp_path / "g.tmodel")
    registry.unregister(name)
    with pytest.raises(TModelError) as info:
        tmodel.load(tmp_path / "g.tmodel")
    assert info.value.code == "UNREGISTERED_TYPE"

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm, self.up, self.down = nn.LayerNorm(4), nn.Linear(4, 16), nn.Linear(8, 4)

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Plain()

    dst = nn.Sequential(Holder())
    assert tmodel.load_into(dst, tmp_path / "g.tmodel")
    assert torch.equal(dst[0].block.up.weight, src[0].block.up.weight)
    assert torch.equal(dst[0].block.norm.bias, src[0].block.norm.bias)


# -- map_location, dtype, open ---------------------------------------------------------------------------
def test_load_on_meta_device(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SmallCNN()
    tmodel.save(model, tmp_path / "m.tmodel")
    back = tmodel.load(tmp_path / "m.tmodel", map_location="meta")
    assert isinstance(back, SmallCNN)
    want = model.state_dict()
    got = back.state_dict()
    assert list(got) == list(want)
    for k, v in want.items():
        assert got[k].device.type == "meta", k
        assert got[k].shape == v.shape and got[k].dtype == v.dtype, k
    assert all(p.is_meta for p in back.parameters())
    assert [type(m) for m in back.modules()] == [type(m) for m in model.modules()]
    # a meta model can be materialised and filled from the same file
    real = back.to_empty(device="cpu")
    tmodel.load_into(real, tmp_path / "m.tmodel")
    assert all(torch.equal(real.state_dict()[k], v) for k, v in want.items())


def test_load_with_dtype_float16(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SmallCNN()
    with torch.no_grad():
        model(torch.randn(2, 3, 8, 8))
    tmodel.save(model, tmp_path / "m.tmodel")
    back = tmodel.load(tmp_path / "m.tmodel", dtype=torch.float16)
    for k, v in model.state_dict().items():
        got = back.state_dict()[k]
        if v.is_floating_point():
            assert got.dtype == torch.float16, k
            assert torch.equal(got, v.to(torch.float16)), k
        else:
            assert got.dtype == v.dtype == torch.int64, k
            assert torch.equal(got, v), k
    assert back.features[1].num_batches_tracked.dtype == torch.int64
    assert all(type(p) is nn.Parameter and p.requires_grad for p in back.parameters())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float16)
    back.eval()(x)  # a half model runs on half inputs


def test_open_keys_are_state_dict_names(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyTransformer()
    tmodel.save(model, tmp_path / "t.tmodel")
    with tmodel.open(tmp_path / "t.tmodel") as f:
        keys = f.keys()
        assert sorted(keys) == sorted(model.state_dict())
        assert "mask" not in keys  # a non-persistent buffer is not saved
        for k in ("encoder.layers.1.self_attn.in_proj_weight", "pos", "tok.weight"):
            assert torch.equal(f.get_tensor(k), model.state_dict()[k])
        assert f.get_slice("head.weight")[:2].shape == (2, 16)
        assert isinstance(f.load(), TinyTransformer)

    tied = TiedLM()
    tmodel.save(tied, tmp_path / "lm.tmodel")
    with tmodel.open(tmp_path / "lm.tmodel") as f:
        # one tensor for the tied pair, named by its first state-dict path
        assert sorted(f.keys()) == sorted(tied.state_dict(keep_vars=False).keys() - {"head.weight"})
