"""Layer configs as `tmodel inspect` shows them: each config node (SPEC.md §5.4) in its wire form, written
the way Python would spell the value (`ref` nodes by name, `partial(name, ..., k=v)`, `Type(data)`,
`<module i>`), one line per layer, cut at `MAX_CHARS` with an ellipsis: a hostile config costs the
characters shown (each string once), not the size of the whole config. Strings are quoted as
`text.quote` does; the CLI's stream escapes every line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .text import quote

MAX_CHARS = 200
_PAIRS = {"dict": ("{", "}"), "counter": ("Counter({", "})")}
_ITEMS = {"list": ("[", "]"), "tuple": ("(", ")"), "set": ("{", "}"), "size": ("torch.Size([", "])")}


def show_config(config: dict[str, Any], limit: int = MAX_CHARS) -> str:
    """`k=v, ...` for a record's config (wire form), at most `limit` characters plus an ellipsis."""
    out: list[str] = []
    size = 0
    for piece in _config(config):
        out.append(piece)
        size += len(piece)
        if size > limit:
            return "".join(out)[:limit] + "…"
    return "".join(out)


def _config(config: dict[str, Any]) -> Iterator[str]:
    for i, (k, v) in enumerate(config.items()):
        yield (", " if i else "") + f"{quote(k)}="
        yield from _node(v)


def _join(items: Any, each: Any) -> Iterator[str]:
    for i, item in enumerate(items):
        if i:
            yield ", "
        yield from each(item)


def _pair(pair: Any) -> Iterator[str]:
    if isinstance(pair, list) and len(pair) == 2:
        yield from _node(pair[0])
        yield ": "
        yield from _node(pair[1])
    else:
        yield from _node(pair)


def _keyword(pair: Any) -> Iterator[str]:
    if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str):
        yield f"{quote(pair[0])}="
        yield from _node(pair[1])
    else:
        yield from _node(pair)


def _node(v: Any) -> Iterator[str]:
    if isinstance(v, str):
        yield quote(v, always=True)
    elif isinstance(v, (bytes, bytearray)):
        yield repr(bytes(v[:64])) + ("…" if len(v) > 64 else "")
    elif isinstance(v, list):
        yield "["
        yield from _join(v, _node)
        yield "]"
    elif isinstance(v, dict) and len(v) == 1:
        tag, body = next(iter(v.items()))
        yield from _tagged(str(tag), body)
    elif isinstance(v, dict):  # not a node: shown as a map
        yield "{"
        yield from _join(v.items(), lambda kv: _pair(list(kv)))
        yield "}"
    else:
        yield repr(v)


def _tagged(tag: str, body: Any) -> Iterator[str]:
    if tag in _PAIRS and isinstance(body, list):
        yield _PAIRS[tag][0]
        yield from _join(body, _pair)
        yield _PAIRS[tag][1]
    elif tag in _ITEMS and isinstance(body, list):
        yield _ITEMS[tag][0]
        yield from _join(body, _node)
        yield "," + _ITEMS[tag][1] if tag == "tuple" and len(body) == 1 else _ITEMS[tag][1]
    elif tag == "ref" and isinstance(body, str):
        yield quote(body)
    elif tag == "partial" and isinstance(body, dict):
        yield f"partial({quote(str(body.get('ref')))}"
        for arg in body.get("args") or []:
            yield ", "
            yield from _node(arg)
        for pair in body.get("kwargs") or []:
            yield ", "
            yield from _keyword(pair)
        yield ")"
    elif tag == "object" and isinstance(body, dict):
        yield f"{quote(str(body.get('type')))}("
        yield from _node(body.get("data"))
        yield ")"
    elif tag in ("module", "tensor") and isinstance(body, int):
        yield f"<{tag} {body}>"
    elif tag == "dtype" and isinstance(body, str):
        yield f"torch.{quote(body)}"
    else:
        yield f"{quote(tag)}("
        yield from _node(body)
        yield ")"
