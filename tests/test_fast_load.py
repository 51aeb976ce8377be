"""A whole model loads without materialising its constructors' parameters (`tmodel.nn.placement`: they are
made on meta, then replaced by the file's tensors, while buffers the file does not hold keep their
constructors' real values), and the dry run bounds the bytes the rebuilt modules hold against the bytes
the file stores (SPEC.md Appendix A.4): a few bytes viewed with stride 0 cannot ask for gigabytes."""

from __future__ import annotations

import dataclasses
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import fuzz_mutators as fm
import pytest
import torch
from torch import nn

import tmodel
import tmodel.api
from tmodel.errors import TModelError
from tmodel.limits import DEFAULT_LIMITS
from tmodel.nn.placement import meta_parameters
from tmodel.nn.registry import register_class


@tmodel.register("tests.fast.Rotary", version=1)
class Rotary(nn.Module):
    def __init__(self, dim: int, n: int) -> None:
        super().__init__()
        self.proj = nn.Parameter(torch.randn(dim, dim))
        inv = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv, persistent=False)
        self.register_buffer("position_ids", torch.arange(n).expand(1, -1), persistent=False)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))


@tmodel.register("tests.fast.Derived", version=1)
class Derived(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((n,), 2.0))
        self.register_buffer("total", self.weight.detach().sum(), persistent=False)


@pytest.fixture
def init_devices(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The device of every nn.Linear weight `reset_parameters` initialises."""
    seen: list[str] = []
    original = nn.Linear.reset_parameters

    def spy(self: nn.Linear) -> None:
        seen.append(self.weight.device.type)
        original(self)

    monkeypatch.setattr(nn.Linear, "reset_parameters", spy)
    return seen


def test_a_whole_model_is_filled_without_initialising_real_parameters(
    tmp_path: Path, init_devices: list[str]
) -> None:
    model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 8, bias=False))
    path = tmp_path / "m.tmodel"
    tmodel.save(model, path, codec="raw")
    init_devices.clear()
    out = tmodel.load(path)
    assert init_devices == ["meta"] * 2  # two Linears, constructed once on meta (the dry run), then filled
    for (name, p), (_, q) in zip(model.named_parameters(), out.named_parameters(), strict=True):
        assert type(q) is nn.Parameter and q.device.type == "cpu" and q.requires_grad, name
        assert torch.equal(p, q) and q.dtype == p.dtype
    assert out[2].bias is None


def test_a_constructors_non_persistent_buffers_keep_their_real_values(tmp_path: Path) -> None:
    model = Rotary(8, 16)
    model.steps += 5
    path = tmp_path / "r.tmodel"
    tmodel.save(model, path)
    out = tmodel.load(path)
    assert torch.equal(out.proj, model.proj) and out.proj.device.type == "cpu"
    assert torch.equal(out.inv_freq, model.inv_freq) and out.inv_freq.device.type == "cpu"
    assert torch.equal(out.position_ids, torch.arange(16).expand(1, -1))
    assert out.steps.item() == 5 and out.steps.dtype == torch.int64
    meta = tmodel.load(path, map_location="meta")
    assert meta.proj.is_meta and meta.inv_freq.is_meta and meta.proj.shape == (8, 8)


@tmodel.register("tests.fast.Remembers", version=1)
class Remembers(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((n,), 2.0))
        self.first = self.weight.detach()[0].clone()  # a plain tensor attribute, from the parameter


def test_a_tensor_attribute_computed_from_a_parameter_is_not_left_on_meta(tmp_path: Path) -> None:
    path = tmp_path / "a.tmodel"
    tmodel.save(Remembers(3), path)
    out = tmodel.load(path)
    assert not out.first.is_meta and out.first.item() == 2.0


def test_a_buffer_computed_from_a_parameter_is_rebuilt_with_real_parameters(tmp_path: Path) -> None:
    """A constructor that derives an unsaved buffer from its parameter would leave it on meta: the loader
    notices and builds again with real parameters, so the buffer is what the constructor computes."""

    model = Derived(3)
    with torch.no_grad():
        model.weight.mul_(5)
    path = tmp_path / "d.tmodel"
    tmodel.save(model, path)
    out = tmodel.load(path)
    assert not out.total.is_meta and out.total.item() == 6.0
    assert torch.equal(out.weight, torch.full((3,), 10.0))


@tmodel.register("tests.fast.Headed", version=1)
class Headed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(2, 2)
        self.head: nn.Module | None = nn.Linear(2, 2)


def test_a_child_slot_saved_empty_is_empty_after_loading(tmp_path: Path) -> None:
    """Its constructor builds the child, the saved module held None there: so does the loaded one (the
    constructor's child would be left with meta parameters, and was never the saved model's)."""
    model = Headed()
    model.head = None
    path = tmp_path / "e.tmodel"
    tmodel.save(model, path)
    out = tmodel.load(path)
    assert out.head is None and "head" in out._modules
    assert torch.equal(out.body.weight, model.body.weight) and not out.body.weight.is_meta


def test_the_registration_hook_is_per_thread_and_removed_even_on_error() -> None:
    from torch.nn.modules.module import _global_parameter_registration_hooks as hooks

    before = len(hooks)
    inside, built = threading.Event(), threading.Event()
    result: dict[str, Any] = {}

    def worker() -> None:
        with meta_parameters():
            inside.set()
            built.wait(10)
            result["linear"] = nn.Linear(2, 3)

    thread = threading.Thread(target=worker)
    thread.start()
    inside.wait(10)
    here = nn.Linear(2, 3)  # another thread, while the worker is inside: real
    built.set()
    thread.join(10)
    assert here.weight.device.type == "cpu" and result["linear"].weight.is_meta
    assert type(result["linear"].weight) is nn.Parameter and result["linear"].weight.shape == (3, 2)
    assert len(hooks) == before
    with pytest.raises(ZeroDivisionError), meta_parameters():
        assert len(hooks) == before + 1
        raise ZeroDivisionError
    assert len(hooks) == before and nn.Linear(2, 3).weight.device.type == "cpu"


def test_a_parameter_subclass_is_left_as_its_constructor_made_it() -> None:
    class Tagged(nn.Parameter):
        pass

    m = nn.Module()
    with meta_parameters():
        m.a = Tagged(torch.ones(2))
        m.b = nn.Parameter(torch.ones(2), requires_grad=False)
    assert type(m.a) is Tagged and m.a.device.type == "cpu"
    assert type(m.b) is nn.Parameter and m.b.is_meta and not m.b.requires_grad


# -- the byte rule of the dry run ---------------------------------------------------------------------


def _hostile_linear(tmp_path: Path, n: int) -> Path:
    """An nn.Linear(n, n) record whose weight and bias are stride-0 views of one stored float each."""
    path = tmp_path / "small.tmodel"
    tmodel.save(nn.Linear(1, 1), path, codec="raw")
    parts = fm.split(path.read_bytes())
    region, wire = fm.layout(parts)
    wire["modules"][0]["config"].update(in_features=n, out_features=n)
    for t in wire["tensors"]:
        t["shape"], t["strides"] = [n] * len(t["shape"]), [0] * len(t["shape"])
    hostile = tmp_path / "hostile.tmodel"
    hostile.write_bytes(fm.sign(parts.header, region, fm.encode(wire), parts.digest_name))
    return hostile


def test_a_linear_of_stride_0_views_of_4_bytes_is_refused_at_once(
    tmp_path: Path, init_devices: list[str]
) -> None:
    n = 30_000
    path = _hostile_linear(tmp_path, n)
    assert path.stat().st_size < 2048
    init_devices.clear()
    tracemalloc.start()
    began = time.perf_counter()
    try:
        with pytest.raises(TModelError) as info:
            tmodel.load(path)
        seconds = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.code == "LIMIT_EXCEEDED"
    wanted = (n * n + n) * 4
    assert f"create {wanted} bytes of parameters and buffers" in str(info.value)
    assert "for the 8 bytes of tensors the file holds" in str(info.value)
    assert init_devices == ["meta"]  # only the dry run constructed it
    assert seconds < 1.0
    assert peak < 8 << 20
    tmodel.load(path, map_location="meta")  # on meta nothing is allocated: no dry run, no limit


def _limit(n: int) -> Any:
    return dataclasses.replace(DEFAULT_LIMITS, max_unsaved_bytes=n)


def test_the_byte_rule_counts_exactly_what_goes_beyond_the_file(tmp_path: Path) -> None:
    """A hostile Linear(4, 4) over 8 stored bytes holds 80: 72 beyond them."""
    path = _hostile_linear(tmp_path, 4)
    with pytest.raises(TModelError) as info:
        tmodel.load(path, limits=_limit(71))
    assert (
        info.value.code == "LIMIT_EXCEEDED"
        and "80 bytes" in str(info.value)
        and "72 beyond" in str(info.value)
    )
    out = tmodel.load(path, limits=_limit(72))
    assert out.weight.shape == (4, 4) and out.weight.stride() == (0, 0)


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.head = nn.Linear(16, 100, bias=False)
        self.head.weight = self.emb.weight


tmodel.register("tests.fast.Tied", version=1)(Tied)


@tmodel.register("tests.fast.Halves", version=1)
class Halves(nn.Module):
    """Two parameters that the saved model made views of one storage."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(4, 8))
        self.b = nn.Parameter(torch.zeros(4, 8))


@tmodel.register("tests.fast.Cache", version=1)
class Cache(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(10))
        self.register_buffer("cache", torch.zeros(250), persistent=False)  # 1000 unsaved bytes


def _halves() -> Halves:
    m = Halves()
    base = torch.randn(8, 8)
    m.a, m.b = nn.Parameter(base[:4]), nn.Parameter(base[4:])
    return m


@pytest.mark.parametrize(
    ("make", "unsaved"),
    [
        (Tied, 0),
        (lambda: nn.Sequential(nn.Linear(64, 64), nn.LayerNorm(64)).half(), 0),  # fp16 file, fp32 constructor
        (lambda: nn.Sequential(nn.Linear(64, 64), nn.LayerNorm(64)).to(torch.bfloat16), 0),
        (_halves, 0),
        (Cache, 1000),
        (lambda: nn.BatchNorm1d(32), 0),
    ],
    ids=["tied", "fp16", "bf16", "views", "non_persistent", "batchnorm"],
)
def test_legit_models_need_no_bytes_beyond_their_files_but_unsaved_buffers(
    tmp_path: Path, make: Any, unsaved: int
) -> None:
    model = make()
    path = tmp_path / "ok.tmodel"
    tmodel.save(model, path)
    out = tmodel.load(path, limits=_limit(unsaved))
    sd, got = model.state_dict(), out.state_dict()
    assert sd.keys() == got.keys()
    for k in sd:
        assert torch.equal(sd[k], got[k]) and sd[k].dtype == got[k].dtype, k
    assert not any(t.is_meta for t in (*out.parameters(), *out.buffers()))
    if isinstance(model, Tied):
        assert out.head.weight is out.emb.weight
    if isinstance(model, Halves):
        assert out.a.untyped_storage().data_ptr() == out.b.untyped_storage().data_ptr()
    if unsaved:
        with pytest.raises(TModelError) as info:
            tmodel.load(path, limits=_limit(unsaved - 1))
        assert info.value.code == "LIMIT_EXCEEDED"


def test_a_checkpoint_and_load_into_still_work(tmp_path: Path) -> None:
    model = Tied()
    path = tmp_path / "ckpt.tmodel"
    tmodel.save({"model": model, "step": 3, "opt": {"m": torch.ones(3)}}, path)
    out = tmodel.load(path)
    assert out["step"] == 3 and out["model"].head.weight is out["model"].emb.weight
    assert torch.equal(out["model"].emb.weight, model.emb.weight)
    target = Tied()
    report = tmodel.load_into(target, path, key="model")
    assert not report.missing and torch.equal(target.emb.weight, model.emb.weight)


class Forgetful(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))


def _keep_the_constructors(module: nn.Module, kind: str, name: str, value: Any) -> None:
    """An attach that puts nothing in place: the constructor's parameter stays."""


register_class(
    Forgetful,
    "tests.fast.Forgetful",
    1,
    get_config=lambda m: {},
    from_config=lambda c: Forgetful(),
    attach=_keep_the_constructors,
)


def test_a_parameter_left_unfilled_is_a_state_mismatch_not_a_broken_model(tmp_path: Path) -> None:
    path = tmp_path / "f.tmodel"
    tmodel.save(Forgetful(), path)
    with pytest.raises(TModelError) as info:
        tmodel.load(path)
    assert info.value.code == "STATE_MISMATCH"
    assert "parameter 'weight' was not filled from the file" in str(info.value)


@tmodel.register("tests.fast.Looping", version=1)
class Looping(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(2))
        for _ in range(n):
            nn.init.normal_(self.weight)


def test_skipped_initialisers_still_count_against_the_op_budget(tmp_path: Path) -> None:
    path = tmp_path / "l.tmodel"
    tmodel.save(Looping(1), path)
    parts = fm.split(path.read_bytes())
    region, wire = fm.layout(parts)
    wire["modules"][0]["config"]["n"] = 10**8
    path.write_bytes(fm.sign(parts.header, region, fm.encode(wire), parts.digest_name))
    began = time.perf_counter()
    with pytest.raises(TModelError) as info:
        tmodel.load(path)
    assert info.value.code == "LIMIT_EXCEEDED" and "torch calls" in str(info.value)
    assert time.perf_counter() - began < 5


BUILT: list[str] = []


@tmodel.register("tests.fast.Counted", version=1)
class Counted(nn.Module):
    """Counts its constructions; `cache` keeps a tensor in a list attribute, as some layers cache values."""

    def __init__(self, n: int, cache: bool = False) -> None:
        super().__init__()
        BUILT.append(torch.empty(0).device.type)
        self.weight = nn.Parameter(torch.full((n,), 3.0))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.cached = [torch.arange(n)] if cache else []


def test_a_model_whose_tensors_are_all_in_the_file_is_constructed_once_on_meta(tmp_path: Path) -> None:
    """The dry run's modules are the loaded ones, filled with the file's tensors (SPEC.md Appendix A.4)."""
    path = tmp_path / "c.tmodel"
    tmodel.save(nn.Sequential(Counted(4), nn.Linear(4, 2)), path)
    BUILT.clear()
    out = tmodel.load(path)
    assert BUILT == ["meta"]
    assert torch.equal(out[0].weight, torch.full((4,), 3.0)) and not out[0].steps.is_meta
    assert all(not t.is_meta for t in out.state_dict().values())


def test_a_tensor_kept_in_a_list_attribute_gets_a_real_construction(tmp_path: Path) -> None:
    path = tmp_path / "l.tmodel"
    tmodel.save(Counted(3, cache=True), path)
    BUILT.clear()
    out = tmodel.load(path)
    assert BUILT[0] == "meta" and len(BUILT) >= 2  # the dry run's module kept a meta tensor: built again
    assert torch.equal(out.cached[0], torch.arange(3)) and not out.weight.is_meta
