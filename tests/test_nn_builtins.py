"""torch.nn's own layers: every module class of torch.nn is either registered as `torch.nn.<Name>` or
listed as unsupported (and then fails to save with UNREGISTERED_TYPE), and every registered one survives
save -> load with non-default constructor arguments: same repr, configs, state and outputs."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

import tmodel
from tmodel.errors import TModelError
from tmodel.nn import builtins, registry
from tmodel.nn.registry import spec_for_module
from tmodel.testing import assert_roundtrip

Case = tuple[nn.Module, tuple[Any, ...]]


# -- coverage --------------------------------------------------------------------------------------------
def torch_nn_classes() -> dict[str, type[nn.Module]]:
    return {
        name: obj for name, obj in vars(nn).items() if isinstance(obj, type) and issubclass(obj, nn.Module)
    }


def test_every_torch_nn_module_class_is_registered_or_unsupported() -> None:
    classes = torch_nn_classes()
    registered = set(builtins.BUILTIN_NAMES)
    covered = sorted(n for n in classes if f"torch.nn.{n}" in registered)
    unsupported = sorted(n for n in classes if n in builtins.UNSUPPORTED)
    neither = sorted(set(classes) - set(covered) - set(unsupported))
    both = sorted(set(covered) & set(unsupported))
    print(
        f"\ntorch.nn module classes: {len(classes)}; registered {len(covered)}, "
        f"unsupported {len(unsupported)}; unsupported: {', '.join(unsupported)}"
    )
    assert not neither, f"neither registered nor listed as unsupported: {neither}"
    assert not both, f"registered and listed as unsupported: {both}"
    # every UNSUPPORTED entry names a real class, and every builtin name a class torch.nn has (or its
    # MultiheadAttention's out_proj class)
    assert set(builtins.UNSUPPORTED) <= set(classes)
    extra = {n.removeprefix("torch.nn.") for n in registered} - set(classes)
    assert extra == {"NonDynamicallyQuantizableLinear"}
    for name, cls in classes.items():
        if name in covered:
            assert registry.is_registered(cls), name
            assert registry.spec_for_name(f"torch.nn.{name}", "test").cls is cls
        else:
            assert not registry.is_registered(cls), name


def _unsupported_instances() -> dict[str, Callable[[], nn.Module]]:
    return {
        "LazyLinear": lambda: nn.LazyLinear(4),
        "LazyConv1d": lambda: nn.LazyConv1d(4, 3),
        "LazyConv2d": lambda: nn.LazyConv2d(4, 3),
        "LazyConv3d": lambda: nn.LazyConv3d(4, 3),
        "LazyConvTranspose1d": lambda: nn.LazyConvTranspose1d(4, 3),
        "LazyConvTranspose2d": lambda: nn.LazyConvTranspose2d(4, 3),
        "LazyConvTranspose3d": lambda: nn.LazyConvTranspose3d(4, 3),
        "LazyBatchNorm1d": lambda: nn.LazyBatchNorm1d(),
        "LazyBatchNorm2d": lambda: nn.LazyBatchNorm2d(),
        "LazyBatchNorm3d": lambda: nn.LazyBatchNorm3d(),
        "LazyInstanceNorm1d": lambda: nn.LazyInstanceNorm1d(),
        "LazyInstanceNorm2d": lambda: nn.LazyInstanceNorm2d(),
        "LazyInstanceNorm3d": lambda: nn.LazyInstanceNorm3d(),
        "Module": lambda: nn.Module(),
        "DataParallel": lambda: nn.DataParallel(nn.Linear(2, 2)),
        "TripletMarginWithDistanceLoss": lambda: nn.TripletMarginWithDistanceLoss(
            distance_function=nn.PairwiseDistance()
        ),
    }


def test_unsupported_instances_list_is_complete() -> None:
    """Every unsupported class is either instantiated below or cannot be built cheaply by design."""
    not_built = {"Container", "RNNBase", "RNNCellBase"}  # deprecated / abstract bases
    assert set(_unsupported_instances()) | not_built == set(builtins.UNSUPPORTED)


# DataParallel is a wrapper, refused as UNSUPPORTED_TYPE with the fix (tests/test_hooks_wrappers.py)
@pytest.mark.parametrize("name", sorted(set(_unsupported_instances()) - {"DataParallel"}))
def test_unsupported_class_fails_with_unregistered_type(name: str, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lazy modules warn that they are experimental
        module = _unsupported_instances()[name]()
    path = tmp_path / "m.tmodel"
    with pytest.raises(TModelError) as info:
        tmodel.save(module, path)
    assert info.value.code == "UNREGISTERED_TYPE"
    assert type(module).__qualname__ in str(info.value)
    assert builtins.UNSUPPORTED[name] in str(info.value)  # says why, rather than suggesting a registration
    assert not path.exists()
    # also when nested inside a registered container, naming where it sits
    with pytest.raises(TModelError) as info:
        tmodel.save({"model": nn.Sequential(nn.Identity(), module)}, path)
    assert info.value.code == "UNREGISTERED_TYPE"
    assert 'checkpoint["model"].1' in str(info.value)


# -- the zoo: one factory per registered builtin, non-default arguments ----------------------------------
def x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def _bn(cls: type[nn.Module], *shape: int) -> Case:
    m = cls(6, eps=1e-3, momentum=0.3, affine=True, track_running_stats=True, bias=False)
    return m, (x(*shape),)


def _instnorm(cls: type[nn.Module], *shape: int) -> Case:
    m = cls(6, eps=1e-4, momentum=0.2, affine=True, track_running_stats=True, bias=False)
    return m, (x(*shape),)


def _maxunpool(dim: int) -> Case:
    pool = [nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d][dim - 1](2, stride=2, return_indices=True)
    unpool = [nn.MaxUnpool1d, nn.MaxUnpool2d, nn.MaxUnpool3d][dim - 1](2, stride=2, padding=0)
    out, idx = pool(x(1, 2, *([6] * dim)))
    return unpool, (out, idx, [1, 2, *([6] * dim)])


def _ctc() -> Case:
    t, n, c = 8, 2, 5
    log_probs = x(t, n, c).log_softmax(2)
    targets = torch.randint(2, c, (n, 3))
    return nn.CTCLoss(blank=1, reduction="sum", zero_infinity=True), (
        log_probs,
        targets,
        torch.full((n,), t, dtype=torch.long),
        torch.tensor([3, 2]),
    )


def _mha() -> Case:
    m = nn.MultiheadAttention(
        16,
        4,
        dropout=0.1,
        bias=False,
        add_bias_kv=True,
        add_zero_attn=True,
        kdim=8,
        vdim=12,
        batch_first=True,
    )
    return m, (x(2, 5, 16), x(2, 7, 8), x(2, 7, 12))


def _enc_layer(**kw: Any) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        16,
        4,
        dim_feedforward=24,
        dropout=0.2,
        activation=kw.pop("activation", "gelu"),
        layer_norm_eps=1e-6,
        batch_first=True,
        norm_first=True,
        bias=kw.pop("bias", False),
        **kw,
    )


def _dec_layer(**kw: Any) -> nn.TransformerDecoderLayer:
    return nn.TransformerDecoderLayer(
        16,
        4,
        dim_feedforward=20,
        dropout=0.15,
        activation=kw.pop("activation", "gelu"),
        layer_norm_eps=1e-6,
        batch_first=True,
        norm_first=True,
        bias=kw.pop("bias", False),
        **kw,
    )


def _transformer() -> Case:
    m = nn.Transformer(
        d_model=16,
        nhead=4,
        num_encoder_layers=2,
        num_decoder_layers=1,
        dim_feedforward=24,
        dropout=0.1,
        activation="gelu",
        layer_norm_eps=1e-6,
        batch_first=True,
        norm_first=True,
        bias=False,
    )
    return m, (x(2, 5, 16), x(2, 3, 16))


def _param_list() -> Case:
    pl = nn.ParameterList([nn.Parameter(x(2, 3)), nn.Parameter(x(4), requires_grad=False), x(3)])
    return pl, ()


def _param_dict() -> Case:
    pd = nn.ParameterDict({"b": nn.Parameter(x(2)), "a": nn.Parameter(x(3, 1), requires_grad=False)})
    return pd, ()


def _adaptive_log_softmax() -> Case:
    m = nn.AdaptiveLogSoftmaxWithLoss(8, 20, cutoffs=[4, 10], div_value=2.0, head_bias=True)
    return m, (x(5, 8), torch.tensor([0, 3, 7, 12, 19]))


def _embedding_bag() -> Case:
    m = nn.EmbeddingBag(
        10,
        4,
        max_norm=1.5,
        norm_type=1.0,
        scale_grad_by_freq=False,
        mode="max",
        sparse=False,
        include_last_offset=True,
        padding_idx=2,
    )
    return m, (torch.tensor([1, 2, 4, 5, 4, 3, 2, 9]), torch.tensor([0, 3, 5, 8]))


def _lce() -> Case:
    m = nn.LinearCrossEntropyLoss(
        6, 5, bias=True, reduction="sum", weight=torch.rand(5) + 0.5, ignore_index=2, label_smoothing=0.1
    )
    return m, (x(4, 6), torch.tensor([0, 2, 4, 1]))


def _sync_bn() -> Case:
    m = nn.SyncBatchNorm(6, eps=1e-3, momentum=0.2, affine=True, track_running_stats=True, bias=False)
    return m.eval(), (x(3, 6, 4),)


ZOO: dict[str, Callable[[], Case]] = {
    # linear and friends
    "Identity": lambda: (nn.Identity(54, unused="x"), (x(2, 3),)),
    "Linear": lambda: (nn.Linear(6, 3, bias=False), (x(2, 6),)),
    "NonDynamicallyQuantizableLinear": lambda: (
        NonDynamicallyQuantizableLinear(6, 3, bias=False),
        (x(2, 6),),
    ),
    "Bilinear": lambda: (nn.Bilinear(4, 5, 3, bias=False), (x(2, 4), x(2, 5))),
    # convolutions
    "Conv1d": lambda: (
        nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=False, padding_mode="circular"),
        (x(2, 4, 11),),
    ),
    "Conv2d": lambda: (
        nn.Conv2d(
            3, 8, (3, 5), stride=2, padding=1, dilation=2, groups=1, bias=False, padding_mode="reflect"
        ),
        (x(2, 3, 12, 14),),
    ),
    "Conv3d": lambda: (
        nn.Conv3d(4, 2, (1, 2, 3), stride=(1, 2, 1), padding=1, groups=2, padding_mode="replicate"),
        (x(1, 4, 4, 5, 6),),
    ),
    "ConvTranspose1d": lambda: (
        nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, bias=False, dilation=2),
        (x(2, 4, 7),),
    ),
    "ConvTranspose2d": lambda: (
        nn.ConvTranspose2d(3, 4, (2, 3), stride=(2, 1), padding=(0, 1), output_padding=(1, 0), dilation=1),
        (x(1, 3, 5, 6),),
    ),
    "ConvTranspose3d": lambda: (
        nn.ConvTranspose3d(2, 4, 2, stride=2, padding=1, output_padding=1, groups=2, bias=False, dilation=2),
        (x(1, 2, 3, 3, 3),),
    ),
    "Fold": lambda: (nn.Fold((5, 6), (2, 3), dilation=(1, 2), padding=1, stride=(2, 1)), (x(2, 12, 12),)),
    "Unfold": lambda: (nn.Unfold((2, 3), dilation=(1, 2), padding=1, stride=(2, 1)), (x(2, 2, 5, 6),)),
    # normalisation
    "BatchNorm1d": lambda: _bn(nn.BatchNorm1d, 4, 6, 5),
    "BatchNorm2d": lambda: _bn(nn.BatchNorm2d, 3, 6, 4, 4),
    "BatchNorm3d": lambda: _bn(nn.BatchNorm3d, 2, 6, 3, 3, 3),
    "SyncBatchNorm": _sync_bn,
    "InstanceNorm1d": lambda: _instnorm(nn.InstanceNorm1d, 2, 6, 7),
    "InstanceNorm2d": lambda: _instnorm(nn.InstanceNorm2d, 2, 6, 4, 5),
    "InstanceNorm3d": lambda: _instnorm(nn.InstanceNorm3d, 2, 6, 3, 3, 4),
    "LayerNorm": lambda: (nn.LayerNorm((4, 5), eps=1e-3, elementwise_affine=True, bias=False), (x(2, 4, 5),)),
    "GroupNorm": lambda: (nn.GroupNorm(3, 6, eps=1e-3, affine=True, bias=False), (x(2, 6, 4),)),
    "RMSNorm": lambda: (nn.RMSNorm([3, 4], eps=1e-4, elementwise_affine=True), (x(2, 3, 4),)),
    "LocalResponseNorm": lambda: (nn.LocalResponseNorm(3, alpha=2e-4, beta=0.5, k=2.0), (x(2, 6, 4, 4),)),
    "CrossMapLRN2d": lambda: (nn.CrossMapLRN2d(3, alpha=2e-4, beta=0.5, k=2), (x(2, 6, 4, 4),)),
    # embeddings
    "Embedding": lambda: (
        nn.Embedding(
            10, 4, padding_idx=-2, max_norm=2.0, norm_type=1.5, scale_grad_by_freq=True, sparse=True
        ),
        (torch.tensor([[1, 8, 3], [0, 9, 2]]),),
    ),
    "EmbeddingBag": _embedding_bag,
    # recurrent
    "RNN": lambda: (
        nn.RNN(
            6,
            8,
            num_layers=2,
            nonlinearity="relu",
            bias=False,
            batch_first=True,
            dropout=0.2,
            bidirectional=True,
        ),
        (x(2, 5, 6),),
    ),
    "LSTM": lambda: (
        nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True, proj_size=4, dropout=0.1),
        (x(3, 5, 8),),
    ),
    "GRU": lambda: (nn.GRU(6, 5, num_layers=3, bias=False, dropout=0.3, bidirectional=True), (x(4, 2, 6),)),
    "RNNCell": lambda: (nn.RNNCell(6, 5, bias=False, nonlinearity="relu"), (x(3, 6), x(3, 5))),
    "LSTMCell": lambda: (nn.LSTMCell(6, 5, bias=False), (x(3, 6), (x(3, 5), x(3, 5)))),
    "GRUCell": lambda: (nn.GRUCell(6, 5, bias=False), (x(3, 6),)),
    # attention and transformers
    "MultiheadAttention": _mha,
    "TransformerEncoderLayer": lambda: (_enc_layer(), (x(2, 5, 16),)),
    "TransformerDecoderLayer": lambda: (_dec_layer(), (x(2, 3, 16), x(2, 5, 16))),
    "TransformerEncoder": lambda: (
        nn.TransformerEncoder(
            _enc_layer(), 2, norm=nn.LayerNorm(16, eps=1e-4), enable_nested_tensor=False, mask_check=False
        ),
        (x(2, 5, 16),),
    ),
    "TransformerDecoder": lambda: (
        nn.TransformerDecoder(_dec_layer(), 3, norm=nn.RMSNorm(16)),
        (x(2, 3, 16), x(2, 5, 16)),
    ),
    "Transformer": _transformer,
    # dropout family
    "Dropout": lambda: (nn.Dropout(0.3), (x(4, 8),)),
    "Dropout1d": lambda: (nn.Dropout1d(0.4), (x(2, 4, 8),)),
    "Dropout2d": lambda: (nn.Dropout2d(0.4), (x(2, 4, 3, 3),)),
    "Dropout3d": lambda: (nn.Dropout3d(0.4), (x(2, 4, 2, 3, 3),)),
    "AlphaDropout": lambda: (nn.AlphaDropout(0.3), (x(4, 8),)),
    "FeatureAlphaDropout": lambda: (nn.FeatureAlphaDropout(0.3), (x(2, 4, 3, 3),)),
    # activations
    "ReLU": lambda: (nn.ReLU(inplace=True), (x(3, 4),)),
    "ReLU6": lambda: (nn.ReLU6(inplace=True), (x(3, 4) * 8,)),
    "LeakyReLU": lambda: (nn.LeakyReLU(0.2, inplace=True), (x(3, 4),)),
    "PReLU": lambda: (nn.PReLU(4, init=0.1), (x(3, 4),)),
    "RReLU": lambda: (nn.RReLU(0.05, 0.4, inplace=False), (x(3, 4),)),
    "ELU": lambda: (nn.ELU(alpha=0.7, inplace=False), (x(3, 4),)),
    "CELU": lambda: (nn.CELU(alpha=0.7, inplace=False), (x(3, 4),)),
    "SELU": lambda: (nn.SELU(inplace=True), (x(3, 4),)),
    "GELU": lambda: (nn.GELU(approximate="tanh"), (x(3, 4),)),
    "SiLU": lambda: (nn.SiLU(inplace=True), (x(3, 4),)),
    "Mish": lambda: (nn.Mish(inplace=True), (x(3, 4),)),
    "Sigmoid": lambda: (nn.Sigmoid(), (x(3, 4),)),
    "LogSigmoid": lambda: (nn.LogSigmoid(), (x(3, 4),)),
    "Hardsigmoid": lambda: (nn.Hardsigmoid(inplace=True), (x(3, 4),)),
    "Hardswish": lambda: (nn.Hardswish(inplace=True), (x(3, 4),)),
    "Hardtanh": lambda: (nn.Hardtanh(-0.5, 2.0, inplace=True), (x(3, 4),)),
    "Hardshrink": lambda: (nn.Hardshrink(0.3), (x(3, 4),)),
    "Softshrink": lambda: (nn.Softshrink(0.3), (x(3, 4),)),
    "Tanh": lambda: (nn.Tanh(), (x(3, 4),)),
    "Tanhshrink": lambda: (nn.Tanhshrink(), (x(3, 4),)),
    "Softsign": lambda: (nn.Softsign(), (x(3, 4),)),
    "Softplus": lambda: (nn.Softplus(beta=2.0, threshold=1.5), (x(3, 4),)),
    "Threshold": lambda: (nn.Threshold(0.1, -3.0, inplace=True), (x(3, 4),)),
    "GLU": lambda: (nn.GLU(dim=1), (x(3, 4, 2),)),
    "Softmax": lambda: (nn.Softmax(dim=0), (x(3, 4),)),
    "Softmin": lambda: (nn.Softmin(dim=0), (x(3, 4),)),
    "LogSoftmax": lambda: (nn.LogSoftmax(dim=0), (x(3, 4),)),
    "Softmax2d": lambda: (nn.Softmax2d(), (x(2, 3, 4, 4),)),
    # pooling
    "MaxPool1d": lambda: (
        nn.MaxPool1d(3, stride=2, padding=1, dilation=2, return_indices=True, ceil_mode=True),
        (x(2, 3, 11),),
    ),
    "MaxPool2d": lambda: (
        nn.MaxPool2d((2, 3), stride=(1, 2), padding=1, dilation=1, ceil_mode=True),
        (x(2, 3, 7, 8),),
    ),
    "MaxPool3d": lambda: (
        nn.MaxPool3d(2, stride=1, padding=1, dilation=2, return_indices=True),
        (x(1, 2, 4, 4, 4),),
    ),
    "MaxUnpool1d": lambda: _maxunpool(1),
    "MaxUnpool2d": lambda: _maxunpool(2),
    "MaxUnpool3d": lambda: _maxunpool(3),
    "AvgPool1d": lambda: (
        nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        (x(2, 3, 10),),
    ),
    "AvgPool2d": lambda: (
        nn.AvgPool2d(
            (2, 3), stride=(1, 2), padding=1, ceil_mode=True, count_include_pad=False, divisor_override=5
        ),
        (x(2, 3, 7, 8),),
    ),
    "AvgPool3d": lambda: (
        nn.AvgPool3d(2, stride=1, padding=1, ceil_mode=True, count_include_pad=False, divisor_override=3),
        (x(1, 2, 4, 4, 4),),
    ),
    "LPPool1d": lambda: (nn.LPPool1d(3.0, 2, stride=1, ceil_mode=True), (x(2, 3, 9).abs(),)),
    "LPPool2d": lambda: (nn.LPPool2d(1.5, (2, 3), stride=(1, 2), ceil_mode=True), (x(2, 3, 6, 7).abs(),)),
    "LPPool3d": lambda: (nn.LPPool3d(2.5, 2, stride=1, ceil_mode=True), (x(1, 2, 4, 4, 4).abs(),)),
    "AdaptiveAvgPool1d": lambda: (nn.AdaptiveAvgPool1d(3), (x(2, 3, 10),)),
    "AdaptiveAvgPool2d": lambda: (nn.AdaptiveAvgPool2d((3, None)), (x(2, 3, 7, 5),)),
    "AdaptiveAvgPool3d": lambda: (nn.AdaptiveAvgPool3d((2, 3, None)), (x(1, 2, 5, 6, 4),)),
    "AdaptiveMaxPool1d": lambda: (nn.AdaptiveMaxPool1d(3, return_indices=True), (x(2, 3, 10),)),
    "AdaptiveMaxPool2d": lambda: (nn.AdaptiveMaxPool2d((None, 3), return_indices=True), (x(2, 3, 7, 5),)),
    "AdaptiveMaxPool3d": lambda: (nn.AdaptiveMaxPool3d((2, 3, 2), return_indices=True), (x(1, 2, 5, 6, 4),)),
    "FractionalMaxPool2d": lambda: (
        nn.FractionalMaxPool2d((2, 3), output_ratio=(0.5, 0.6), return_indices=True),
        (x(2, 3, 10, 10),),
    ),
    "FractionalMaxPool3d": lambda: (
        nn.FractionalMaxPool3d(
            2, output_size=(3, 2, 3), return_indices=False, _random_samples=torch.rand(1, 2, 3)
        ),
        (x(1, 2, 6, 6, 6),),
    ),
    # padding
    "ZeroPad1d": lambda: (nn.ZeroPad1d((1, 2)), (x(2, 3, 4),)),
    "ZeroPad2d": lambda: (nn.ZeroPad2d((1, 2, 0, 3)), (x(2, 3, 4, 4),)),
    "ZeroPad3d": lambda: (nn.ZeroPad3d((1, 2, 0, 3, 2, 0)), (x(1, 2, 3, 4, 4),)),
    "ConstantPad1d": lambda: (nn.ConstantPad1d((1, 2), 3.5), (x(2, 3, 4),)),
    "ConstantPad2d": lambda: (nn.ConstantPad2d((1, 2, 0, 3), -1.5), (x(2, 3, 4, 4),)),
    "ConstantPad3d": lambda: (nn.ConstantPad3d(2, 0.25), (x(1, 2, 3, 4, 4),)),
    "ReflectionPad1d": lambda: (nn.ReflectionPad1d((1, 2)), (x(2, 3, 4),)),
    "ReflectionPad2d": lambda: (nn.ReflectionPad2d((1, 2, 0, 3)), (x(2, 3, 4, 4),)),
    "ReflectionPad3d": lambda: (nn.ReflectionPad3d((1, 2, 0, 3, 2, 0)), (x(1, 2, 3, 4, 4),)),
    "ReplicationPad1d": lambda: (nn.ReplicationPad1d((1, 2)), (x(2, 3, 4),)),
    "ReplicationPad2d": lambda: (nn.ReplicationPad2d((1, 2, 0, 3)), (x(2, 3, 4, 4),)),
    "ReplicationPad3d": lambda: (nn.ReplicationPad3d((1, 2, 0, 3, 2, 0)), (x(1, 2, 3, 4, 4),)),
    "CircularPad1d": lambda: (nn.CircularPad1d((1, 2)), (x(2, 3, 4),)),
    "CircularPad2d": lambda: (nn.CircularPad2d((1, 2, 0, 3)), (x(2, 3, 4, 4),)),
    "CircularPad3d": lambda: (nn.CircularPad3d((1, 2, 0, 3, 2, 0)), (x(1, 2, 3, 4, 4),)),
    # shape
    "Upsample": lambda: (
        nn.Upsample(
            scale_factor=(1.5, 2.0), mode="bilinear", align_corners=True, recompute_scale_factor=True
        ),
        (x(1, 2, 4, 4),),
    ),
    "UpsamplingNearest2d": lambda: (nn.UpsamplingNearest2d(size=(5, 7)), (x(1, 2, 3, 4),)),
    "UpsamplingBilinear2d": lambda: (nn.UpsamplingBilinear2d(scale_factor=1.5), (x(1, 2, 4, 4),)),
    "PixelShuffle": lambda: (nn.PixelShuffle(2), (x(1, 8, 3, 3),)),
    "PixelUnshuffle": lambda: (nn.PixelUnshuffle(3), (x(1, 2, 6, 6),)),
    "ChannelShuffle": lambda: (nn.ChannelShuffle(3), (x(1, 6, 2, 2),)),
    "Flatten": lambda: (nn.Flatten(0, 2), (x(2, 3, 4, 5),)),
    "Unflatten": lambda: (nn.Unflatten(-1, (2, 3)), (x(2, 6),)),
    # distances
    "PairwiseDistance": lambda: (nn.PairwiseDistance(p=1.5, eps=1e-4, keepdim=True), (x(3, 4), x(3, 4))),
    "CosineSimilarity": lambda: (nn.CosineSimilarity(dim=0, eps=1e-4), (x(3, 4), x(3, 4))),
    # containers
    "Sequential": lambda: (
        nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Sequential(nn.Linear(5, 2))),
        (x(3, 4),),
    ),
    "ModuleList": lambda: (nn.ModuleList([nn.Linear(2, 3), nn.ReLU(), nn.ModuleList([nn.Linear(3, 1)])]), ()),
    "ModuleDict": lambda: (nn.ModuleDict({"z": nn.Linear(2, 3), "a": nn.ModuleDict({"q": nn.GELU()})}), ()),
    "ParameterList": _param_list,
    "ParameterDict": _param_dict,
    # losses
    "L1Loss": lambda: (nn.L1Loss(reduction="sum"), (x(3, 4), x(3, 4))),
    "MSELoss": lambda: (nn.MSELoss(reduction="none"), (x(3, 4), x(3, 4))),
    "HuberLoss": lambda: (nn.HuberLoss(reduction="sum", delta=0.3), (x(3, 4), x(3, 4))),
    "SmoothL1Loss": lambda: (nn.SmoothL1Loss(reduction="sum", beta=0.3), (x(3, 4), x(3, 4))),
    "SoftMarginLoss": lambda: (
        nn.SoftMarginLoss(reduction="sum"),
        (x(3, 4), torch.randint(0, 2, (3, 4)) * 2.0 - 1),
    ),
    "CrossEntropyLoss": lambda: (
        nn.CrossEntropyLoss(weight=torch.rand(5) + 0.5, ignore_index=1, reduction="sum", label_smoothing=0.1),
        (x(4, 5), torch.tensor([0, 1, 2, 4])),
    ),
    "NLLLoss": lambda: (
        nn.NLLLoss(weight=torch.rand(5) + 0.5, ignore_index=2, reduction="sum"),
        (x(4, 5).log_softmax(1), torch.tensor([0, 1, 2, 4])),
    ),
    "NLLLoss2d": lambda: (
        nn.NLLLoss2d(weight=torch.rand(5) + 0.5, ignore_index=2, reduction="none"),
        (x(2, 5, 3, 3).log_softmax(1), torch.randint(0, 5, (2, 3, 3))),
    ),
    "BCELoss": lambda: (
        nn.BCELoss(weight=torch.rand(4) + 0.5, reduction="sum"),
        (torch.rand(3, 4), torch.rand(3, 4)),
    ),
    "BCEWithLogitsLoss": lambda: (
        nn.BCEWithLogitsLoss(weight=torch.rand(4) + 0.5, reduction="sum", pos_weight=torch.rand(4) + 1),
        (x(3, 4), torch.rand(3, 4)),
    ),
    "KLDivLoss": lambda: (
        nn.KLDivLoss(reduction="batchmean", log_target=True),
        (x(3, 4).log_softmax(1), x(3, 4).log_softmax(1)),
    ),
    "PoissonNLLLoss": lambda: (
        nn.PoissonNLLLoss(log_input=False, full=True, eps=1e-5, reduction="sum"),
        (torch.rand(3, 4) + 0.1, torch.randint(0, 5, (3, 4)).float()),
    ),
    "GaussianNLLLoss": lambda: (
        nn.GaussianNLLLoss(full=True, eps=1e-4, reduction="sum"),
        (x(3, 4), x(3, 4), torch.rand(3, 4) + 0.1),
    ),
    "HingeEmbeddingLoss": lambda: (
        nn.HingeEmbeddingLoss(margin=0.5, reduction="sum"),
        (x(3, 4), torch.randint(0, 2, (3, 4)) * 2.0 - 1),
    ),
    "CosineEmbeddingLoss": lambda: (
        nn.CosineEmbeddingLoss(margin=0.2, reduction="sum"),
        (x(3, 4), x(3, 4), torch.tensor([1.0, -1.0, 1.0])),
    ),
    "MarginRankingLoss": lambda: (
        nn.MarginRankingLoss(margin=0.2, reduction="sum"),
        (x(3), x(3), torch.tensor([1.0, -1.0, 1.0])),
    ),
    "MultiMarginLoss": lambda: (
        nn.MultiMarginLoss(p=2, margin=0.5, weight=torch.rand(4) + 0.5, reduction="sum"),
        (x(3, 4), torch.tensor([0, 3, 1])),
    ),
    "MultiLabelMarginLoss": lambda: (
        nn.MultiLabelMarginLoss(reduction="sum"),
        (x(2, 4), torch.tensor([[3, 0, -1, 1], [1, 2, 3, -1]])),
    ),
    "MultiLabelSoftMarginLoss": lambda: (
        nn.MultiLabelSoftMarginLoss(weight=torch.rand(4) + 0.5, reduction="sum"),
        (x(3, 4), torch.randint(0, 2, (3, 4)).float()),
    ),
    "TripletMarginLoss": lambda: (
        nn.TripletMarginLoss(margin=0.5, p=1.0, eps=1e-4, swap=True, reduction="sum"),
        (x(3, 4), x(3, 4), x(3, 4)),
    ),
    "CTCLoss": _ctc,
    "AdaptiveLogSoftmaxWithLoss": _adaptive_log_softmax,
    "LinearCrossEntropyLoss": _lce,
}

#: Layers whose forward depends on the training flag: rebuilt and compared in train and in eval mode.
TRAIN_AND_EVAL = {
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "AlphaDropout",
    "FeatureAlphaDropout",
    "RReLU",
    "RNN",
    "LSTM",
    "GRU",
    "MultiheadAttention",
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerDecoder",
    "Transformer",
    "Sequential",
}


def test_zoo_covers_every_registered_builtin() -> None:
    registered = {n.removeprefix("torch.nn.") for n in builtins.BUILTIN_NAMES}
    missing, extra = sorted(registered - set(ZOO)), sorted(set(ZOO) - registered)
    assert not missing and not extra, f"missing from the zoo: {missing}; not builtins: {extra}"


def _perturb(module: nn.Module) -> None:
    """Give every buffer a value its constructor would not, so a buffer that is not restored shows up."""
    with torch.no_grad():
        for name, b in module.named_buffers():
            if b.is_floating_point():
                b.uniform_(0.5, 1.5)
            elif name.endswith("num_batches_tracked"):
                b.fill_(7)


def _attributes(module: nn.Module) -> dict[str, dict[str, Any]]:
    """Every plain attribute torch keeps on each submodule (what the constructor stored), for comparison."""
    out = {}
    for path, m in module.named_modules():
        attrs = {}
        for k, v in vars(m).items():
            if k.startswith("_") or isinstance(v, (torch.Tensor, nn.Module)):
                continue
            attrs[k] = v if isinstance(v, (type(None), bool, int, float, str, tuple, list, dict)) else repr(v)
        out[path] = attrs
    return out


@pytest.mark.parametrize("name", sorted(ZOO))
def test_builtin_roundtrip(name: str) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated classes (NLLLoss2d), nested-tensor notes and the like
        module, inputs = ZOO[name]()
        _perturb(module)
        cls = type(module)
        assert spec_for_module(module, "test").name == f"torch.nn.{cls.__name__}"
        modes = [True, False] if name in TRAIN_AND_EVAL else [module.training]
        for training in modes:
            module.train(training)
            rebuilt = assert_roundtrip(module, *inputs)
            assert _attributes(rebuilt) == _attributes(module)
            assert type(rebuilt) is cls
            assert [type(m) for m in rebuilt.modules()] == [type(m) for m in module.modules()]
            assert rebuilt.training is training


# -- a few variants where a default-valued or module-valued argument takes another code path -----------
VARIANTS: dict[str, Callable[[], Case]] = {
    "Conv2d-padding-same": lambda: (nn.Conv2d(2, 4, 3, padding="same", dilation=2), (x(1, 2, 7, 7),)),
    "Conv1d-padding-valid": lambda: (nn.Conv1d(2, 4, 3, padding="valid"), (x(1, 2, 7),)),
    "LayerNorm-no-affine": lambda: (nn.LayerNorm(5, elementwise_affine=False, bias=False), (x(2, 5),)),
    "BatchNorm1d-no-affine-no-stats": lambda: (
        nn.BatchNorm1d(4, affine=False, track_running_stats=False, momentum=None),
        (x(3, 4),),
    ),
    "BatchNorm2d-momentum-none": lambda: (nn.BatchNorm2d(3, momentum=None), (x(2, 3, 2, 2),)),
    "GroupNorm-no-affine": lambda: (nn.GroupNorm(2, 4, affine=False), (x(2, 4, 3),)),
    "RMSNorm-no-affine": lambda: (nn.RMSNorm(4, elementwise_affine=False), (x(2, 4),)),
    "Linear-bias": lambda: (nn.Linear(3, 2), (x(2, 3),)),
    "Embedding-frozen": lambda: (
        nn.Embedding.from_pretrained(x(6, 3), freeze=True, padding_idx=1),
        (torch.tensor([1, 2, 5]),),
    ),
    "Upsample-size": lambda: (nn.Upsample(size=(3, 5), mode="nearest-exact"), (x(1, 2, 4, 4),)),
    "Upsample-trilinear": lambda: (
        nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False),
        (x(1, 2, 2, 2, 2),),
    ),
    "TransformerEncoderLayer-module-activation": lambda: (
        _enc_layer(activation=nn.GELU(approximate="tanh"), bias=True),
        (x(2, 5, 16),),
    ),
    "TransformerEncoderLayer-relu": lambda: (_enc_layer(activation=F.relu, bias=True), (x(2, 5, 16),)),
    "TransformerDecoderLayer-module-activation": lambda: (
        _dec_layer(activation=nn.SiLU()),
        (x(2, 3, 16), x(2, 5, 16)),
    ),
    "MultiheadAttention-default": lambda: (nn.MultiheadAttention(8, 2), (x(3, 2, 8), x(4, 2, 8), x(4, 2, 8))),
    "LSTM-single-layer": lambda: (nn.LSTM(3, 4), (x(5, 2, 3),)),
    "FractionalMaxPool2d-samples": lambda: (
        nn.FractionalMaxPool2d(2, output_size=4, _random_samples=torch.rand(2, 3, 2)),
        (x(2, 3, 9, 9),),
    ),
    "AdaptiveLogSoftmaxWithLoss-no-head-bias": lambda: (
        nn.AdaptiveLogSoftmaxWithLoss(6, 10, cutoffs=[3]),
        (x(4, 6), torch.tensor([0, 2, 5, 9])),
    ),
    "LinearCrossEntropyLoss-out-features": lambda: (
        nn.LinearCrossEntropyLoss(6, 5, out_features=(2,)),
        (x(4, 6), torch.randint(0, 5, (4, 2))),
    ),
    "LinearCrossEntropyLoss-options": lambda: (
        nn.LinearCrossEntropyLoss(
            6, 5, options=nn.LinearCrossEntropyOptions(batch_chunk_size=2, acc_policy="accurate")
        ),
        (x(4, 6), torch.tensor([0, 2, 4, 1])),
    ),
    "LinearCrossEntropyLoss-options-dtype": lambda: (
        nn.LinearCrossEntropyLoss(
            6, 5, options=nn.LinearCrossEntropyOptions(allow_retain_graph=True, acc_dtype=torch.float32)
        ),
        (),
    ),
    "Sequential-shared-child": lambda: (_shared_seq(), (x(2, 3),)),
    "Hardtanh-deprecated-names": lambda: (nn.Hardtanh(min_value=-0.25, max_value=0.75), (x(3, 4),)),
}


def _shared_seq() -> nn.Sequential:
    lin = nn.Linear(3, 3)
    return nn.Sequential(lin, nn.ReLU(), lin)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_builtin_variant_roundtrip(name: str) -> None:
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module, inputs = VARIANTS[name]()
        _perturb(module)
        for training in (True, False):
            module.train(training)
            rebuilt = assert_roundtrip(module, *inputs)
            assert _attributes(rebuilt) == _attributes(module)


def test_loss_weight_is_a_buffer_not_config(tmp_path: Path) -> None:
    """Tensor-valued constructor arguments come back as the file's buffers."""
    w = torch.tensor([0.5, 2.0, 1.5])
    loss = nn.CrossEntropyLoss(weight=w, label_smoothing=0.2)
    tmodel.save(loss, tmp_path / "l.tmodel")
    back = tmodel.load(tmp_path / "l.tmodel")
    assert torch.equal(back.weight, w)
    assert back.label_smoothing == 0.2
    with tmodel.open(tmp_path / "l.tmodel") as f:
        assert f.keys() == ["weight"]
        rec = f.manifest.modules[0]
        assert rec.type == "torch.nn.CrossEntropyLoss"
        assert rec.config["weight"] is None
        assert "device" not in rec.config and "dtype" not in rec.config
