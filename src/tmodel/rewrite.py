"""Rewriting a file with its layers migrated (`tmodel migrate`): blobs of tensors no step touched are copied
byte for byte without being decoded, so the cost follows what changed, not the file's size; only the zstd
blobs of a file older than schema version 6 are encoded again, so that their frames carry the content
checksum the migrated file's schema requires (SPEC.md §6.4 rule 6)."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any, cast

import torch

from .archive.progress import Progress, ProgressArg, progress_for
from .archive.reader import Reader
from .archive.recode import needs_recoding, stored_again
from .archive.shards import refuse_index
from .archive.writer import Options, ResealedBlob, Source, StoredBlob, write_atomic
from .container.atomic import copy_new
from .errors import InvalidArgument, TModelError, UnregisteredType
from .limits import DEFAULT_LIMITS, Limits
from .manifest.rows import wire
from .manifest.schema import Manifest, TensorEntry
from .manifest.validated import Validated
from .manifest.wire import BlobWire, ChunkWire, ManifestWire, TensorWire, manifest_wire
from .nn.apply import (
    Upgraded,
    apply_steps,
    checkpoint_steps_of,
    describe_checkpoint_steps,
    describe_steps,
    steps_per_record,
)
from .nn.records import check_modules
from .nn.registry import known_name, registered_spec
from .tensors.load import materialize
from .tensors.planes import one_intra_op_thread, torch_merge, torch_split
from .tensors.storage import plan_blobs

PathLike = str | os.PathLike[str]


def migration_plan(
    path: PathLike,
    targets: dict[str, int] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    key: Any = None,
) -> list[str]:
    """What `migrate_file` would apply, one line per layer and version range, then each module's tensor and
    config operations as its steps make them (run in memory, reading only the tensors they read; nothing is
    written), as alembic's offline mode prints its SQL; empty when up to date. `key` opens an encrypted
    file."""
    with Reader(path, limits, 0, torch_merge, one_intra_op_thread, key) as reader:
        m = reader.manifest
        check_layers(m, path, targets)
        lines = describe_steps(m, steps_per_record(m, targets))
        lines += describe_checkpoint_steps(m, checkpoint_steps_of(m))
        if not lines:
            return []
        up = apply_steps(m, lambda i: materialize(reader, [i], torch.device("cpu"))[0], targets)
        for where, ops in up.ops.items():
            lines += [f"  {where}: {op}" for op in ops]
        return lines


def check_layers(m: Manifest, path: PathLike, targets: dict[str, int] | None = None) -> None:
    """A file migrate can answer for: it records layers [INVALID_ARGUMENT: a state dict records none, and
    the fix is to save the module], each registered in this program [UNREGISTERED_TYPE: a forgotten
    `--import` would otherwise read as "up to date"], and every `targets` layer is one of them at a version
    from 1 to the registered one [INVALID_ARGUMENT]."""
    name = os.fspath(path)
    if not m.modules and not checkpoint_steps_of(m):
        raise InvalidArgument(
            f"{name} records no layers (it holds tensors only, such as a state dict), so there is nothing to "
            "migrate: save the module itself, tmodel.save(model, path), so its layers and versions are "
            "recorded"
        )
    types = {r.type for r in m.modules if r.version is not None}  # parent-built records have no version
    unknown = sorted(t for t in types if not known_name(t))
    if unknown:
        shown = ", ".join(unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        raise UnregisteredType(
            f"{name}: its layers {shown} are not registered in this program: import the modules that define "
            "them (tmodel migrate --import MODULE, or a tmodel.layers entry point)",
            layer=unknown[0],
        )
    for layer, version in (targets or {}).items():
        if layer not in types:
            near = ", ".join(sorted(types)[:10])
            raise InvalidArgument(f"--to {layer}={version}: {name} has no layer {layer!r} (it has {near})")
        registered = registered_spec(layer).version
        if not 1 <= version <= registered:
            raise InvalidArgument(
                f"--to {layer}={version}: this program registers {layer} at version {registered}; a target "
                f"is a version from 1 to {registered}"
            )


def migrate_file(
    src: PathLike,
    dst: PathLike | None = None,
    *,
    in_place: bool = False,
    backup: str = ".bak",
    targets: dict[str, int] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    progress: ProgressArg = None,
    key: Any = None,
) -> list[str]:
    """Write `src` with every layer upgraded (or taken to `targets[layer]`) to `dst`, or over `src` with a
    backup copy at `src + backup`. Returns the lines of what was applied (empty: nothing to do).

    The backup is a new file, written atomically with the original's mode, owner and timestamps; an
    existing file or symbolic link at its path is never followed nor overwritten [INVALID_ARGUMENT].
    `progress=True` draws a bar on a terminal while the file is written; a callable gets (done, total).
    An encrypted file is opened with `key` and written encrypted with the same keys, its untouched blobs
    copied as they are (still sealed)."""
    if (dst is None) == (not in_place):
        raise InvalidArgument("give a destination, or in_place=True")
    if in_place and (not backup or "/" in backup or "\0" in backup):
        raise InvalidArgument(f"backup suffix {backup!r}: it must be non-empty and contain no '/'")
    out = os.fspath(src) if in_place else os.fspath(dst)  # type: ignore[arg-type]
    with (
        progress_for(progress, "migrate") as report,
        Reader(src, limits, 0, torch_merge, one_intra_op_thread, key) as reader,
    ):
        m = reader.manifest
        refuse_index(reader, "migrated on disk")
        check_layers(m, src, targets)
        up = apply_steps(m, lambda i: materialize(reader, [i], torch.device("cpu"))[0], targets)
        if not up.changed:
            return []
        if in_place:
            kept = os.fspath(src) + backup
            if os.path.lexists(kept):
                raise InvalidArgument(
                    f"the backup {kept!r} exists already and is never overwritten: move it away, or "
                    "choose another suffix (--backup SUFFIX)"
                )
            copy_new(reader.fd, kept)  # the bytes being migrated, whatever happens to `src` meanwhile
        current = all(v == registered_spec(k).version for k, v in (targets or {}).items())
        try:
            _write(reader, m, up, out, report, rebuild=current)
        except BaseException:
            if in_place:  # `src` is untouched: the copy made for this run goes too
                os.unlink(kept)
            raise
        if reader.signatures:  # they signed the old manifest: a migrated file carries none
            return [
                *up.applied,
                "note: the migrated file is unsigned (its manifest changed): tmodel sign it again",
            ]
        return up.applied


def _write(
    reader: Reader, m: Manifest, up: Upgraded, out: str, progress: Progress | None, rebuild: bool
) -> None:
    """The migrated file, checked as `save` checks (its modules rebuilt on the meta device whenever every
    layer is taken to the version this program registers: a downgrade is for another program)."""
    kept_blobs = sorted({b for i in up.kept if (b := m.tensors[i].blob) is not None})
    blob_index = {b: k for k, b in enumerate(kept_blobs)}
    sources: list[Source] = [_stored(reader, m, b) for b in kept_blobs]
    planned = plan_blobs([t.tensor for t in up.new], [t.name for t in up.new], "auto")
    sources += planned.sources
    tensors: list[TensorWire] = [_kept_entry(m.tensors[i], blob_index, up.renamed.get(i)) for i in up.kept]
    for entry in planned.entries:
        if entry["blob"] is not None:
            entry["blob"] += len(kept_blobs)
        tensors.append(entry)

    def finish(blobs: list[BlobWire]) -> ManifestWire:
        return manifest_wire(
            checksum=m.checksum,
            blobs=blobs,
            tensors=tensors,
            root=up.root,
            metadata=dict(m.metadata),
            modules=up.modules,
            required_features=list(m.required_features),
            extensions=dict(m.extensions),
            checkpoint=up.checkpoint,
        )

    write_atomic(
        out,
        sources,
        finish,
        Options(
            checksum=m.checksum,
            split=torch_split,
            worker_init=one_intra_op_thread,
            check=_rebuilds_after(up.applied) if rebuild else None,
            seal=reader.sealer,
        ),
        progress,
    )  # planned keeps the data alive


def _rebuilds_after(applied: list[str]) -> Callable[[Validated], None]:
    """The writer's check that the migrated file rebuilds (`check_modules`), its error naming the steps
    that made the file: a step that broke it is found before anything is replaced."""

    def check(m: Validated) -> None:
        try:
            check_modules(m)
        except TModelError as exc:
            exc.message = f"the migrated file would not load (after {'; '.join(applied)}): {exc.message}"
            exc.args = (exc.message,)
            raise exc.add_context(step="; ".join(applied)) from None

    return check


def _stored(reader: Reader, m: Manifest, b: int) -> StoredBlob | ResealedBlob:
    blob = m.blobs[b]
    if needs_recoding(reader, b):
        read = partial(stored_again, reader, b, split=torch_split)
        return ResealedBlob(blob.codec, blob.width, blob.nbytes, blob.chunk_size, read)
    chunks: list[ChunkWire] = [{"digest": c.digest, "segments": list(c.segments)} for c in blob.chunks]
    return StoredBlob(
        blob.codec,
        blob.width,
        blob.nbytes,
        blob.chunk_size,
        chunks,
        reader.fd,
        blob.offset,
        blob.length,
        blob.nonce,
    )


def _kept_entry(t: TensorEntry, blob_index: dict[int, int], name: str | None) -> TensorWire:
    entry = cast(TensorWire, wire(t))
    entry["blob"] = None if t.blob is None else blob_index[t.blob]
    if name is not None:
        entry["name"] = name
    return entry
