"""Text from files made safe to show on a terminal: the one place that escapes it (see `main`'s docstring).

A hostile file can put terminal control sequences (`\\x1b]0;title\\x07` retitles the window, `\\x1b[2J`
clears it, C1 `\\x9b` starts a sequence on some terminals, `\\r` overwrites a line) and bidirectional
overrides (`\\u202e` shows text reversed) in tensor names, dict keys and metadata. `escape` makes each
such character visible instead, and every line the CLI writes goes through it (`Escaped`, and the error
line); `quote` marks a name that needed it, as git's `core.quotePath` does.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any, TextIO

# C0 controls, DEL, C1 controls, the bidirectional marks, embeddings, overrides and isolates, and lone
# surrogates (bytes of a non-UTF-8 path under surrogateescape, which a UTF-8 terminal cannot take).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_NEEDS_QUOTES = re.compile(_UNSAFE.pattern[:-1] + '"\\\\]')


def _escaped(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    if ch in _SHORT:
        return _SHORT[ch]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as surrogateescape carries it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` with each C0/C1 control character, DEL, bidirectional control and lone surrogate replaced by
    a visible escape: `\\t` `\\n` `\\r`, `\\xHH` up to U+00FF (and for a non-UTF-8 byte), `\\uHHHH` above.
    Nothing else changes, so text without those characters comes out as it went in."""
    return _UNSAFE.sub(_escaped, text)


def quote(name: str, always: bool = False) -> str:
    """A name (or string value) from a file as the CLI shows it, git `core.quotePath` style: unchanged
    when it is non-empty and holds nothing `escape` would replace, no `"` and no `\\`; otherwise (or
    `always`) in double quotes, with `"` and `\\` backslash-escaped and the rest as `escape` does."""
    if name and not always and not _NEEDS_QUOTES.search(name):
        return name
    return '"' + escape(name.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def show_value(value: Any) -> str:
    """A metadata value in its JSON form (`to_json_value`) as one line: JSON syntax, strings quoted and
    escaped as `quote(always=True)` does (so `\\x1b` where JSON would write `\\u001b`)."""
    if isinstance(value, str):
        return quote(value, always=True)
    if isinstance(value, list):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{quote(k, always=True)}: {show_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def json_text(document: Any) -> str:
    """`document` as JSON that is safe on a terminal and exact when parsed: everything outside printable
    ASCII is a JSON escape (json leaves DEL as it is; here it is `\\u007f` too)."""
    return json.dumps(document, indent=2, ensure_ascii=True).replace("\x7f", "\\u007f")


class Escaped(io.TextIOBase):
    """A text stream that passes everything written to it through `escape`, line by line (the newlines
    that end lines are kept): whatever a command writes, no control sequence reaches the terminal."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write("\n".join(escape(line) for line in text.split("\n")))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def writable(self) -> bool:
        return True
