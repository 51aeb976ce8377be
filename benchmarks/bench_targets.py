"""The targets of issues 6 and 18, each checked against the medians of one run: measured ratio, limit,
PASS/FAIL, and which issue set it.

Issue 18 restates most of issue 6's targets, some with another limit; every row says which issue (or both)
it belongs to, and a target of issue 6 that issue 18 changed is kept as its own row marked "6".

Saves are compared durable against durable: tmodel.save fsyncs before it returns, torch.save and
save_file do not, so their time here is the call plus an fsync of the file (`save+fsync`); the call alone
is shown beside it for information. Loads touch every byte (safetensors' mapped tensors read nothing until
touched). "Cold" loads run after the file was evicted from the page cache (bench.py `--cold`, and always
on the cold240 dataset).
"""

from __future__ import annotations

from typing import Any, NamedTuple

MB = 1 << 20
#: issue 18: the first call in a fresh process may cost this much more than the same call in a warm one
#: (`import tmodel` and everything the call imports lazily are counted, `import torch` is not)
FIRST_CALL_EXTRA_S = 0.030
#: issue 18: the many-tensor file's open and save targets apply from this many tensors on
MANY_TENSORS = 100_000


class Row(NamedTuple):
    issues: str  # "18", "6" or "6, 18"
    target: str
    measured: str
    limit: str
    mark: str  # PASS, **FAIL**, or — when not measured


def is_bf16(info: dict[str, Any]) -> bool:
    """Every tensor bf16 (the datasets issue 18 calls "the bf16 ones")."""
    return set(info["dtypes"]) == {"bfloat16"}


def rows(ds: str, s: dict[str, Any], threads: int) -> list[Row]:
    """Every target that applies to this dataset."""
    from tmodel.archive.writer import DEFAULT_CHUNK_SIZE

    info = s["info"]
    if info is None:
        return []
    fm = s["formats"]
    raw = info["raw_bytes"]
    torch_, st, tm, tr = (fm.get(k) for k in ("torch", "safetensors", "tmodel", "tmodel-raw"))
    zipnn = s.get("zipnn")
    out: list[Row] = []

    def add(
        issues: str, target: str, value: float | None, limit: float, at_most: bool, fmt: str = "{:.3f}"
    ) -> None:
        if value is None or value != value:  # missing or NaN
            out.append(Row(issues, target, "not measured", fmt.format(limit), "—"))
            return
        ok = value <= limit if at_most else value >= limit
        out.append(
            Row(issues, target, fmt.format(value), ("≤ " if at_most else "≥ ") + fmt.format(limit), _mark(ok))
        )

    def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
        """a[key] / b[key] where both were measured."""
        if not a or not b or key not in a or key not in b or not b[key]:
            return None
        return float(a[key] / b[key])

    bf16 = is_bf16(info)
    many = info["tensors"] >= MANY_TENSORS

    # -- cold cache, compressed (issue 18) --
    if s.get("cold"):
        add(
            "18",
            "cold cache: tmodel.load speed / torch.load (compressed)",
            ratio(torch_, tm, "cold_load_s"),
            1.3,
            False,
        )
        add(
            "18",
            "cold cache: tmodel.load speed / safetensors load_file + touch (compressed)",
            ratio(st, tm, "cold_load_s"),
            1.0,
            False,
        )

    # -- warm, compressed --
    speed = ratio(torch_, tm, "load_s")
    if bf16:
        add("6, 18", "tmodel.load speed / torch.load (compressed, bf16)", speed, 1.5, False)
    else:
        add("18", "tmodel.load speed / torch.load (compressed)", speed, 1.0, False)
        add("6", "tmodel.load speed / torch.load (compressed; issue 6's limit)", speed, 1.5, False)
    if zipnn is not None or s.get("zipnn_wanted"):
        decode = None
        if zipnn and zipnn.get("tmodel_decode_s") and zipnn.get("zipnn_decode_s"):
            ours = zipnn["tmodel_decode_raw"] / zipnn["tmodel_decode_s"]
            theirs = zipnn["zipnn_coded_raw"] / zipnn["zipnn_decode_s"]
            decode = ours / theirs
        add(
            "18",
            f"decode throughput / ZipNN's (same tensors, {threads} threads, warm)",
            decode,
            1.0,
            False,
        )
    if bf16:
        add(
            "6, 18",
            "compressed size / ZipNN size (bf16)",
            tm and zipnn and tm["file_bytes"] / zipnn["zipnn_bytes"],
            1.03,
            True,
        )
    if ds == "crepe":
        add("6", "compressed size / raw (real fp32 CNN)", tm and tm["file_bytes"] / raw, 0.66, True)
    add(
        "6",
        "tmodel.save speed / torch.save (compressed, both durable)",
        ratio(torch_, tm, "save_fsync_s"),
        1.0,
        False,
    )

    # -- raw --
    raw_load = ratio(tr, st, "load_s")
    add("18", "tmodel.load time / safetensors load_file (raw, both touch every byte)", raw_load, 1.1, True)
    add("6", "tmodel.load time / safetensors load_file (raw; issue 6's limit)", raw_load, 1.2, True)
    add(
        "6",
        "tmodel.save time / safetensors save_file (raw, both durable)",
        ratio(tr, st, "save_fsync_s"),
        1.1,
        True,
    )

    # -- open + get_tensor --
    for label, v, which, issues in (
        ("raw", tr, "median", "6, 18"),
        ("compressed", tm, "median", "6, 18"),
        ("raw", tr, "largest", "6, 18"),
        ("compressed", tm, "largest", "6"),
    ):
        add(
            issues,
            f"open + get_tensor time / safe_open + get_tensor ({which} tensor, {label})",
            ratio(v, st, f"get_{which}_s"),
            2.0,
            True,
        )
    if many:
        for label, v in (("compressed", tm), ("raw", tr)):
            add(
                "18",
                f"open time / safe_open ({info['tensors']:,} tensors, {label}; open, list the names, close)",
                ratio(v, st, "open_s"),
                2.0,
                True,
            )
        add(
            "18",
            f"tmodel.save time / safetensors save_file ({info['tensors']:,} tensors, default codec, "
            "both durable)",
            ratio(tm, st, "save_fsync_s"),
            1.5,
            True,
        )

    # -- first call in a fresh process (issue 18) --
    for label, v in (("compressed", tm), ("raw", tr)):
        for what, call in (("get", "tmodel.open + get_tensor, median tensor"), ("load", "tmodel.load")):
            first = v and v.get(f"first_{what}")
            add(
                "18",
                f"first call - warm call, ms: {call} ({label})",
                first and first["extra_s"] * 1e3,
                FIRST_CALL_EXTRA_S * 1e3,
                True,
                "{:.1f}",
            )

    # -- peak RSS --
    for name, v in (("compressed", tm), ("raw", tr)):
        add(
            "6, 18",
            f"load peak RSS above imports, MB ({name}; limit 1.05 x data + 64 MB)",
            v and v["load_over"] / MB,
            (1.05 * raw + 64 * MB) / MB,
            True,
            "{:,.0f}",
        )
        add(
            "6, 18",
            f"save peak RSS above the model in memory, MB ({name}; limit 64 MB + chunk x {threads} threads)",
            v and v["save_over"] / MB,
            (64 * MB + DEFAULT_CHUNK_SIZE * threads) / MB,
            True,
            "{:,.0f}",
        )
    return out


def info_rows(s: dict[str, Any]) -> list[str]:
    """Figures printed without a target: ZipNN's own speeds, non-durable save ratios, the parts of the
    first call, the get and open times."""
    info, fm, zipnn = s["info"], s["formats"], s.get("zipnn")
    lines: list[str] = []
    if info is None:
        return lines
    tm, torch_, st, tr = (fm.get(k) for k in ("tmodel", "torch", "safetensors", "tmodel-raw"))
    if zipnn:
        coded = zipnn["zipnn_coded_raw"]
        line = (
            f"- ZipNN ({zipnn['zipnn_threads']} threads): "
            f"size {zipnn['zipnn_bytes'] / info['raw_bytes']:.3f} of raw, "
            f"compress {coded / zipnn['zipnn_compress_s'] / 1e9:.2f} GB/s, decode "
            f"{coded / zipnn['zipnn_decode_s'] / 1e9:.2f} GB/s (its float tensors, from memory)"
        )
        if zipnn.get("tmodel_decode_s"):
            line += (
                f"; tmodel's decode (tmodel.load, threads={zipnn['zipnn_threads']}, warm cache, same worker) "
                f"{zipnn['tmodel_decode_raw'] / zipnn['tmodel_decode_s'] / 1e9:.2f} GB/s (every tensor)"
            )
        if tm:
            gbs = info["raw_bytes"] / tm["load_s"] / 1e9
            line += f"; tmodel.load of the compressed file in a fresh worker {gbs:.2f} GB/s"
        lines.append(line)
    if tm and torch_:
        lines.append(f"- save call only (no fsync): tmodel {torch_['save_s'] / tm['save_s']:.2f}x torch.save")
    if tr and st:
        lines.append(
            f"- raw save call only (no fsync): tmodel time / save_file {tr['save_s'] / st['save_s']:.2f}; "
            f"durable: {tr['save_fsync_s'] / st['save_fsync_s']:.2f}"
        )
    for v, label in ((st, "safetensors"), (tm, "tmodel compressed"), (tr, "tmodel raw")):
        if v and "get_largest_s" in v:
            lines.append(
                f"- open + get_tensor {label}: largest `{v['get_largest_name']}` "
                f"{v['get_largest_s'] * 1e3:.1f} ms, median `{v['get_median_name']}` "
                f"{v['get_median_s'] * 1e3:.2f} ms; open alone {v['open_s'] * 1e3:.2f} ms"
            )
    for v, label in ((tm, "compressed"), (tr, "raw")):
        for what, call in (("get", "open + get_tensor"), ("load", "load")):
            f = v and v.get(f"first_{what}")
            if f:
                lines.append(
                    f"- first call, tmodel {call} ({label}): fresh process {f['first_s'] * 1e3:.1f} ms "
                    f"(of which import tmodel {f['first_import_s'] * 1e3:.1f} ms), "
                    f"warm {f['warm_s'] * 1e3:.1f} ms"
                )
    return lines


def render(ds: str, s: dict[str, Any], threads: int) -> str:
    body = rows(ds, s, threads)
    if not body:
        return ""
    lines = [f"#### Targets ({ds})", "", "| issue | target | measured | limit | |", "|---|---|---:|---:|---|"]
    lines += [f"| {r.issues} | {r.target} | {r.measured} | {r.limit} | {r.mark} |" for r in body]
    extra = info_rows(s)
    if extra:
        lines += ["", *extra]
    return "\n".join(lines) + "\n"


def render_all(summaries: dict[str, dict[str, Any]], threads: int) -> str:
    """Every target of every dataset in one table, then the counts per issue."""
    all_rows = [(ds, r) for ds, s in summaries.items() for r in rows(ds, s, threads)]
    if not all_rows:
        return ""
    lines = [
        "### All targets (this run)",
        "",
        "| dataset | issue | target | measured | limit | |",
        "|---|---|---|---:|---:|---|",
    ]
    lines += [
        f"| {ds} | {r.issues} | {r.target} | {r.measured} | {r.limit} | {r.mark} |" for ds, r in all_rows
    ]
    lines.append("")
    for issue in ("18", "6"):
        marks = [r.mark for _, r in all_rows if issue in r.issues.split(", ")]
        lines.append(
            f"Issue {issue} targets: {marks.count('PASS')} PASS, {sum('FAIL' in m for m in marks)} FAIL, "
            f"{marks.count('—')} not measured.  "
        )
    return "\n".join(lines) + "\n"


def _mark(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"
