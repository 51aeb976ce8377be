"""A manifest's bytes to a validated manifest (SPEC.md §9 steps 4-9): the fast path first
(`manifest.fast`), the strict path (`checks.read_manifest`) whenever the fast one declines, so that every
error is the strict path's. The result holds the blob and tensor tables for reading tensors at once, and
builds the rest of `schema.Manifest` (its object tree) when it is first asked for."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from ..limits import Limits
from .checks import read_manifest
from .fast import prove
from .schema import SCHEMA_VERSION, Manifest


class Validated:
    """A manifest that passed every check: `blobs` and `tensors` (rows or models, `rows.Tables`) and the
    whole `manifest`, with the schema version it was written in."""

    __slots__ = ("_manifest", "_root", "source_version")

    def __init__(self, manifest: Manifest, source_version: int, root: Any = None) -> None:
        self._manifest = manifest
        #: the proven, decoded object tree the fast path left unbuilt (None once built, or when never left)
        self._root = root
        self.source_version = source_version

    @property
    def blobs(self) -> Sequence[Any]:
        return self._manifest.blobs

    @property
    def tensors(self) -> Sequence[Any]:
        return self._manifest.tensors

    @property
    def checksum(self) -> str:
        return self._manifest.checksum

    @property
    def modules(self) -> Sequence[Any]:
        return self._manifest.modules

    @property
    def shards(self) -> Sequence[Any]:
        """An index's shard table (SPEC.md §5.10); empty for any other file."""
        return self._manifest.shards

    @property
    def manifest(self) -> Manifest:
        """The whole manifest; its object tree is built now if the fast path left it (already proven valid,
        so building it cannot fail)."""
        if self._root is not None:
            root = _node_validator().validate_python(self._root, strict=True)
            self._manifest = self._manifest.model_copy(update={"root": root})
            self._root = None
        return self._manifest


@functools.cache
def _node_validator() -> Any:
    """pydantic's validator of a tree node, built once (building it takes far longer than a small tree)."""
    from pydantic import TypeAdapter

    from .nodes import Node

    return TypeAdapter(Node)


def read_validated(
    raw: bytes, limits: Limits, manifest_offset: int, file_size: int, encrypted: bool = False
) -> Validated:
    """A manifest's bytes decoded, upgraded to the current schema and validated; see the module."""
    proven = prove(raw, limits, manifest_offset, file_size, encrypted)
    if proven is not None:
        return Validated(proven.manifest, SCHEMA_VERSION, proven.root)
    manifest, version = read_manifest(raw, limits, manifest_offset, file_size, encrypted)
    return Validated(manifest, version)
