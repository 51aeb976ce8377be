"""Helpers for layer authors: `assert_roundtrip` proves a layer saves and rebuilds completely."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch
from torch import nn

from . import api
from .nn.parametrized import saved_class, spec_for_saved
from .nn.registry import qualified_name


def _bits(t: torch.Tensor) -> torch.Tensor:
    """Bytes of the values, so NaN payloads and -0.0 compare exactly."""
    flat = t.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8) if flat.numel() else flat.to(torch.uint8)


def _canon(value: Any, paths: dict[int, str]) -> Any:
    if isinstance(value, nn.Module):
        return ("module", paths.get(id(value), type(value).__name__))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_canon(v, paths) for v in value])
    if isinstance(value, dict):
        return ("dict", [(k, _canon(v, paths)) for k, v in value.items()])
    return value


def _configs(module: nn.Module) -> dict[str, Any]:
    paths = {id(m): name for name, m in module.named_modules(remove_duplicate=False)}
    out: dict[str, tuple[str, int | None, Any, bool]] = {}
    for name, m in module.named_modules():
        spec = spec_for_saved(m, name or "<root>")
        if spec is None:  # built by its parent: recorded by class, with no config
            out[name] = (qualified_name(saved_class(m)), None, None, m.training)
        else:
            out[name] = (spec.name, spec.version, _canon(spec.get_config(m), paths), m.training)
    return out


def _ties(module: nn.Module) -> list[list[str]]:
    groups: dict[int, list[str]] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return sorted(sorted(g) for g in groups.values())


def _same_output(a: Any, b: Any, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), f"{where}: output is a {type(b).__name__}, expected a tensor"
        assert a.dtype == b.dtype and a.shape == b.shape, (
            f"{where}: {b.dtype}{list(b.shape)} != {a.dtype}{list(a.shape)}"
        )
        assert torch.equal(_bits(a), _bits(b)), f"{where}: outputs differ"
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: output structure differs"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_output(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: output keys differ"
        for k in a:
            _same_output(a[k], b[k], f"{where}[{k!r}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_roundtrip(module: nn.Module, *example_inputs: Any) -> nn.Module:
    """Save `module`, rebuild it from the bytes alone, and assert that the two agree: class tree, configs,
    versions, training flags, every parameter and persistent buffer bit for bit (dtype, shape, requires_grad),
    tied parameters still tied, and outputs on `example_inputs` (same RNG seed for both). Returns the copy.

    >>> rebuilt = tmodel.testing.assert_roundtrip(Gate(8), torch.randn(2, 8))
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "roundtrip.tmodel")
        api.save(module, path)
        rebuilt = api.load(path)
    assert isinstance(rebuilt, nn.Module), f"loaded a {type(rebuilt).__name__}, not a module"
    assert repr(rebuilt) == repr(module), f"repr differs:\n{rebuilt!r}\n!=\n{module!r}"
    assert _configs(rebuilt) == _configs(module), "configs, versions or training flags differ"
    want, got = module.state_dict(keep_vars=True), rebuilt.state_dict(keep_vars=True)
    assert list(got) == list(want), f"state keys differ: {sorted(set(want) ^ set(got))}"
    for k, w in want.items():
        g = got[k]
        assert g.dtype == w.dtype and g.shape == w.shape, (
            f"{k}: {g.dtype}{list(g.shape)} != {w.dtype}{list(w.shape)}"
        )
        assert g.requires_grad == w.requires_grad, f"{k}: requires_grad differs"
        assert torch.equal(_bits(g), _bits(w)), f"{k}: values differ"
    assert _ties(rebuilt) == _ties(module), "tied parameters differ"
    if example_inputs:
        with torch.no_grad():
            torch.manual_seed(0)
            expected = module(*example_inputs)
            torch.manual_seed(0)
            actual = rebuilt(*example_inputs)
        _same_output(expected, actual, "output")
    return rebuilt
