"""Queries over a manifest's module records that need no classes (torch-free): the state-dict keys of a
module, parameter counts, and the architecture tree that `tmodel inspect` shows."""

from __future__ import annotations

import math
from typing import Any

from .nodes import ModuleRef, entries, mapping_items
from .schema import Manifest


def state_of(m: Manifest, index: int, prefix: str = "") -> dict[str, int]:
    """State-dict keys of record `index` and below (parameters, persistent buffers) -> tensor index."""
    out: dict[str, int] = {}
    stack = [(index, prefix)]
    seen: set[tuple[int, str]] = set()
    while stack:
        i, pre = stack.pop()
        if (i, pre) in seen:
            continue
        seen.add((i, pre))
        rec = m.modules[i]
        for name, ref in rec.parameters.items():
            if ref is not None:
                out[pre + name] = ref.tensor
        for name, t in rec.buffers.items():
            if t is not None:
                out[pre + name] = t
        stack.extend((c, f"{pre}{name}.") for name, c in rec.children.items() if c is not None)
    return out


def count_parameters(m: Manifest, index: int) -> int:
    """Elements in the parameters of record `index` and below, each shared tensor counted once."""
    params = {
        ref.tensor for i in _below(m, index) for ref in m.modules[i].parameters.values() if ref is not None
    }
    return sum(math.prod(m.tensors[t].shape) for t in params)


def _below(m: Manifest, index: int) -> set[int]:
    seen: set[int] = set()
    stack = [index]
    while stack:
        i = stack.pop()
        if i not in seen:
            seen.add(i)
            stack.extend(c for c in m.modules[i].children.values() if c is not None)
    return seen


def roots(m: Manifest) -> list[tuple[str, int]]:
    """(path in the saved object, record index) of every module the object tree refers to, in tree order."""
    out: list[tuple[str, int]] = []
    stack: list[tuple[str, Any]] = [("", m.root)]
    while stack:
        path, node = stack.pop()
        if type(node) is ModuleRef:
            out.append((path or "<root>", node.module))
        sequence = mapping_items(node) is None
        for k, v in reversed(entries(node)):
            if sequence:
                stack.append((f"{path}[{k}]", v))
            else:
                key = k.hex() if isinstance(k, bytes) else str(k)
                stack.append((f"{path}.{key}" if path else key, v))
    return out


def record_paths(m: Manifest) -> dict[int, str]:
    """The first path (in tree order, through children) at which each reachable record is met, for
    messages; a breadth-first walk visiting each record once."""
    out: dict[int, str] = {}
    queue = [(index, path) for path, index in roots(m)]
    for index, path in queue:
        if index in out:
            continue
        out[index] = path
        prefix = "" if path == "<root>" else f"{path}."
        queue.extend((c, prefix + n) for n, c in m.modules[index].children.items() if c is not None)
    return out


def architecture(m: Manifest) -> list[dict[str, Any]]:
    """The module tree under each root: name, type, version, parameter count, config (wire), children."""

    def walk(name: str, index: int, depth: int) -> dict[str, Any]:
        rec = m.modules[index]
        node: dict[str, Any] = {
            "name": name,
            "module": index,
            "type": rec.type,
            "version": rec.version,
            "parameters": count_parameters(m, index),
            "training": rec.training,
            "config": rec.model_dump(by_alias=True)["config"],  # its wire form (SPEC.md §5.4 nodes)
            "children": [],
        }
        if depth < 64:
            node["children"] = [walk(n, c, depth + 1) for n, c in rec.children.items() if c is not None]
        return node

    return [walk(path, index, 0) for path, index in roots(m)]


def render(tree: list[dict[str, Any]]) -> list[str]:
    """Indented lines: `name: type vN (P params)`, then the node's `shown` config text if it has one; a
    record built by its parent (version nil) says so instead of a version."""
    lines: list[str] = []

    def emit(node: dict[str, Any], indent: int) -> None:
        version = "built by its parent" if node["version"] is None else f"v{node['version']}"
        head = f"{'  ' * indent}{node['name']}: {node['type']} {version} ({node['parameters']:,} params)"
        lines.append(f"{head}  {node['shown']}" if node.get("shown") else head)
        for child in node["children"]:
            emit(child, indent + 1)

    for root in tree:
        emit(root, 1)
    return lines
