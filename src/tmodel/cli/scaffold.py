"""What `tmodel migration new` writes: the next step of a layer, pre-filled by comparing the module record of
its newest frozen fixture with the class as the code defines it now, and a test of that step that runs as
written (`pytest DIR/test_STEP.py`)."""

from __future__ import annotations

import ast
import inspect
import json
import string
import typing
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import api
from ..errors import InvalidArgument, MigrationError, TModelError
from ..manifest.nodes import ModuleRef
from ..nn.references import resolve
from ..nn.registry import LayerSpec
from ..tensors.dtypes import torch_dtype
from ..tensors.values import no_tensor, to_python


@dataclass(frozen=True)
class Tensor:
    """One of a record's own tensors, as a step sees it."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    kind: str  # "parameter" or "buffer"


@dataclass(frozen=True)
class Field:
    """A config field of the current class: its default, if it has one, and the type a value has."""

    has_default: bool
    default: Any
    type: type | None


@dataclass
class Draft:
    """The lines of a step's two bodies: code, and `# TODO:` comments for what could not be derived."""

    version: int  # the fixture's: the step goes from it to the next
    up: list[str] = field(default_factory=list)
    down: list[str] = field(default_factory=list)  # in upgrade order: the downgrade runs them reversed
    notes: list[str] = field(default_factory=list)  # for the user, in the step and on the terminal

    def change(self, up: str, down: str | None = None) -> None:
        self.up.append(up)
        if down is not None:
            self.down.append(down)

    @property
    def written(self) -> int:
        return sum(not line.startswith("#") for line in self.up)

    @property
    def todo(self) -> int:
        return sum(line.startswith("# TODO") for line in self.up)


def q(name: str) -> str:
    """A name as a double-quoted Python string literal."""
    return json.dumps(name)


def draft_step(spec: LayerSpec, fixture: str) -> Draft:
    """Compare the layer's record in `fixture` with the current class, built from the fixture's config on
    the meta device (or, when that config no longer fits, from the config the step makes of it)."""
    config, tensors, children = _record(fixture, spec.name)
    draft = Draft(spec.version)
    name = spec.cls.__name__
    built, why = _build(spec, config)
    if built is not None:
        fields = {k: Field(True, v, type(v)) for k, v in spec.get_config(built).items()}
    else:
        fields, source = _fields(spec)
        draft.notes.append(f"the fixture's config does not build the current {name} ({why}): {source}")
    migrated = _config_changes(draft, config, fields)
    if built is None:
        built, why = _build(spec, migrated)
        if built is None:
            draft.change(f"# TODO: the current {name} does not build from the config this step makes ({why})")
            draft.notes.append("tensors and children not compared")
            return draft
        draft.notes.append(f"tensors compared with a {name} built on the meta device from that config")
    _tensor_changes(draft, tensors, _own_tensors(built))
    now = {k for k, c in built._modules.items() if c is not None}
    for child in sorted(children - now):
        draft.change(
            f"# TODO: child {q(child)} is gone in v{spec.version + 1}: a step edits only this record"
        )
    for child in sorted(now - children):
        draft.change(f"# TODO: child {q(child)} is new in v{spec.version + 1}: a step edits only this record")
    return draft


def _record(path: str, layer: str) -> tuple[dict[str, Any], dict[str, Tensor], set[str]]:
    """The config (as a step's `rec.config` holds it), own tensors and children of the layer's record."""
    with api.open_file(path) as f:
        m = f.manifest
    rec = next((r for r in m.modules if r.type == layer), None)
    if rec is None:
        raise InvalidArgument(f"{path} holds no module record of {layer}")

    def ref(node: Any, convert: Any) -> Any:
        try:
            return resolve(node, convert)
        except TModelError:
            return node  # a name this program no longer registers: compared as an opaque value

    config = {
        k: to_python(v, no_tensor(MigrationError), lambda i: ModuleRef(module=i), None, ref)
        for k, v in rec.config.items()
    }
    entry = m.tensors
    tensors = {
        k: Tensor(tuple(entry[p.tensor].shape), torch_dtype(entry[p.tensor].dtype), "parameter")
        for k, p in rec.parameters.items()
        if p is not None
    }
    for k, b in rec.buffers.items():
        if b is not None:
            tensors[k] = Tensor(tuple(entry[b].shape), torch_dtype(entry[b].dtype), "buffer")
    return config, tensors, {k for k, c in rec.children.items() if c is not None}


def _build(spec: LayerSpec, config: dict[str, Any]) -> tuple[nn.Module | None, str]:
    """The current class made from `config` on the meta device (no memory, no init cost), or why not."""
    try:
        spec.validate(config, "for the comparison")
        with torch.device("meta"):
            return spec.from_config(dict(config)), ""
    except Exception as exc:  # the layer's own code, fed an old config
        return None, " ".join(f"{type(exc).__name__}: {exc}".split())[:200]


def _fields(spec: LayerSpec) -> tuple[dict[str, Field], str]:
    """The current config fields, from the layer's config model or else its `__init__` arguments."""
    if spec.config_model is not None:
        model = spec.config_model
        out = {}
        for k, f in model.model_fields.items():
            default = None if f.is_required() else f.get_default(call_default_factory=True)
            kind = type(default) if default is not None else f.annotation
            out[k] = Field(not f.is_required(), default, kind if isinstance(kind, type) else None)
        return out, f"its fields come from {model.__name__}"
    init = spec.cls.__init__
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # annotations that do not resolve: types come from defaults only
        hints = {}
    out = {}
    for k, p in list(inspect.signature(init).parameters.items())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        has = p.default is not p.empty
        kind = type(p.default) if has and p.default is not None else hints.get(k)
        out[k] = Field(has, p.default if has else None, kind if isinstance(kind, type) else None)
    return out, f"its fields come from {spec.cls.__name__}.__init__"


def _pairs(removed: list[str], added: list[str], same: typing.Callable[[str, str], bool]) -> dict[str, str]:
    """Likely renames: a removed name and an added one that match each other and nothing else."""
    out = {}
    for r in removed:
        like = [a for a in added if same(r, a)]
        if len(like) == 1 and sum(same(x, like[0]) for x in removed) == 1:
            out[r] = like[0]
    return out


def _literal(value: Any) -> str | None:
    """`value` as Python source, if it is a literal that reads back as itself."""
    text = q(value) if isinstance(value, str) else repr(value)
    try:
        back = ast.literal_eval(text)
    except Exception:  # not a literal: nan, a class, an object
        return None
    return text if type(back) is type(value) and back == value else None


def _config_changes(draft: Draft, old: dict[str, Any], fields: dict[str, Field]) -> dict[str, Any]:
    """Write the config's changes; returns the config the step makes of the fixture's (defaults filled)."""
    removed = [k for k in old if k not in fields]
    added = [k for k in fields if k not in old]
    renames = _pairs(removed, added, lambda r, a: fields[a].type is type(old[r]))
    out = {k: v for k, v in old.items() if k in fields}
    for r, a in renames.items():
        draft.change(
            f"rec.config[{q(a)}] = rec.config.pop({q(r)})  # likely a rename: both {type(old[r]).__name__}",
            f"rec.config[{q(r)}] = rec.config.pop({q(a)})",
        )
        out[a] = old[r]
    for r in removed:
        if r not in renames:
            draft.change(
                f"rec.config.pop({q(r)})",
                f"# TODO: v{draft.version} had config {q(r)} ({old[r]!r} in its fixture): "
                f"rec.config[{q(r)}] = ...",
            )
    for a in added:
        if a in renames.values():
            continue
        f = fields[a]
        text = _literal(f.default) if f.has_default else None
        if text is not None:
            draft.change(f"rec.config[{q(a)}] = {text}", f"rec.config.pop({q(a)})")
            out[a] = f.default
        else:
            why = f"its default {f.default!r} is not a literal" if f.has_default else "it has no default"
            draft.change(f"# TODO: config {q(a)} is new and {why}: rec.config[{q(a)}] = ...")
    return out


def _own_tensors(module: nn.Module) -> dict[str, Tensor]:
    """A module's own parameters and persistent buffers, as its record holds them."""
    out = {
        k: Tensor(tuple(p.shape), p.dtype, "parameter")
        for k, p in module._parameters.items()
        if p is not None
    }
    for k, b in module._buffers.items():
        if b is not None and k not in module._non_persistent_buffers_set:
            out[k] = Tensor(tuple(b.shape), b.dtype, "buffer")
    return out


def _zeros(name: str, t: Tensor) -> str:
    dims = ", ".join(map(str, t.shape)) or "()"
    dtype = "" if t.dtype == torch.float32 else f", dtype={t.dtype}"
    kind = "" if t.kind == "parameter" else f', kind="{t.kind}"'
    return f"rec.add({q(name)}, torch.zeros({dims}{dtype}){kind})"


def _tensor_changes(draft: Draft, old: dict[str, Tensor], new: dict[str, Tensor]) -> None:
    removed = [k for k in old if k not in new]
    added = [k for k in new if k not in old]
    renames = _pairs(removed, added, lambda r, a: old[r] == new[a])
    for r, a in renames.items():
        draft.change(
            f"rec.rename({q(r)}, {q(a)})  # likely a rename: both {old[r].shape} {str(old[r].dtype)[6:]}",
            f"rec.rename({q(a)}, {q(r)})",
        )
    for r in removed:
        if r not in renames:
            draft.change(
                f"rec.drop({q(r)})",
                f"# TODO: v{draft.version} had {q(r)} {old[r].shape}: {_zeros(r, old[r])}",
            )
    for a in added:
        if a not in renames.values():
            draft.change(
                f"{_zeros(a, new[a])}  # TODO: zeros, or the values v{draft.version} behaved as if it had",
                f"rec.drop({q(a)})",
            )
    for k in old.keys() & new.keys():
        was, now = old[k], new[k]
        if was.shape != now.shape:
            dims = ", ".join(map(str, now.shape)) or "()"
            draft.change(
                f"# TODO: {q(k)} was {was.shape}, is now {now.shape}: "
                f"rec.transform({q(k)}, lambda t: t.reshape({dims}))"
            )
        elif was.dtype != now.dtype:
            draft.change(
                f"rec[{q(k)}] = rec[{q(k)}].to({now.dtype})", f"rec[{q(k)}] = rec[{q(k)}].to({was.dtype})"
            )
        if was.kind != now.kind:
            draft.change(f"# TODO: {q(k)} was a {was.kind}, is now a {now.kind}: drop it and add it back")


def step_source(layer: str, n: int, stem: str, fixture: str, draft: Draft | None, cls: str) -> str:
    """The step file: the upgrade and its downgrade, pre-filled from `draft` (None: no fixture to compare)."""
    m = n + 1
    finish = "finish the TODOs above, then delete this line"
    if draft is None:
        up = [
            f"# TODO: no frozen fixture of version {n} to compare with ({fixture})",
            _raise(
                f"{layer} v{n} -> v{m}: nothing to pre-fill this step from: freeze a fixture of version {n} "
                f"first, with the v{n} code (tmodel migration freeze {layer} --config '{{...}}'), and run "
                "tmodel migration new again; or write the step here"
            ),
        ]
        down = [_raise(f"{layer} v{m} -> v{n}: write the way back, or delete this downgrade")]
    else:
        up = [f"# pre-filled by tmodel migration new from {fixture} and the current {cls}: check every line"]
        up += [f"# {note}" for note in draft.notes] + draft.up
        if not draft.up:
            up.append(
                f"# TODO: no difference from the v{n} fixture: change the layer first (or delete the raise)"
            )
        if draft.todo or not draft.up:
            up.append(_raise(f"{layer} v{n} -> v{m}: {finish}"))
        down = list(reversed(draft.down))
        if draft.todo:
            down.insert(0, "# TODO: undo what the upgrade's TODOs do")
        down = down or ["pass  # nothing to undo"]
        if any(line.startswith("# TODO") for line in down):
            down.append(_raise(f"{layer} v{m} -> v{n}: {finish} (or delete this downgrade)"))
    imports = "import torch\n\n" if any("torch." in line for line in up + down) else ""
    return string.Template(STEP).substitute(
        layer=layer, n=n, m=m, stem=stem, imports=imports, up=_body(up), down=_body(down), qlayer=q(layer)
    )


def _raise(message: str) -> str:
    return f"raise NotImplementedError({q(message)})"


def _body(lines: list[str]) -> str:
    return "\n".join(f"    {line}" for line in lines)


def test_source(layer: str, n: int, stem: str, imports: list[str], fixtures: str, project: str) -> str:
    """The step's test: `project` is where the command ran, relative to the test's folder; `imports` and
    `fixtures` are as given there."""
    return string.Template(TEST).substitute(
        layer=layer,
        m=n + 1,
        stem=stem,
        project=q(project),
        values=f"{q(layer)}, {n + 1}, {q(stem)}",
        fixtures=q(fixtures),
        imports=json.dumps(imports),
    )


STEP = '''"""$layer: version $n -> $m. Describe what changed in the layer, and why."""

${imports}import tmodel
from tmodel.nn.steps import LayerRecord


def downgrade(rec: LayerRecord) -> None:
    """$layer v$m -> v$n, for readers that still run version $n; delete it if there is no way back."""
$down


@tmodel.migration($qlayer, from_version=$n, downgrade=downgrade)
def $stem(rec: LayerRecord) -> None:
    """Edit rec.config and the tensors: rename, drop, add, rec[name] = ..., split, merge."""
$up
'''

TEST = '''"""Every frozen fixture of $layer loads through the chain as version $m, round-trips, and gives the
output frozen with it."""

import glob
import importlib.util
import os
import sys

import torch

import tmodel
import tmodel.testing
from tmodel.cli.layers import load_layers
from tmodel.nn.registry import registered_spec
from tmodel.nn.steps import steps_of

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.normpath(os.path.join(HERE, $project))  # where `tmodel migration new` ran
LAYER, VERSION, STEP = $values
FIXTURES = os.path.join(PROJECT, $fixtures, LAYER)
IMPORTS = $imports  # the --import modules that register the layer


def register() -> None:
    """Import the layer's modules as the CLI does, then the step by its path (unless they imported it)."""
    if PROJECT not in sys.path:
        sys.path.insert(0, PROJECT)
    load_layers([os.path.join(PROJECT, name) if name.endswith(".py") else name for name in IMPORTS])
    if any(step.name == STEP for step in steps_of(LAYER).get(VERSION - 1, [])):
        return
    spec = importlib.util.spec_from_file_location(STEP, os.path.join(HERE, STEP + ".py"))
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_${stem}_loads_every_frozen_version() -> None:
    register()
    layer = registered_spec(LAYER)
    assert layer.version == VERSION, (
        f"{LAYER} is registered as version {layer.version}: @tmodel.register({LAYER!r}, version={VERSION})"
    )
    paths = sorted(glob.glob(os.path.join(glob.escape(FIXTURES), "v*.tmodel")))
    assert paths, f"no frozen fixture in {FIXTURES}: tmodel migration freeze {LAYER} --config '{{...}}'"
    for path in paths:
        try:
            saved = tmodel.load(path)
        except tmodel.TModelError as exc:
            raise AssertionError(f"{path} does not load through the chain: {exc.one_line()}") from None
        model = saved["model"]
        assert isinstance(model, layer.cls), f"{path}: 'model' is a {type(model).__name__}"
        tmodel.testing.assert_roundtrip(model)
        if "input" in saved and "output" in saved:
            with torch.no_grad():
                out = model.eval()(saved["input"])
            torch.testing.assert_close(
                out, saved["output"], rtol=1e-5, atol=1e-6, msg=lambda m: f"{path}: {m}"
            )
'''
