"""Modules with hooks and wrappers (SPEC.md Appendix A.6): parametrized modules round-trip whole (outputs,
state-dict keys and values, ties, flags, right_inverse never run on load); wrappers and hook-based
reparametrizations are refused at save with UNSUPPORTED_TYPE and the fix, and no file is written."""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations as pz
from torch.nn.utils import parametrize, prune

import tmodel
import tmodel.api
from tmodel.container.framing import HEADER_SIZE, TRAILER_SIZE, pack_trailer
from tmodel.errors import TModelError
from tmodel.manifest.encoding import pack_manifest
from tmodel.testing import assert_roundtrip


@tmodel.register("tests.hooks.Symmetric")
class Symmetric(nn.Module):
    """A parametrization with a right_inverse that counts its calls (a load must make none)."""

    inverse_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.triu() + x.triu(1).T

    def right_inverse(self, a: torch.Tensor) -> torch.Tensor:
        Symmetric.inverse_calls += 1
        return a.triu()


@tmodel.register("tests.hooks.Scale")
class Scale(nn.Module):
    """A parametrization with state of its own (a buffer) and a config."""

    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = k
        self.register_buffer("s", torch.tensor(k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.s


@tmodel.register("tests.hooks.RankOne")
class RankOne(nn.Module):
    """A parametrization of two originals (original0, original1) whose right_inverse runs an SVD."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(-1) @ y.unsqueeze(-2)

    def right_inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u, s, vh = torch.linalg.svd(z, full_matrices=False)
        root = s[0].sqrt().unsqueeze(-1)
        return u[..., :, 0] * root, vh[..., 0, :] * root


@tmodel.register("tests.hooks.Halved")
class Halved(nn.Module):
    """A parametrization whose right_inverse returns a sequence of one tensor: its original is original0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x

    def right_inverse(self, a: torch.Tensor) -> tuple[torch.Tensor]:
        return (a / 2,)


@tmodel.register("tests.hooks.Block")
class Block(nn.Module):
    """A layer whose constructor parametrizes its own child: the rebuilt child is filled in place."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = pz.weight_norm(nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).tanh()


@tmodel.register("tests.hooks.SelfNormed")
class SelfNormed(nn.Module):
    """A layer whose constructor parametrizes itself (its class becomes ParametrizedSelfNormed)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim, dim))
        pz.spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


def _seeded(make: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return make()

    return build


def _chain() -> nn.Module:
    m = nn.Linear(4, 4)
    parametrize.register_parametrization(m, "weight", Symmetric())
    parametrize.register_parametrization(m, "weight", Scale(1.5))
    return m


def _two_tensors() -> nn.Module:
    m = nn.Linear(4, 5)
    pz.weight_norm(m, dim=None)
    pz.spectral_norm(m, "bias")  # a 1-D tensor: no power-iteration buffers
    return m


def _frozen_original() -> nn.Module:
    m = pz.weight_norm(nn.Linear(3, 4))
    m.parametrizations.weight.original0.requires_grad_(False)
    return m


def _mixed_training() -> nn.Module:
    m = pz.spectral_norm(nn.Linear(5, 6))
    m.parametrizations.weight[0].eval()  # its own flag, not the host's
    return m


def _transformer() -> nn.Module:
    """Parametrized layers inside copies a constructor makes (TransformerEncoder clones its layer)."""
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    for block in model.layers:
        pz.weight_norm(block.linear1)
        pz.spectral_norm(block.linear2)
    return model.eval()


CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "weight_norm": (lambda: pz.weight_norm(nn.Linear(3, 4)), (2, 3)),
    "weight_norm_dim_none": (lambda: pz.weight_norm(nn.Conv1d(2, 3, 3), dim=None), (1, 2, 7)),
    "weight_norm_frozen_original": (_frozen_original, (2, 3)),
    "spectral_norm": (lambda: pz.spectral_norm(nn.Linear(5, 6)), (2, 5)),
    "spectral_norm_conv": (lambda: pz.spectral_norm(nn.Conv2d(3, 4, 3), n_power_iterations=3), (1, 3, 6, 6)),
    "spectral_norm_conv_transpose": (lambda: pz.spectral_norm(nn.ConvTranspose2d(3, 4, 2)), (1, 3, 4, 4)),
    "spectral_norm_eval": (lambda: pz.spectral_norm(nn.Linear(5, 6), eps=1e-6).eval(), (2, 5)),
    "spectral_norm_mixed_training": (_mixed_training, (2, 5)),
    "orthogonal_matrix_exp": (lambda: pz.orthogonal(nn.Linear(5, 5)), (2, 5)),
    "orthogonal_cayley_wide": (lambda: pz.orthogonal(nn.Linear(6, 3), orthogonal_map="cayley"), (2, 6)),
    "orthogonal_householder": (lambda: pz.orthogonal(nn.Linear(3, 6), orthogonal_map="householder"), (2, 3)),
    "orthogonal_no_trivialization": (
        lambda: pz.orthogonal(nn.Linear(3, 6), orthogonal_map="householder", use_trivialization=False),
        (2, 3),
    ),
    "user_chain": (_chain, (2, 4)),
    "user_two_originals": (
        lambda: parametrize.register_parametrization(nn.Linear(4, 4), "weight", RankOne()),
        (2, 4),
    ),
    "user_sequence_of_one": (
        lambda: parametrize.register_parametrization(nn.Linear(3, 2), "weight", Halved()),
        (2, 3),
    ),
    "user_unsafe": (
        lambda: parametrize.register_parametrization(nn.Linear(3, 3), "weight", Scale(2.0), unsafe=True),
        (2, 3),
    ),
    "two_tensors": (_two_tensors, (2, 4)),
    "buffer": (
        lambda: parametrize.register_parametrization(nn.BatchNorm1d(3).eval(), "running_var", Scale(2.0)),
        (4, 3),
    ),
    "transformer_layers": (_transformer, (2, 3, 8)),
    "constructor_parametrizes_child": (lambda: Block(4), (2, 4)),
    "constructor_parametrizes_itself": (lambda: SelfNormed(4), (2, 4)),
}


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return module.state_dict(keep_vars=True)


def _lists(module: nn.Module) -> list[tuple[str, str, bool, bool]]:
    """Each parametrization list: its path, its modules' classes, unsafe and training flags."""
    return [
        (name, ",".join(type(p).__name__ for p in m), m.unsafe, m.training)
        for name, m in module.named_modules()
        if isinstance(m, parametrize.ParametrizationList)
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_parametrized_module_round_trips_whole(case: str, tmp_path: Path) -> None:
    make, shape = CASES[case]
    model = _seeded(make)()
    path = tmp_path / "m.tmodel"
    tmodel.save(model, path)
    before = Symmetric.inverse_calls
    loaded = tmodel.load(path)  # a fresh load, through the dry run
    assert Symmetric.inverse_calls == before  # right_inverse never runs on load
    assert type(loaded).__name__ == type(model).__name__
    assert parametrize.type_before_parametrizations(loaded) is parametrize.type_before_parametrizations(model)
    assert _lists(loaded) == _lists(model)
    want, got = _state(model), _state(loaded)
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
        assert got[k].requires_grad == want[k].requires_grad, k
        assert type(got[k]) is type(want[k]), k
    assert [m.training for m in loaded.modules()] == [m.training for m in model.modules()]
    x = torch.randn(*shape)
    for _ in range(3):  # spectral norm in training mode updates its buffers on every forward: in step
        assert torch.equal(loaded(x), model(x))
    for k, v in _state(model).items():
        assert torch.equal(_state(loaded)[k], v), k
    assert_roundtrip(_seeded(make)(), x)  # configs, repr, ties, bit-exact outputs


def test_saving_leaves_a_spectral_norm_in_training_mode_as_it_was() -> None:
    model = pz.spectral_norm(nn.Linear(5, 6))
    u = model.parametrizations.weight[0]._u.clone()
    tmodel.save_bytes(model)
    assert torch.equal(model.parametrizations.weight[0]._u, u)


def test_the_file_holds_the_state_dict_names_and_torch_s_parametrization_types(tmp_path: Path) -> None:
    model = pz.spectral_norm(nn.Linear(5, 6))
    path = tmp_path / "m.tmodel"
    tmodel.save(model, path)
    with tmodel.open(path) as f:
        assert sorted(f.keys()) == sorted(model.state_dict())  # named by their state-dict keys
        assert [r.type for r in f.manifest.modules] == [
            "torch.nn.Linear",
            "torch.nn.ModuleDict",
            "torch.nn.utils.parametrize.ParametrizationList",
            "torch.nn.utils.parametrizations._SpectralNorm",
        ]
        configs = [r["config"] for r in f.manifest.to_wire()["modules"]]
        assert configs[2] == {"unsafe": False}
        assert configs[3] == {
            "n_power_iterations": 1,
            "dim": 0,
            "eps": 1e-12,
            "matrix_shape": {"list": [6, 5]},
        }


def test_orthogonal_rebuilds_on_the_meta_device() -> None:
    """Orthogonal's right_inverse (a QR) cannot run on meta tensors: the dry run and a meta load work
    because it is never called."""
    model = pz.orthogonal(nn.Linear(5, 5))
    loaded = tmodel.load_bytes(tmodel.save_bytes(model), map_location="meta")
    assert loaded.parametrizations.weight.original.is_meta
    assert loaded.parametrizations.weight[0].base.shape == (5, 5)


def test_a_dtype_cast_on_load_casts_the_originals() -> None:
    model = pz.weight_norm(nn.Linear(3, 4))
    loaded = tmodel.load_bytes(tmodel.save_bytes(model), dtype=torch.float16)
    assert loaded.parametrizations.weight.original1.dtype == torch.float16
    assert torch.equal(
        loaded.parametrizations.weight.original1, model.parametrizations.weight.original1.half()
    )
    assert loaded.weight.dtype == torch.float16


def test_ties_and_shared_parametrized_modules_survive() -> None:
    emb = nn.Embedding(5, 3)
    head = pz.weight_norm(nn.Linear(3, 5, bias=False))
    head.parametrizations.weight.original1 = emb.weight  # the direction tied to the embedding
    shared = pz.spectral_norm(nn.Linear(3, 3))
    model = nn.ModuleDict({"emb": emb, "head": head, "a": shared, "b": shared})
    loaded = tmodel.load_bytes(tmodel.save_bytes(model))
    assert loaded.head.parametrizations.weight.original1 is loaded.emb.weight
    assert loaded.a is loaded.b
    assert_roundtrip(model)


def test_a_parametrized_model_inside_a_checkpoint(tmp_path: Path) -> None:
    model = nn.Sequential(pz.weight_norm(nn.Linear(3, 3)), nn.ReLU(), pz.orthogonal(nn.Linear(3, 3)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    path = tmp_path / "ckpt.tmodel"
    tmodel.save({"model": model, "optim": opt.state_dict(), "step": 3}, path)
    loaded = tmodel.load(path)
    x = torch.randn(2, 3)
    assert torch.equal(loaded["model"](x), model(x))
    assert loaded["step"] == 3


def test_load_into_a_parametrized_model() -> None:
    torch.manual_seed(1)
    saved = pz.weight_norm(nn.Linear(3, 4))
    target = pz.weight_norm(nn.Linear(3, 4))
    report = tmodel.api.load_into(target, _as_file(tmodel.save_bytes(saved)))
    assert not report.missing and not report.unexpected
    x = torch.randn(2, 3)
    assert torch.equal(target(x), saved(x))


def _as_file(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def test_an_unregistered_parametrization_is_named_not_the_parametrized_class(tmp_path: Path) -> None:
    class Unregistered(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    class AlsoUnregistered(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    lin = parametrize.register_parametrization(nn.Linear(2, 2), "weight", Unregistered())
    path = tmp_path / "m.tmodel"
    with pytest.raises(TModelError) as info:
        tmodel.save(lin, path)
    assert info.value.code == "UNREGISTERED_TYPE"
    assert "Unregistered" in str(info.value) and "ParametrizedLinear" not in str(info.value)
    with pytest.raises(TModelError) as info:
        tmodel.save(nn.Sequential(lin, AlsoUnregistered()), path)
    assert info.value.code == "UNREGISTERED_TYPE"
    message = str(info.value)
    assert "2 unregistered classes" in message and "AlsoUnregistered" in message
    assert "Parametrized" not in message
    assert not path.exists()


@pytest.mark.parametrize("part", ["list", "holder"])
def test_a_parametrization_list_alone_is_refused_at_save(part: str, tmp_path: Path) -> None:
    model = pz.weight_norm(nn.Linear(3, 4))
    obj = model.parametrizations.weight if part == "list" else model.parametrizations
    path = tmp_path / "m.tmodel"
    with pytest.raises(TModelError) as info:
        tmodel.save(obj, path)
    assert info.value.code == "BAD_CONFIG"
    assert "rebuilt by the parametrized module it belongs to" in str(info.value)
    assert not path.exists()


def test_user_hooks_are_code_and_are_not_saved() -> None:
    model = nn.Linear(2, 2)
    model.register_forward_hook(lambda m, i, o: o * 0)
    model.register_forward_pre_hook(lambda m, i: None)
    loaded = tmodel.load_bytes(tmodel.save_bytes(model))
    assert not loaded._forward_hooks and not loaded._forward_pre_hooks
    x = torch.randn(1, 2)
    assert torch.equal(loaded(x), nn.functional.linear(x, model.weight, model.bias))


def test_a_hand_made_reparametrization_the_dry_run_cannot_rebuild_is_refused(tmp_path: Path) -> None:
    """Any other hook-kept state: the writer's dry run refuses what would not load, and writes nothing."""
    model = nn.Linear(3, 3)
    raw = model.weight
    del model.weight
    model.register_parameter("weight_raw", raw)
    model.register_forward_pre_hook(lambda m, args: setattr(m, "weight", m.weight_raw * 2))
    path = tmp_path / "m.tmodel"
    with pytest.raises(TModelError) as info:
        tmodel.save(model, path)
    assert info.value.code == "STATE_MISMATCH"
    assert not path.exists() and list(tmp_path.iterdir()) == []


# -- refused at save -----------------------------------------------------------------------------------------
def _old_weight_norm() -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in favour of parametrizations.weight_norm
        return torch.nn.utils.weight_norm(nn.Linear(3, 3))


def _iterative_pruning() -> nn.Module:
    m = prune.l1_unstructured(nn.Linear(3, 3), "weight", amount=0.5)
    return prune.random_unstructured(m, "weight", amount=0.2)  # a PruningContainer


def _global_pruning() -> nn.Module:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    prune.global_unstructured([(model[0], "weight"), (model[1], "bias")], prune.L1Unstructured, amount=0.3)
    return model


def _compiled() -> nn.Module:
    compiled: nn.Module = torch.compile(nn.Linear(2, 2))  # type: ignore[assignment]  # not compiled until called
    return compiled


REFUSED: dict[str, tuple[Callable[[], nn.Module], str, str]] = {
    # name: (make, the message's fix, the class named)
    "old_weight_norm": (_old_weight_norm, "torch.nn.utils.parametrizations.weight_norm", "Linear"),
    "old_spectral_norm": (
        lambda: torch.nn.utils.spectral_norm(nn.Linear(3, 3)),
        "torch.nn.utils.remove_spectral_norm(module, 'weight')",
        "Linear",
    ),
    "pruned": (
        lambda: prune.l1_unstructured(nn.Linear(3, 3), "weight", amount=0.5),
        "torch.nn.utils.prune.remove(module, 'weight')",
        "Linear",
    ),
    "pruned_iteratively": (
        _iterative_pruning,
        "save model.state_dict() to keep weight_orig and weight_mask",
        "Linear",
    ),
    "pruned_globally": (_global_pruning, "torch.nn.utils.prune.remove(module, 'weight')", "Linear"),
    "data_parallel": (lambda: nn.DataParallel(nn.Linear(2, 2)), "save model.module", "DataParallel"),
    "compiled": (_compiled, "save model._orig_mod", "OptimizedModule"),
}


def _places(module: nn.Module) -> list[tuple[Any, str]]:
    """The module at the root, inside a checkpoint dict, and as a child of a registered container."""
    return [
        (module, "checkpoint"),
        ({"model": module, "step": 1}, 'checkpoint["model"]'),
        (nn.Sequential(nn.Identity(), module), "checkpoint.1"),
    ]


def _assert_refused(obj: Any, where: str, fix: str, cls: str, tmp_path: Path) -> None:
    path = tmp_path / "refused.tmodel"
    with pytest.raises(TModelError) as info:
        tmodel.save(obj, path)
    assert info.value.code == "UNSUPPORTED_TYPE"
    message = str(info.value)
    assert message.startswith(where), message
    assert fix in message and cls in message, message
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either
    with pytest.raises(TModelError) as info:
        tmodel.save_bytes(obj)
    assert info.value.code == "UNSUPPORTED_TYPE"


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_hooks_and_wrappers_are_refused_at_save_with_the_fix(case: str, tmp_path: Path) -> None:
    make, fix, cls = REFUSED[case]
    for obj, where in _places(make()):
        if case == "pruned_globally" and where == "checkpoint.1":
            where = "checkpoint.1.0"
        elif case == "pruned_globally":
            where += ".0"
        _assert_refused(obj, where, fix, cls, tmp_path)


def test_the_fixes_the_messages_name_work() -> None:
    pruned = prune.l1_unstructured(nn.Linear(4, 4), "weight", amount=0.5)
    x = torch.randn(2, 4)
    expected = pruned(x)
    # save the state dict: weight_orig and weight_mask kept, loaded into a model pruned the same way
    state = tmodel.load_bytes(tmodel.save_bytes(pruned.state_dict()))
    target = prune.identity(nn.Linear(4, 4), "weight")
    report = tmodel.api.load_into(target, _as_file(tmodel.save_bytes(state)))
    assert not report.missing and not report.unexpected
    assert torch.equal(target.weight_mask, pruned.weight_mask) and torch.equal(target(x), expected)
    # or make the pruning permanent
    prune.remove(pruned, "weight")
    assert torch.equal(tmodel.load_bytes(tmodel.save_bytes(pruned))(x), expected)
    # old weight_norm: the parametrization, saved whole
    old = _old_weight_norm()
    torch.nn.utils.remove_weight_norm(old)
    assert torch.equal(tmodel.load_bytes(tmodel.save_bytes(old))(x[:, :3]), old(x[:, :3]))
    compiled = _compiled()
    assert isinstance(tmodel.load_bytes(tmodel.save_bytes(compiled._orig_mod)), nn.Linear)


@pytest.fixture
def process_group(tmp_path: Path) -> Any:
    """A one-process gloo group (DistributedDataParallel needs one), destroyed after the test."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_distributed_data_parallel_is_refused_at_save(process_group: Any, tmp_path: Path) -> None:
    ddp = nn.parallel.DistributedDataParallel(nn.Linear(2, 2))
    out = tmp_path / "out"
    out.mkdir()
    for obj, where in _places(ddp):
        _assert_refused(obj, where, "save model.module", "DistributedDataParallel", out)
    assert isinstance(tmodel.load_bytes(tmodel.save_bytes(ddp.module)), nn.Linear)


# -- a file's parametrization records, tampered with: coded errors on load -----------------------------------
def _rewrite_manifest(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """`data` with its manifest edited by `edit(wire)` and a trailer whose digests are correct again."""
    offset, length = struct.unpack_from("<QQ", data, len(data) - TRAILER_SIZE)
    wire = msgpack.unpackb(data[offset : offset + length], raw=False)
    edit(wire)
    raw = pack_manifest(wire)
    return data[:offset] + raw + pack_trailer(offset, raw, wire["checksum"], data[:HEADER_SIZE])


def _rename(mapping: dict[str, Any], old: str, new: str) -> None:
    items = list(mapping.items())
    mapping.clear()
    mapping.update((new if k == old else k, v) for k, v in items)


# records: 0 Linear, 1 ModuleDict, 2 ParametrizationList, 3 the parametrization
TAMPERED: dict[str, tuple[Callable[[], nn.Module], Callable[[dict[str, Any]], None], str]] = {
    "unsafe_not_bool": (
        lambda: pz.weight_norm(nn.Linear(3, 4)),
        lambda w: w["modules"][2]["config"].update(unsafe=1),
        "BAD_CONFIG",
    ),
    "list_config_extra": (
        lambda: pz.weight_norm(nn.Linear(3, 4)),
        lambda w: w["modules"][2]["config"].update(extra=True),
        "BAD_CONFIG",
    ),
    "list_version": (
        lambda: pz.weight_norm(nn.Linear(3, 4)),
        lambda w: w["modules"][2].update(version=2),
        "LAYER_VERSION",
    ),
    "list_alone_at_the_root": (
        lambda: pz.weight_norm(nn.Linear(3, 4)),
        lambda w: w.update(root={"module": 2}),
        "BAD_CONFIG",
    ),
    "list_children_misnamed": (
        lambda: pz.weight_norm(nn.Linear(3, 4)),
        lambda w: _rename(w["modules"][2]["children"], "0", "1"),
        "STATE_MISMATCH",
    ),
    "originals_misnamed": (
        lambda: pz.weight_norm(nn.Linear(3, 4)),
        lambda w: _rename(w["modules"][2]["parameters"], "original1", "original2"),
        "STATE_MISMATCH",
    ),
    "tensor_the_module_lacks": (
        lambda: pz.weight_norm(nn.Linear(3, 4)),
        lambda w: _rename(w["modules"][1]["children"], "weight", "scale"),
        "STATE_MISMATCH",
    ),
    "spectral_dim_negative": (
        lambda: pz.spectral_norm(nn.Linear(5, 6)),
        lambda w: w["modules"][3]["config"].update(dim=-1),
        "BAD_CONFIG",
    ),
    "spectral_matrix_shape_wrong": (
        lambda: pz.spectral_norm(nn.Linear(5, 6)),
        lambda w: w["modules"][3]["config"].update(matrix_shape={"list": [7, 5]}),
        "STATE_MISMATCH",
    ),
    "orthogonal_map_unknown": (
        lambda: pz.orthogonal(nn.Linear(5, 5)),
        lambda w: w["modules"][3]["config"].update(orthogonal_map="__class__"),
        "BAD_CONFIG",
    ),
    "orthogonal_shape_not_sizes": (
        lambda: pz.orthogonal(nn.Linear(5, 5)),
        lambda w: w["modules"][3]["config"].update(shape="5x5"),
        "BAD_CONFIG",
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_parametrization_records_raise_coded_errors(case: str) -> None:
    make, edit, code = TAMPERED[case]
    data = _rewrite_manifest(tmodel.save_bytes(make()), edit)
    for device in ("cpu", "meta"):
        with pytest.raises(TModelError) as info:
            tmodel.load_bytes(data, map_location=device)
        assert info.value.code == code, info.value
