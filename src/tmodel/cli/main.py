"""The `tmodel` command: inspect, verify and convert files. The only module that prints or exits.

Exit codes: 0 success, 1 a TModelError (one line `error[CODE]: message` on stderr, never a traceback),
2 usage error (argparse), 130 interrupted. A progress bar is drawn on stderr only when it is a terminal.

`inspect --json` prints one object (see `inspect_document`); metadata values that JSON cannot hold are
tagged single-key objects: bytes -> {"$bytes": "<lowercase hex>"}, NaN/±inf -> {"$float": "nan"|"inf"|
"-inf"}, and a map whose only key starts with "$" -> {"$dict": {...}}. `from_json_value` undoes this.

Text from a file is shown safely (`text.py`, the one place that escapes): every C0 and C1 control
character, DEL and bidirectional control (U+200E, U+200F, U+061C, U+202A-U+202E, U+2066-U+2069) in what
the CLI prints, the `error[CODE]: message` line included, becomes a visible escape: `\\t`, `\\n`, `\\r`,
`\\xHH` up to U+00FF, `\\uHHHH` above (`\\x1b`, `\\u202e`). In `inspect`, a tensor name, dict key, layer type
or metadata key that needed escaping, or holds `"` or `\\`, is shown in double quotes with `"` and `\\`
escaped too, as git's `core.quotePath` does; other names are shown as they are; metadata string values
are always quoted. `inspect --json` escapes the JSON way (everything outside printable ASCII) and parses
back to the exact strings.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO, cast

from ..archive.encryption import CIPHER
from ..archive.progress import ProgressBar, is_terminal
from ..archive.reader import Reader
from ..codecs.table import CHOICES
from ..errors import ConformanceFailure, FileAccessError, InvalidArgument, TModelError
from ..manifest.dtypes import DTYPES
from ..manifest.module_tree import architecture, render
from ..manifest.nodes import MetaTensorNode, OptimizerNode, StatefulNode, mapping_items, walk
from ..manifest.schema import Blob, Manifest
from ..manifest.shards import blob_sizes
from .configs import show_config
from .keys import add_key_options, key_of
from .layers import add_import_option, load_layers
from .migrate import add_commands
from .text import Escaped, escape, json_text, quote, show_value


# -- JSON form of metadata ------------------------------------------------------------------------------
def to_json_value(value: Any) -> Any:
    """A metadata value as plain JSON, tagging what JSON cannot hold (bytes, non-finite floats)."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, list):
        return [to_json_value(v) for v in value]
    if isinstance(value, dict):
        inner = {k: to_json_value(v) for k, v in value.items()}
        return {"$dict": inner} if len(inner) == 1 and next(iter(inner)).startswith("$") else inner
    return value


def from_json_value(value: Any) -> Any:
    """Inverse of `to_json_value`."""
    if isinstance(value, list):
        return [from_json_value(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)).startswith("$"):
            tag, inner = next(iter(value.items()))
            if tag == "$bytes":
                return bytes.fromhex(inner)
            if tag == "$float":
                return float(inner)
            if tag == "$dict":
                return {k: from_json_value(v) for k, v in inner.items()}
            raise ValueError(f"unknown tag {tag!r}")
        return {k: from_json_value(v) for k, v in value.items()}
    return value


# -- inspect ---------------------------------------------------------------------------------------------
def _ratio(raw: int, stored: int) -> float | None:
    return round(raw / stored, 4) if stored else None


def inspect_document(
    path: str, m: Manifest, file_size: int, schema_version: int, set_blobs: Sequence[Blob] | None = None
) -> dict[str, Any]:
    """The `inspect --json` object, built from the manifest alone (for an index, with `set_blobs`, the
    blobs of its shards in order: their offsets are within their shard).

    tensors[i].stored_bytes / ratio describe the tensor's blob (shared blobs repeat them); raw_bytes is
    numel × itemsize. totals count every blob once: stored = sum of blob lengths, raw = sum of decoded sizes.
    """
    blobs = m.blobs if set_blobs is None else set_blobs
    tensors = []
    for t in m.tensors:
        b = blobs[t.blob] if t.blob is not None else None
        tensors.append(
            {
                "name": t.name,
                "dtype": t.dtype,
                "shape": list(t.shape),
                "strides": list(t.strides),
                "blob": t.blob,
                "offset": t.offset,
                "codec": b.codec if b else None,
                "stored_bytes": b.length if b else 0,
                "raw_bytes": math.prod(t.shape) * DTYPES[t.dtype][0],
                "ratio": _ratio(b.nbytes, b.length) if b else None,
            }
        )
    stored = sum(b.length for b in blobs)
    raw = sum(b.nbytes for b in blobs)
    return {
        "file": path,
        "file_bytes": file_size,
        "schema_version": schema_version,
        "checksum": m.checksum,
        "tensors": tensors,
        "blobs": [
            {
                "offset": b.offset,
                "length": b.length,
                "nbytes": b.nbytes,
                "codec": b.codec,
                "width": b.width,
                "chunk_size": b.chunk_size,
                "chunks": len(b.chunks),
            }
            for b in blobs
        ],
        "shards": [{"file": sh.file, "bytes": sh.size, "blobs": len(sh.blobs)} for sh in m.shards],
        "totals": {
            "tensors": len(m.tensors),
            "blobs": len(blobs),
            "stored_bytes": stored,
            "raw_bytes": raw,
            "ratio": _ratio(raw, stored),
        },
        "metadata": to_json_value(dict(m.metadata)),
        "architecture": _json_configs(architecture(m)),
        "meta_tensors": [
            {"dtype": n.value.dtype, "shape": list(n.value.shape)}
            for n in walk([m.root])
            if type(n) is MetaTensorNode
        ],
        "training_state": _training_state(m),
        "checkpoint": None if m.checkpoint is None else m.checkpoint.model_dump(),
    }


def _training_state(m: Manifest) -> list[dict[str, Any]]:
    """Optimizers (class, groups, parameters, those with state) and stateful nodes (kind, class)."""
    out: list[dict[str, Any]] = []
    for n in walk([m.root]):
        if type(n) is OptimizerNode:
            body = n.value
            stepped = sum(1 for p in body.params if mapping_items(p.state))
            out.append(
                {
                    "kind": "optimizer",
                    "class": body.cls,
                    "groups": len(body.groups),
                    "parameters": len(body.params),
                    "with_state": stepped,
                }
            )
        elif type(n) is StatefulNode:
            out.append({"kind": n.value.kind, "class": n.value.cls})
    return out


def _table(rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _render(doc: dict[str, Any]) -> str:
    rows = [["name", "dtype", "shape", "codec", "stored", "raw", "ratio"]]
    for t in doc["tensors"]:
        rows.append(
            [
                quote(t["name"]),
                t["dtype"],
                "[" + ", ".join(map(str, t["shape"])) + "]",
                t["codec"] or "-",
                str(t["stored_bytes"]),
                str(t["raw_bytes"]),
                _fmt_ratio(t["ratio"]),
            ]
        )
    tot = doc["totals"]
    rows.append(
        [
            f"total: {tot['tensors']} tensors",
            "",
            "",
            f"{tot['blobs']} blobs",
            str(tot["stored_bytes"]),
            str(tot["raw_bytes"]),
            _fmt_ratio(tot["ratio"]),
        ]
    )
    head = f"{quote(doc['file'])}: {doc['file_bytes']} bytes, schema {doc['schema_version']}"
    lines = [f"{head}, {doc['checksum']}"]
    if doc["shards"]:
        listed = ", ".join(quote(sh["file"]) for sh in doc["shards"])
        lines.append(f"index of a sharded set: {len(doc['shards'])} shards ({listed})")
    lines += _table(rows, {4, 5, 6})
    if doc["meta_tensors"]:  # in the object tree, without data (SPEC.md §5.4)
        shown = ", ".join(
            f"{t['dtype']} [{', '.join(map(str, t['shape']))}]" for t in doc["meta_tensors"][:8]
        )
        more = ", ..." if len(doc["meta_tensors"]) > 8 else ""
        lines.append(f"meta tensors (no data): {len(doc['meta_tensors'])}: {shown}{more}")
    for t in doc["training_state"]:
        if t["kind"] == "optimizer":
            lines.append(
                f"optimizer: {quote(t['class'])}, {t['groups']} group(s), {t['parameters']} parameters "
                f"({t['with_state']} with state)"
            )
        else:
            lines.append(f"{t['kind']}: {quote(t['class'])}")
    if doc["checkpoint"]:
        lines.append(f"checkpoint layout: {quote(doc['checkpoint']['type'])} v{doc['checkpoint']['version']}")
    if doc["architecture"]:
        lines.append("architecture:")
        lines += render(_quoted_tree(doc["architecture"]))
    meta = doc["metadata"]
    lines.append("metadata:" + ("" if meta else " (none)"))
    lines += [f"  {quote(k)}: {show_value(v)}" for k, v in meta.items()]
    return "\n".join(lines)


def _quoted_tree(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The architecture with its names (dict-key paths, child names) and layer types as `quote` shows them,
    and each config as one bounded line (`configs.show_config`)."""
    return [
        {
            **n,
            "name": quote(n["name"]),
            "type": quote(n["type"]),
            "shown": show_config(from_json_value(n["config"])),
            "children": _quoted_tree(n["children"]),
        }
        for n in tree
    ]


def _json_configs(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The architecture with each config in its JSON form (`to_json_value`)."""
    return [
        {**n, "config": to_json_value(n["config"]), "children": _json_configs(n["children"])} for n in tree
    ]


def _inspect(args: argparse.Namespace, out: TextIO) -> int:
    with Reader(args.file, key=key_of(args)) as reader:
        shards = reader.shards
        set_blobs = None
        if shards is not None:  # each shard opened and checked against the index, for its blob records
            set_blobs = [
                b for k in range(len(reader.validated.shards)) for b in shards.reader(k).validated.blobs
            ]
        doc = inspect_document(
            args.file, reader.manifest, reader.file_size, reader.source_schema_version, set_blobs
        )
    out.write((json_text(doc) if args.json else _render(doc)) + "\n")
    return 0


# -- verify and convert ----------------------------------------------------------------------------------
def _bar(label: str) -> ProgressBar | None:
    return ProgressBar(sys.stderr, label) if is_terminal(sys.stderr) else None


def _run_with_bar(label: str, action: Callable[[ProgressBar | None], None]) -> None:
    bar = _bar(label)
    try:
        action(bar)
    finally:
        if bar is not None:
            bar.close()


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    from ..archive.signing import key_id, public_key
    from ..archive.trust import require

    # a DCP checkpoint folder (tmodel.distributed's METADATA_FILE); any other folder is NOT_REGULAR_FILE
    if os.path.isfile(os.path.join(args.file, ".metadata.tmodel")):
        return _verify_dcp(args, out)
    trusted = {key_id(public_key(k)) for k in args.trusted_keys}
    with Reader(args.file, key=key_of(args)) as reader:  # every signature is verified on open
        _run_with_bar("verify", reader.verify)
        n = len(reader.validated.tensors)
        checked = sum(blob_sizes(reader.validated))
        n_shards = len(reader.validated.shards)
        signed = list(reader.signatures)
        encrypted = reader.sealer is not None
    for sig in signed:
        mark = "trusted" if sig.key_id in trusted else "not among the trusted keys"
        out.write(f"signature: valid, {sig.algorithm}, key {sig.key_id} ({mark})\n")
    if args.trusted_keys:
        require(signed, args.trusted_keys, True)
    state = f"{len(signed)} valid signature{'s' * (len(signed) != 1)}" if signed else "unsigned"
    if encrypted:
        state += ", encrypted"
    if n_shards:
        state += f", {n_shards} shards"
    out.write(f"ok: {args.file} ({n} tensors, {checked} bytes checked, {state})\n")
    return 0


def _verify_dcp(args: argparse.Namespace, out: TextIO) -> int:
    """A DCP checkpoint folder: its metadata and every shard (torch.distributed is imported only here)."""
    from ..distributed import verify_checkpoint

    if args.trusted_keys:
        raise InvalidArgument("--trusted-key applies to a file, not a DCP checkpoint folder")
    done = verify_checkpoint(args.file)
    out.write(
        f"ok: {args.file} (DCP checkpoint: {done.shards} shards, {done.items} items, "
        f"{done.bytes_checked} bytes checked)\n"
    )
    return 0


def _sign(args: argparse.Namespace, out: TextIO) -> int:
    from ..sign import sign_file

    sig = sign_file(args.file, args.key, decryption_key=key_of(args))
    out.write(f"signed: {args.file} ({sig.algorithm}, key {sig.key_id})\n")
    return 0


def _keygen(args: argparse.Namespace, out: TextIO) -> int:
    if args.algorithm == CIPHER:
        from ..encrypt import keygen as encryption_keygen

        encryption_keygen(args.path)
        out.write(f"wrote {args.path} ({CIPHER} key, 64 hex digits; keep it secret)\n")
        return 0
    from ..sign import keygen

    kid = keygen(args.path, args.algorithm)
    out.write(f"wrote {args.path} (private) and {args.path}.pub (public); key id {kid}\n")
    return 0


def _encrypt(args: argparse.Namespace, out: TextIO) -> int:
    from ..encrypt import encrypt_file

    key = key_of(args)
    if key is None:
        raise InvalidArgument(
            "give the key to encrypt with: --key-file, --passphrase-env or --passphrase-file"
        )
    notes = encrypt_file(args.src, args.dst, key, encrypt_manifest=not args.readable_manifest)
    out.write(f"encrypted: {args.src} -> {args.dst}\n" + "".join(f"{args.dst}: {n}\n" for n in notes))
    return 0


def _decrypt(args: argparse.Namespace, out: TextIO) -> int:
    from ..encrypt import decrypt_file

    key = key_of(args)
    if key is None:
        raise InvalidArgument("give the file's key: --key-file, --passphrase-env or --passphrase-file")
    notes = decrypt_file(args.src, args.dst, key=key)
    out.write(f"decrypted: {args.src} -> {args.dst}\n" + "".join(f"{args.dst}: {n}\n" for n in notes))
    return 0


def _convert(args: argparse.Namespace, out: TextIO) -> int:
    from ..interop.convert import convert  # torch is imported only for this command

    load_layers(args.imports)  # a whole model is rebuilt from registered layers
    _run_with_bar(
        "convert",
        lambda bar: convert(
            args.src,
            args.dst,
            codec=args.codec,
            key=args.key,
            progress=bar,
            max_shard_size=args.max_shard_size,
        ),
    )
    out.write(f"ok: {args.src} -> {args.dst}\n")
    return 0


def _conformance(args: argparse.Namespace, out: TextIO) -> int:
    import tempfile
    from pathlib import Path

    from ..conformance import runner  # the suite, its cases and the reference adapter

    known: set[str] = set()
    if args.known_failures:
        with open(args.known_failures) as f:
            known = {line.split("#")[0].strip() for line in f if line.split("#")[0].strip()}
    tiers = tuple(t.strip().upper() for t in args.tier.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        impl = args.impl or runner.DEFAULT_IMPL
        report = runner.run(impl, tiers, known, args.timeout, args.memory, write_dir=Path(tmp))
    for line in runner.summary(report):
        out.write(line + "\n")
    if args.junit:
        runner.junit(report, Path(args.junit))
    failed = len(report.failed) + len(report.problems)
    if failed:
        raise ConformanceFailure(f"{failed} of {len(report.results)} conformance checks failed")
    return 0


# -- entry point -----------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tmodel", description="Inspect, verify, convert and migrate .tmodel files."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("inspect", help="list tensors, sizes and metadata from the manifest")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--json", action="store_true", help="print one machine-readable JSON object")
    add_key_options(s)
    s.set_defaults(run=_inspect)
    s = sub.add_parser(
        "verify",
        help="check every checksum and signature and decode every chunk (of a file or a DCP folder)",
    )
    s.add_argument("file", metavar="FILE")
    s.add_argument(
        "--trusted-key",
        dest="trusted_keys",
        action="append",
        default=[],
        metavar="PUBKEY",
        help="a public key file (PEM or OpenSSH); with it, a signature by one of these keys is required",
    )
    add_key_options(s)
    s.set_defaults(run=_verify)
    s = sub.add_parser("sign", help="add a signature to a file (blobs copied byte for byte)")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--key", required=True, metavar="KEY", help="a private key file (PEM or OpenSSH)")
    add_key_options(s)
    s.set_defaults(run=_sign)
    s = sub.add_parser(
        "keygen",
        help="write a new signing key pair (PATH private, PATH.pub public), or an encryption key to PATH",
    )
    s.add_argument("path", metavar="PATH")
    s.add_argument("--algorithm", choices=["ed25519", "ecdsa-p256", CIPHER], default="ed25519")
    s.set_defaults(run=_keygen)
    for name, run, helptext, what in (
        ("encrypt", _encrypt, "write SRC encrypted to DST (chunks sealed as compressed)", "encrypts DST"),
        ("decrypt", _decrypt, "write the encrypted SRC unencrypted to DST", "opens SRC"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("src", metavar="SRC")
        s.add_argument("dst", metavar="DST")
        if name == "encrypt":
            s.add_argument(
                "--readable-manifest",
                action="store_true",
                help="leave names, shapes and metadata readable (still authenticated)",
            )
        add_key_options(s, what)
        s.set_defaults(run=run)
    s = sub.add_parser(
        "convert",
        help="convert between .tmodel, .safetensors(.index.json) and .pt, or between model folders",
    )
    s.add_argument("src", metavar="SRC")
    s.add_argument("dst", metavar="DST")
    s.add_argument("--codec", choices=CHOICES, default="auto", help="codec of a .tmodel destination")
    s.add_argument("--key", help="convert one entry of a checkpoint (e.g. model; a dotted path nests)")
    s.add_argument(
        "--max-shard-size",
        metavar="SIZE",
        help="split into shards of at most SIZE bytes of tensor data (e.g. 5GB, 2GiB): a .tmodel index or "
        "a .safetensors.index.json set; a sharded source keeps its split without it",
    )
    add_import_option(s)
    s.set_defaults(run=_convert)
    s = sub.add_parser("conformance", help="run the conformance suite against an implementation")
    csub = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = csub.add_parser("run", help="drive an implementation over conformance/PROTOCOL.md through every case")
    c.add_argument("--impl", default=None, help="the implementation's command (default: the reference)")
    c.add_argument("--tier", default="MUST,SHOULD,MAY", help="comma-separated tiers to run")
    c.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    c.add_argument("--known-failures", metavar="FILE", help="case ids expected to fail, one per line")
    c.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    c.add_argument("--memory", type=int, default=4 << 30, help="address-space limit of the implementation")
    c.set_defaults(run=_conformance)
    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # usage errors (2) and --help (0): argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    run: Callable[[argparse.Namespace, TextIO], int] = args.run
    try:
        return run(args, cast(TextIO, Escaped(sys.stdout)))  # whatever a command prints is escaped
    except TModelError as exc:
        return _fail(exc.one_line())
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        return _fail(FileAccessError(str(exc)).one_line())
    except Exception as exc:  # a bug: still one line, as promised; TMODEL_DEBUG=1 shows the traceback
        if os.environ.get("TMODEL_DEBUG"):
            raise
        return _fail(TModelError(f"internal error: {type(exc).__name__}: {exc}").one_line())


def _fail(line: str) -> int:
    sys.stderr.write(escape(line) + "\n")  # messages can hold names from a hostile file
    return 1


if __name__ == "__main__":
    sys.exit(main())
