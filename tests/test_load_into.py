"""`tmodel.load_into`: tied weights stored once or twice, the model's own ties kept and none added,
assign=True for models built on the meta device (assign=False refuses them), dtype, map_location, mmap,
file objects; strict failures leave the model as it was."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from torch import nn

import tmodel
from tmodel.errors import TModelError
from tmodel.interop.convert import convert


@tmodel.register("tests.load_into.Tied")
class Tied(nn.Module):
    """An embedding and an output head that share one weight (as language models do)."""

    def __init__(self, vocab: int = 11, dim: int = 4) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.emb.weight


class Untied(Tied):
    def __init__(self) -> None:
        super().__init__()
        self.head.weight = nn.Parameter(self.emb.weight.detach().clone())


def _trained() -> Tied:
    torch.manual_seed(0)
    model = Tied()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return model


def _code(fn: Any) -> str:
    try:
        fn()
    except TModelError as exc:
        return exc.code
    return "OK"


def _equal_state(model: nn.Module, want: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert list(got) == list(want)
    for k, v in want.items():
        assert torch.equal(got[k], v), k


def test_a_file_with_one_tensor_for_two_tied_keys_fills_both(tmp_path: Path) -> None:
    """The file holds only emb.weight (safetensors' save_model drops the duplicate name): head.weight is
    not missing, and the model's tie survives."""
    src = _trained()
    sd = {k: v for k, v in src.state_dict().items() if k != "head.weight"}
    tmodel.save(sd, tmp_path / "once.tmodel")
    dst = Tied()
    report = tmodel.load_into(dst, tmp_path / "once.tmodel")
    assert report and report.missing == report.unexpected == report.mismatched == []
    assert dst.head.weight is dst.emb.weight
    _equal_state(dst, src.state_dict())
    # and the other name alone works as well
    tmodel.save({k: v for k, v in src.state_dict().items() if k != "emb.weight"}, tmp_path / "h.tmodel")
    dst = Tied()
    assert tmodel.load_into(dst, tmp_path / "h.tmodel")
    assert dst.head.weight is dst.emb.weight
    _equal_state(dst, src.state_dict())


def test_safetensors_save_model_files_load_into_tied_models(tmp_path: Path) -> None:
    src = _trained()
    safetensors.torch.save_model(src, str(tmp_path / "m.safetensors"))
    convert(tmp_path / "m.safetensors", tmp_path / "m.tmodel")
    with tmodel.open(tmp_path / "m.tmodel") as f:
        assert ("head.weight" in f) != ("emb.weight" in f)
    dst = Tied()
    assert tmodel.load_into(dst, tmp_path / "m.tmodel")
    assert dst.head.weight is dst.emb.weight
    _equal_state(dst, src.state_dict())


def test_two_different_tensors_for_one_tie_are_mismatched(tmp_path: Path) -> None:
    src = _trained()
    sd = dict(src.state_dict())
    sd["head.weight"] = sd["head.weight"].clone() + 1  # the file's two names disagree
    tmodel.save(sd, tmp_path / "bad.tmodel")
    dst = Tied()
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(TModelError) as info:
        tmodel.load_into(dst, tmp_path / "bad.tmodel")
    assert info.value.code == "STATE_MISMATCH" and "tied in the model" in str(info.value)
    _equal_state(dst, before)  # nothing was changed
    report = tmodel.load_into(dst, tmp_path / "bad.tmodel", strict=False)
    assert report.mismatched == ["emb.weight, head.weight: tied in the model, different tensors in the file"]
    assert torch.equal(dst.emb.weight, before["emb.weight"])  # that group was not loaded
    assert torch.equal(dst.norm.weight, src.norm.weight)  # the rest was
    # two equal copies are fine
    sd["head.weight"] = sd["emb.weight"].clone()
    tmodel.save(sd, tmp_path / "copies.tmodel")
    dst = Tied()
    assert tmodel.load_into(dst, tmp_path / "copies.tmodel")
    _equal_state(dst, src.state_dict())


def test_a_file_tie_is_not_forced_on_an_untied_model(tmp_path: Path) -> None:
    src = _trained()
    tmodel.save(src, tmp_path / "tied.tmodel")
    for assign in (False, True):
        dst = Untied()
        assert tmodel.load_into(dst, tmp_path / "tied.tmodel", assign=assign)
        assert dst.head.weight is not dst.emb.weight
        assert dst.head.weight.data_ptr() != dst.emb.weight.data_ptr()
        assert torch.equal(dst.head.weight, src.emb.weight) and torch.equal(dst.emb.weight, src.emb.weight)
        with torch.no_grad():
            dst.head.weight.add_(1)
        assert torch.equal(dst.emb.weight, src.emb.weight)


@pytest.mark.parametrize("stored", ["module", "state_dict", "once"])
def test_assign_fills_a_meta_model(tmp_path: Path, stored: str) -> None:
    src = _trained()
    obj: Any = {"module": src, "state_dict": src.state_dict()}.get(stored)
    if stored == "once":
        obj = {k: v for k, v in src.state_dict().items() if k != "head.weight"}
    tmodel.save(obj, tmp_path / "m.tmodel")
    with torch.device("meta"):
        dst = Tied()
    report = tmodel.load_into(dst, tmp_path / "m.tmodel", assign=True)
    assert report
    assert not any(t.is_meta for t in dst.state_dict().values())
    assert dst.head.weight is dst.emb.weight  # one parameter object for the tie
    assert all(type(p) is nn.Parameter and p.requires_grad for p in dst.parameters())
    _equal_state(dst, src.state_dict())
    assert dst.head(dst.emb(torch.tensor([1]))).shape == (1, 11)  # a working model


def test_assign_false_on_a_meta_model_is_refused(tmp_path: Path) -> None:
    tmodel.save(_trained(), tmp_path / "m.tmodel")
    with torch.device("meta"):
        dst = Tied()
    with pytest.raises(TModelError) as info:
        tmodel.load_into(dst, tmp_path / "m.tmodel")
    assert info.value.code == "INVALID_ARGUMENT" and "assign=True" in str(info.value)
    assert all(t.is_meta for t in dst.state_dict().values())


def test_assign_keeps_requires_grad_and_buffers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    with torch.no_grad():
        src[1].running_mean.uniform_()
        src[1].num_batches_tracked.fill_(7)
    tmodel.save(src, tmp_path / "m.tmodel")
    with torch.device("meta"):
        dst = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    dst[0].bias.requires_grad_(False)
    assert tmodel.load_into(dst, tmp_path / "m.tmodel", assign=True)
    assert dst[0].weight.requires_grad and not dst[0].bias.requires_grad
    assert dst[1].num_batches_tracked.dtype == torch.int64 and int(dst[1].num_batches_tracked) == 7
    assert "running_mean" in dst[1]._buffers and not dst[1].running_mean.is_meta
    _equal_state(dst, src.state_dict())


def test_dtype_and_assign(tmp_path: Path) -> None:
    src = _trained()
    tmodel.save(src, tmp_path / "m.tmodel")
    with torch.device("meta"):
        dst = Tied()
    assert tmodel.load_into(dst, tmp_path / "m.tmodel", assign=True, dtype=torch.float16)
    assert {p.dtype for p in dst.parameters()} == {torch.float16}
    assert torch.equal(dst.emb.weight, src.emb.weight.half()) and dst.head.weight is dst.emb.weight
    # copying keeps the model's own dtype: values go through the cast
    dst = Tied()
    assert tmodel.load_into(dst, tmp_path / "m.tmodel", dtype=torch.float16)
    assert dst.emb.weight.dtype == torch.float32
    assert torch.equal(dst.emb.weight, src.emb.weight.half().float())
    assert (
        _code(lambda: tmodel.load_into(Tied(), tmp_path / "m.tmodel", dtype=torch.int8)) == "INVALID_ARGUMENT"
    )


def test_map_location_and_mmap(tmp_path: Path) -> None:
    src = _trained()
    tmodel.save(src, tmp_path / "raw.tmodel", codec="raw")
    seen: list[str] = []

    def spy(storage: torch.UntypedStorage, location: str) -> None:
        seen.append(location)

    with torch.device("meta"):
        dst = Tied()
    assert tmodel.load_into(dst, tmp_path / "raw.tmodel", assign=True, map_location=spy)
    assert seen and set(seen) == {"cpu"}
    _equal_state(dst, src.state_dict())
    with torch.device("meta"):
        meta = Tied()
    assert tmodel.load_into(meta, tmp_path / "raw.tmodel", assign=True, map_location={"cpu": "meta"})
    assert all(t.is_meta for t in meta.state_dict().values())
    for mmap in (True, False):
        dst = Tied()
        assert tmodel.load_into(dst, tmp_path / "raw.tmodel", assign=True, mmap=mmap)
        with torch.no_grad():
            dst.norm.weight.add_(1)  # copy-on-write when mapped: the file is untouched
        again = Tied()
        tmodel.load_into(again, tmp_path / "raw.tmodel")
        assert torch.equal(again.norm.weight, src.norm.weight)
    assert (
        _code(lambda: tmodel.load_into(Tied(), tmp_path / "raw.tmodel", map_location=3)) == "INVALID_ARGUMENT"
    )


def test_from_a_file_object_and_bytes_io(tmp_path: Path) -> None:
    src = _trained()
    buf = io.BytesIO()
    tmodel.save(src, buf)
    buf.seek(0)
    dst = Tied()
    assert tmodel.load_into(dst, buf)
    _equal_state(dst, src.state_dict())
    (tmp_path / "m.tmodel").write_bytes(buf.getvalue())
    with open(tmp_path / "m.tmodel", "rb") as f:
        dst = Tied()
        assert tmodel.load_into(dst, f, assign=True)
    _equal_state(dst, src.state_dict())


def test_strict_reports_ties_by_group(tmp_path: Path) -> None:
    """A tie group is missing only when the file has none of its keys."""
    src = _trained()
    tmodel.save({"norm.weight": src.norm.weight, "norm.bias": src.norm.bias}, tmp_path / "n.tmodel")
    dst = Tied()
    report = tmodel.load_into(dst, tmp_path / "n.tmodel", strict=False)
    assert report.missing == ["emb.weight", "head.weight"] and report.unexpected == []
    assert torch.equal(dst.norm.weight, src.norm.weight)
    with pytest.raises(TModelError) as info:
        tmodel.load_into(Tied(), tmp_path / "n.tmodel")
    assert info.value.code == "STATE_MISMATCH" and "emb.weight" in str(info.value)


def test_load_into_applies_layer_migrations_as_load_does() -> None:
    """A v1 file of the worked example (fused qkv) loads into a model of today's v3 (q, k, v) through the
    chain, with the same tensors `tmodel.load` gives (issue 15, point 4)."""
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from examples.migrations import attention as example

    path = root / "examples" / "migrations" / "fixtures" / "example.Attention" / "v1.tmodel"
    loaded = tmodel.load(path)["model"]
    assert isinstance(loaded, example.Attention)
    fresh = example.Attention(**registry_config(loaded))
    report = tmodel.load_into(fresh, path, key="model")
    assert not report.missing and not report.unexpected and not report.mismatched
    want, got = loaded.state_dict(), fresh.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    with pytest.raises(TModelError) as info:  # steps read tensors: not on the meta device
        tmodel.load_into(fresh, path, key="model", map_location="meta", assign=True)
    assert info.value.code == "INVALID_ARGUMENT" and "migration steps" in str(info.value)


def registry_config(module: nn.Module) -> dict[str, object]:
    from tmodel.nn import registry

    return registry.spec_for_module(module, "test").get_config(module)


def test_a_state_dict_that_does_not_fit_says_it_records_no_layers(tmp_path: Path) -> None:
    tmodel.save(nn.Linear(3, 2).state_dict(), tmp_path / "sd.tmodel")
    with pytest.raises(TModelError) as info:
        tmodel.load_into(nn.Linear(4, 2), tmp_path / "sd.tmodel")
    assert info.value.code == "STATE_MISMATCH"
    assert "records no layers" in str(info.value) and "tmodel.save(model, path)" in str(info.value)
