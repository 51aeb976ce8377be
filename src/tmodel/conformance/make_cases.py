"""Write the conformance case corpus: `python -m tmodel.conformance.make_cases [FOLDER]`.

Rules: the corpus is data. `cases/valid/NAME.tmodel` is written by the reference writer and `NAME.json` holds
its canonical description (`describe.py`); `cases/hostile/NAME.tmodel` is a valid sibling with exactly ONE
documented change, and `NAME.json` lists every error code SPEC.md allows for it. `cases/sharded/` holds a
sharded set (`set.tmodel`, its index, with its shards beside it and no JSON for them) and hostile indexes,
each `set.tmodel` with ONE change, that read the same shards (`sharded_cases`). Manifest-content
attacks re-encode the manifest with the trailer digest recomputed; payload attacks recompute the chunk
digests; framing and checksum attacks edit raw bytes. Each hostile case names the line of
conformance/ATTACKS.md (the numbered list of hostile inputs the suite covers) that it covers. The output
depends on nothing but the case modules and the reference writer: running it twice gives byte-identical
files (no time, no randomness without a seed).

The cases live by topic: `valid_cases` (what the reference writer saves), `surgery` (taking files apart and
putting them together), `hostile_cases` (container, manifest, data and model rules), `crypto_cases` (signed
and encrypted files), `zstd_cases` (the decoder differential), `sharded_cases` (sharded sets), `attacks`
(the ATTACKS.md lines and the phase of each code); this module gathers them and writes the corpus.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import tmodel
from tmodel.container.framing import ENCRYPTED, HEADER_SIZE

from . import valid_cases
from .attacks import ATTACKS, NOT_A_FILE, PHASE
from .crypto_cases import (
    CRYPTO_HOSTILE,
    CRYPTO_VALID,
    OTHER_KEY,
    OTHER_PASSPHRASE,
    SIGNING_SEEDS,
    TEST_KDF,
    TEST_KEY,
    TEST_PASSPHRASE,
    Built,
    load_options,
    signer_id,
)
from .describe import describe, reader_options
from .hostile_cases import HOSTILE as _MAIN_HOSTILE
from .hostile_cases import Hostile
from .sharded_cases import SHARDED_HOSTILE, SHARDED_VALID
from .suite import SUITE
from .surgery import build, signing_key, split
from .valid_cases import Valid
from .zstd_cases import LIBZSTD_ACCEPTS, ZSTD_HOSTILE, ZSTD_VALID

__all__ = [
    "ATTACKS",
    "CASES",
    "CRYPTO_VALID",
    "HOSTILE",
    "LIBZSTD_ACCEPTS",
    "NOT_A_FILE",
    "OTHER_KEY",
    "OTHER_PASSPHRASE",
    "PHASE",
    "SHARDED_HOSTILE",
    "SHARDED_VALID",
    "SIGNING_SEEDS",
    "TEST_KDF",
    "TEST_KEY",
    "TEST_PASSPHRASE",
    "VALID",
    "build",
    "load_options",
    "main",
    "signer_id",
    "signing_key",
    "split",
    "table",
    "write",
]

CASES = SUITE / "cases"
#: every valid case the reference writer saves, and every hostile case, by name
VALID: dict[str, Valid] = {**valid_cases.VALID, **ZSTD_VALID}
HOSTILE: dict[str, Hostile] = {**_MAIN_HOSTILE, **CRYPTO_HOSTILE, **ZSTD_HOSTILE}


# -- writing -------------------------------------------------------------------------------------------------
def _json(obj: Any) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def category(codes: tuple[str, ...]) -> str:
    """The phase of the first allowed code (the one the order of SPEC.md §9 reaches first)."""
    return PHASE[codes[0]]


#: what a case expects from an implementation without a capability it requires, when not to skip it: a
#: reader that does not implement encryption refuses an encrypted file by its header (SPEC.md §3.1, §3.5)
WITHOUT = {"encryption": {"error": {"phase": "container", "codes": ["UNKNOWN_FEATURE"]}}}


def requirements(data: bytes, category: str, explicit: tuple[str, ...] = ()) -> list[str]:
    """The capabilities (PROTOCOL.md) a case needs: `encryption` for a file with the ENCRYPTED flag,
    `modules` for a model-phase case, and those it names."""
    tmodel_file = len(data) >= HEADER_SIZE and data[:8] == b"\x89TMODEL\n"
    flags = struct.unpack_from("<I", data, 12)[0] if tmodel_file else 0
    needs = [*explicit]
    if flags & ENCRYPTED:
        needs.append("encryption")
    if category == "model":
        needs.append("modules")
    return sorted(set(needs))


def _reading(case: dict[str, Any], read_with: dict[str, Any], requires: list[str]) -> None:
    """A case's read request fields, capabilities and fallbacks, in that order."""
    if read_with:
        case["read_with"] = read_with
    if requires:
        case["requires"] = requires
        without = {c: WITHOUT[c] for c in requires if c in WITHOUT}
        if without:
            case["without"] = without


def write(out: Path) -> list[Path]:
    """Write the whole corpus into `out/valid`, `out/hostile` and `out/sharded` (each emptied first)."""
    written: list[Path] = []
    for sub in ("valid", "hostile"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
        (out / sub).mkdir(parents=True)
    read_with: dict[str, dict[str, Any]] = {}
    valid: dict[str, Valid | Built] = {**VALID, **CRYPTO_VALID}
    for name, v in valid.items():
        path = out / "valid" / f"{name}.tmodel"
        if isinstance(v, Built):
            v.build(path)
            read_with[name], explicit = v.read_with, v.requires
        else:
            options = dict(v.options)
            if "sign_with" in options:
                options["sign_with"] = signing_key(1)
            tmodel.save(v.make(), path, metadata=v.metadata, **options)
            if name == "signed":
                tmodel.sign_file(path, signing_key(2))
            read_with[name], explicit = {}, ()
        case: dict[str, Any] = {
            "id": f"valid/{name}",
            "file": path.name,
            "tier": v.tier,
            "category": "valid",
            "spec": v.spec,
            "description": v.description,
        }
        _reading(case, read_with[name], requirements(path.read_bytes(), "valid", explicit))
        case["expect"] = {"description": describe(str(path), **reader_options(read_with[name]))}
        (out / "valid" / f"{name}.json").write_text(_json(case), encoding="utf-8")
        written += [path, out / "valid" / f"{name}.json"]
    for name, h in HOSTILE.items():
        sibling = (out / "valid" / f"{h.sibling}.tmodel").read_bytes()
        written += _hostile(out / "hostile", name, h, sibling, f"valid/{h.sibling}", read_with[h.sibling])
    return written + _sharded(out / "sharded")


def _hostile(
    folder: Path, name: str, h: Hostile, sibling: bytes, sibling_id: str, sibling_request: dict[str, Any]
) -> list[Path]:
    """One hostile case: the sibling's bytes with `h`'s ONE change, and its JSON."""
    data = h.edit(sibling)
    request = sibling_request if h.read_with is None else h.read_with
    # the ONE change: to the file, or (for what the caller gives, not the file) to the read request
    assert (data != sibling) != (request != sibling_request), name
    path = folder / f"{name}.tmodel"
    path.write_bytes(data)
    cls, motivation = ATTACKS[h.line]
    case: dict[str, Any] = {
        "id": f"{folder.name}/{name}",
        "file": path.name,
        "tier": h.tier,
        "category": category(h.codes),
        "spec": h.spec,
        "description": h.description,
        "sibling": f"{sibling_id}.tmodel",
        "change": h.change,
        "attack": {"line": h.line, "class": cls, "motivation": motivation},
    }
    _reading(case, request, requirements(data, category(h.codes), h.requires))
    case["expect"] = {"error": {"phase": category(h.codes), "codes": list(h.codes)}}
    (folder / f"{name}.json").write_text(_json(case), encoding="utf-8")
    return [path, folder / f"{name}.json"]


def _sharded(folder: Path) -> list[Path]:
    """`folder` (emptied first): the valid set (its index, JSON and shards) and the hostile indexes."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    written: list[Path] = []
    for name, v in SHARDED_VALID.items():
        path = folder / f"{name}.tmodel"
        tmodel.save(v.make(), path, metadata=v.metadata, **v.options)
        case: dict[str, Any] = {
            "id": f"sharded/{name}",
            "file": path.name,
            "tier": v.tier,
            "category": "valid",
            "spec": v.spec,
            "description": v.description,
            "expect": {"description": describe(str(path))},
        }
        (folder / f"{name}.json").write_text(_json(case), encoding="utf-8")
        written += [path, folder / f"{name}.json", *sorted(folder.glob(f"{name}-*.tmodel"))]
    for name, h in SHARDED_HOSTILE.items():
        sibling = (folder / f"{h.sibling}.tmodel").read_bytes()
        written += _hostile(folder, name, h, sibling, f"sharded/{h.sibling}", {})
    return written

    return written


def table() -> str:
    """The README table: every conformance/ATTACKS.md line and the hostile cases that cover it."""
    rows = ["| line | attack class | hostile cases |", "|---|---|---|"]
    for line, (cls, _) in ATTACKS.items():
        names = [f"`{n}`" for n, h in {**HOSTILE, **SHARDED_HOSTILE}.items() if h.line == line]
        where = ", ".join(names) if names else ""
        if line in NOT_A_FILE:
            where = (where + "; " if where else "") + "no file: " + NOT_A_FILE[line]
        rows.append(f"| {line} | {cls} | {where} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str]) -> None:
    if argv[:1] == ["--table"]:
        sys.stdout.write(table())
        return
    out = Path(argv[0]) if argv else CASES
    for p in write(out):
        print(hashlib.sha256(p.read_bytes()).hexdigest()[:16], p, file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
