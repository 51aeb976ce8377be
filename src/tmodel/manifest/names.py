"""Names (SPEC.md §5.6, §5.7): tensor names, local names of a module's tensors and children, and layer
type names; none of them can express a path."""

from __future__ import annotations

import re

from ..errors import BadName
from ..limits import DEFAULT_LIMITS, Limits

#: the characters no tensor name holds (SPEC.md §5.6)
_FORBIDDEN = r"\x00-\x1f\x7f/\\"
_NAME = re.compile(f"[^{_FORBIDDEN}]+")
#: a forbidden character but the newline, or `..`: what `all_valid` looks for in names joined by newlines
_ANY_BAD = re.compile(r"[\x00-\x09\x0b-\x1f\x7f/\\]|\.\.")


def check_name(name: str, limits: Limits) -> None:
    """Tensor names: 1..max_name_bytes of UTF-8, no control characters, no '/' or '\\', no '..'."""
    _check_name(name, limits, name)


def _check_name(name: str, limits: Limits, tensor: str | None) -> None:
    """The tensor-name rules; the error names `tensor` (None for a local name, which is no tensor's)."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise BadName(f"invalid tensor name {name!r}", tensor=tensor)
    if len(name.encode("utf-8", "surrogatepass")) > limits.max_name_bytes:
        raise BadName(f"tensor name of more than {limits.max_name_bytes} bytes", tensor=tensor)


def all_valid(names: list[str], limits: Limits) -> bool:
    """Whether every name passes `check_name`, tested in one pass over all of them (the fast path's)."""
    if not names:
        return True
    if min(map(len, names)) < 1:
        return False
    longest = max(map(len, names))  # characters; UTF-8 takes at most 4 bytes for each
    if longest * 4 > limits.max_name_bytes and max(map(len, map(str.encode, names))) > limits.max_name_bytes:
        return False
    joined = "\n".join(names)
    return joined.count("\n") == len(names) - 1 and _ANY_BAD.search(joined) is None


def unique_name(candidate: str, index: int, taken: set[str]) -> str:
    """A tensor's name: `candidate` (its key path) when valid and free, else `tensor.<index>`; added to
    `taken`. Used wherever tensors are named, so saves and migrations name alike (SPEC.md §5.6)."""
    try:
        check_name(candidate, DEFAULT_LIMITS)
        ok = candidate not in taken
    except BadName:
        ok = False
    name = candidate if ok else f"tensor.{index}"
    while name in taken:
        name += "_"
    taken.add(name)
    return name


TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
#: a class's qualified name (`module.Qual.Name`, `<locals>` allowed), the type of a record built by its
#: parent (schema 5); at most CLASS_NAME_BYTES
CLASS_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|<locals>)(\.([A-Za-z_][A-Za-z0-9_]*|<locals>))*")
TYPE_NAME_BYTES = 256
CLASS_NAME_BYTES = 1024


def check_type_name(name: str, where: str) -> None:
    """A registered name (layer type, reference, value type): dotted identifiers, at most 256 bytes."""
    if len(name) > TYPE_NAME_BYTES or not TYPE_NAME.fullmatch(name):
        raise BadName(f"{where}: invalid registered name {name!r} (dotted identifiers, e.g. 'acme.Gate')")


def check_local_name(name: str, limits: Limits, where: str) -> None:
    """Names of parameters, buffers and children: tensor-name rules, and no '.' (torch's own rule)."""
    if "." in name:
        raise BadName(f"{where}: local name {name!r} contains '.'")
    _check_name(name, limits, None)
