"""`tmodel migrate` and `tmodel migration new|check|history|freeze`: the command-line side of layer
migrations. User layers are found through `--import MODULE` or the `tmodel.layers` entry-point group of
installed packages, never through names read from a file."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, TextIO

from ..errors import InvalidArgument, MigrationError
from .keys import add_key_options, key_of
from .layers import add_import_option, load_layers


def _targets(pairs: list[str]) -> dict[str, int]:
    out = {}
    for pair in pairs:
        layer, _, version = pair.partition("=")
        if not layer or not version.isdigit():
            raise InvalidArgument(f"--to takes LAYER=VERSION, e.g. acme.Gate=1, not {pair!r}")
        out[layer] = int(version)
    return out


def _migrate(args: argparse.Namespace, out: TextIO) -> int:
    from .. import rewrite

    load_layers(args.imports)
    targets = _targets(args.to)
    if args.dry_run:
        lines = rewrite.migration_plan(args.file, targets, key=key_of(args))
        out.write("\n".join(lines) + "\n" if lines else f"{args.file}: up to date\n")
        return 0
    if bool(args.output) == args.in_place:
        raise InvalidArgument("give -o OUT or --in-place")
    if args.backup is not None and not args.in_place:
        raise InvalidArgument("--backup goes with --in-place")
    suffix = ".bak" if args.backup is None else args.backup
    lines = rewrite.migrate_file(
        args.file,
        args.output,
        in_place=args.in_place,
        backup=suffix,
        targets=targets,
        progress=True,
        key=key_of(args),
    )
    target = args.file if args.in_place else args.output
    if not lines:
        out.write(f"{args.file}: up to date, nothing written\n")
    for line in lines:
        out.write(f"{target}: {line}\n")
    if args.in_place and lines:
        out.write(f"backup: {args.file}{suffix}\n")
    return 0


def _file_stem(layer: str) -> str:
    return layer.replace(".", "_").lower()


def _new(args: argparse.Namespace, out: TextIO) -> int:
    from ..nn.registry import registered_spec
    from . import scaffold

    load_layers(args.imports)
    spec = registered_spec(args.layer)
    n = spec.version
    stem = f"{_file_stem(args.layer)}_v{n}_to_v{n + 1}"
    step_path = os.path.join(args.dir, f"{stem}.py")
    test_path = os.path.join(args.dir, f"test_{stem}.py")
    for path in (step_path, test_path):
        if os.path.exists(path):
            raise InvalidArgument(f"{path} exists")
    fixture = _fixture(args.fixtures, spec.name, n)
    draft = scaffold.draft_step(spec, fixture) if os.path.exists(fixture) else None
    cls = f"{spec.cls.__module__}.{spec.cls.__qualname__}"
    step = scaffold.step_source(spec.name, n, stem, fixture, draft, cls)
    project = os.path.relpath(os.getcwd(), os.path.abspath(args.dir))
    test = scaffold.test_source(spec.name, n, stem, args.imports, args.fixtures, project)
    os.makedirs(args.dir, exist_ok=True)
    with open(step_path, "x") as f:
        f.write(step)
    with open(test_path, "x") as f:
        f.write(test)
    out.write(f"wrote {step_path}\nwrote {test_path}\n")
    if draft is None:
        out.write(
            f"no fixture of version {n} to compare with ({fixture}): the step is a TODO; freeze one with the "
            f"v{n} code first (tmodel migration freeze {spec.name} --config '{{...}}')\n"
        )
    else:
        out.write(f"pre-filled from {fixture}: {draft.written} change(s) in code, {draft.todo} TODO(s)\n")
        out.writelines(f"note: {note}\n" for note in draft.notes)
    out.write(
        f'next: bump @tmodel.register("{spec.name}", version={n + 1}), finish the step, then: '
        f"pytest {test_path}\n"
    )
    return 0


def _custom_specs() -> list[Any]:
    from ..nn import builtins
    from ..nn.registry import all_specs

    return [s for s in all_specs() if s.name not in builtins.BUILTIN_NAMES]


def _check(args: argparse.Namespace, out: TextIO) -> int:
    from ..nn.chain import check_chains
    from ..nn.steps import steps_of

    load_layers(args.imports)
    specs = _custom_specs()
    # a chain reaches back to the oldest version anything knows of: a step, or a frozen fixture (so a
    # deleted first step is a gap, not a shorter chain)
    oldest = {
        spec.name: min([*steps_of(spec.name), *_fixture_versions(args.fixtures, spec.name), spec.version])
        for spec in specs
    }
    problems = check_chains(oldest)
    for spec in specs:
        for v in range(oldest[spec.name], spec.version + 1):
            path = _fixture(args.fixtures, spec.name, v)
            if not os.path.exists(path):
                problems.append(f"{spec.name}: no frozen fixture of version {v} ({path})")
            else:
                problems += _fixture_problems(spec, v, path)
    for p in problems:
        out.write(f"problem: {p}\n")
    if problems:
        raise MigrationError(f"{len(problems)} problem(s) in the migration chains")
    if not specs:
        raise InvalidArgument(
            "no layers of your own are registered, so there is nothing to check: name the module that "
            "defines them (--import MODULE or --import path/to/layers.py), or install a tmodel.layers "
            "entry point"
        )
    out.write(
        f"ok: {len(specs)} layer(s), complete unbranched chains, fixtures for every version load and give "
        "their frozen outputs\n"
    )
    return 0


def _history(args: argparse.Namespace, out: TextIO) -> int:
    from ..nn.registry import registered_spec
    from ..nn.steps import steps_of

    load_layers(args.imports)
    specs = [registered_spec(args.layer)] if args.layer else _custom_specs()
    for spec in specs:
        out.write(f"{spec.name}: version {spec.version} ({spec.cls.__module__}.{spec.cls.__qualname__})\n")
        for k, found in steps_of(spec.name).items():
            for step in found:
                back = ", downgrade" if step.downgrade else ""
                out.write(f"  v{k} -> v{k + 1}: {step.name}{back}\n")
    return 0


def _fixture(folder: str, layer: str, version: int) -> str:
    return os.path.join(folder, layer, f"v{version}.tmodel")


def _fixture_versions(folder: str, layer: str) -> list[int]:
    """The versions of a layer's frozen fixtures (`<folder>/<layer>/v<N>.tmodel`)."""
    try:
        names = os.listdir(os.path.join(folder, layer))
    except OSError:
        return []
    found = (n[1:-7] for n in names if n.startswith("v") and n.endswith(".tmodel"))
    return [int(v) for v in found if v.isdigit()]


def _fixture_problems(spec: Any, version: int, path: str) -> list[str]:
    """A fixture must load through the chain as the registered class and, when `freeze` recorded a
    sample input and its output, give that output again (within float tolerance across machines)."""
    import torch

    from .. import api
    from ..errors import TModelError

    where = f"{spec.name}: fixture of version {version} ({path})"
    try:
        saved = api.load(path)
    except TModelError as exc:
        return [f"{where} does not load through the chain: {exc.one_line()}"]
    model: Any = saved.get("model") if isinstance(saved, dict) else None
    if type(model) is not spec.cls:
        return [f"{where} holds no {spec.cls.__name__} under 'model'"]
    if "input" not in saved or "output" not in saved:
        return []
    model.eval()
    try:
        with torch.no_grad():
            out = model(saved["input"])
        torch.testing.assert_close(out, saved["output"], rtol=1e-5, atol=1e-6)
    except Exception as exc:  # the layer's own forward, or the comparison
        detail = " ".join(str(exc).split())[:300]
        return [f"{where}: its output is not the one frozen with it: {detail}"]
    return []


def _freeze(args: argparse.Namespace, out: TextIO) -> int:
    import torch

    from .. import api
    from ..nn.registry import registered_spec

    load_layers(args.imports)
    spec = registered_spec(args.layer)
    path = _fixture(args.dir, spec.name, spec.version)
    if os.path.exists(path):
        raise InvalidArgument(f"{path} is frozen: fixtures are never regenerated")
    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"--config is not JSON: {exc}") from None
    torch.manual_seed(args.seed)
    module = spec.from_config(config)
    frozen: dict[str, Any] = {"model": module}
    if args.input_shape:
        try:
            shape = [int(n) for n in args.input_shape.split(",")]
        except ValueError:
            raise InvalidArgument(
                f"--input-shape takes sizes such as 2,8, not {args.input_shape!r}"
            ) from None
        frozen["input"] = torch.randn(shape)
        try:
            with torch.no_grad():
                frozen["output"] = module.eval()(frozen["input"])
        except Exception as exc:  # the layer's own forward
            detail = " ".join(str(exc).split())[:300]
            raise InvalidArgument(
                f"--input-shape {args.input_shape}: the layer's forward failed: {detail}"
            ) from None
    os.makedirs(os.path.dirname(path), exist_ok=True)
    api.save(frozen, path)
    out.write(f"froze {spec.name} v{spec.version} at {path}\n")
    return 0


def add_commands(sub: Any) -> None:
    """Register `migrate` and `migration ...` on the main parser's subcommands."""
    s = sub.add_parser("migrate", help="upgrade (or with --to, downgrade) the layers of a file")
    s.add_argument("file", metavar="FILE")
    s.add_argument("-o", "--output", metavar="OUT")
    s.add_argument("--in-place", action="store_true", help="rewrite FILE, keeping FILE.bak")
    s.add_argument(
        "--backup",
        metavar="SUFFIX",
        help="with --in-place: keep the original at FILE+SUFFIX (default .bak; an existing one is an error)",
    )
    s.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    s.add_argument(
        "--to", action="append", default=[], metavar="LAYER=VERSION", help="migrate a layer to a version"
    )
    add_import_option(s)
    add_key_options(s)
    s.set_defaults(run=_migrate)
    m = sub.add_parser("migration", help="author migrations: new, check, history, freeze")
    msub = m.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, run, helptext in (
        ("new", _new, "scaffold the next step of a layer, pre-filled from its newest fixture, and its test"),
        ("check", _check, "complete, unbranched chains; every fixture loads and gives its frozen output"),
        ("history", _history, "the versions and steps of layers"),
        ("freeze", _freeze, "freeze a small fixture of a layer at its current version"),
    ):
        a = msub.add_parser(name, help=helptext)
        if name in ("new", "freeze"):
            a.add_argument("layer", metavar="LAYER")
        if name == "history":
            a.add_argument("layer", metavar="LAYER", nargs="?")
        if name == "new":
            a.add_argument("--dir", default="migrations_steps", help="where to write the step and its test")
        if name == "freeze":
            a.add_argument("--config", required=True, help="the layer's config as JSON")
            a.add_argument("--seed", type=int, default=0)
            a.add_argument("--dir", default="fixtures", help="fixtures folder (<dir>/<layer>/v<N>.tmodel)")
            a.add_argument(
                "--input-shape",
                metavar="N,N,...",
                help="also freeze a sample input of this shape and the layer's output, which check compares",
            )
        if name in ("new", "check"):
            a.add_argument(
                "--fixtures", default="fixtures", help="fixtures folder (<dir>/<layer>/v<N>.tmodel)"
            )
        add_import_option(a)
        a.set_defaults(run=run)
