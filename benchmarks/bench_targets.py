"""Issue 6's targets, each checked against the medians of one run: measured ratio, limit, PASS/FAIL.

Saves are compared durable against durable: tmodel.save fsyncs before it returns, torch.save and
save_file do not, so their time here is the call plus an fsync of the file (`save+fsync`); the call alone
is shown beside it for information.
"""

from __future__ import annotations

from typing import Any

MB = 1 << 20


def rows(ds: str, s: dict[str, Any], threads: int) -> list[tuple[str, str, str, str]]:
    """(target, measured, limit, mark) for every target that applies to this dataset."""
    from tmodel.archive.writer import DEFAULT_CHUNK_SIZE

    info = s["info"]
    if info is None:
        return []
    fm = s["formats"]
    raw = info["raw_bytes"]
    torch_, st, tm, tr = (fm.get(k) for k in ("torch", "safetensors", "tmodel", "tmodel-raw"))
    zipnn = s.get("zipnn")
    out: list[tuple[str, str, str, str]] = []

    def add(target: str, value: float | None, limit: float, at_most: bool, fmt: str = "{:.3f}") -> None:
        if value is None:
            out.append((target, "not measured", fmt.format(limit), "—"))
            return
        ok = value <= limit if at_most else value >= limit
        out.append((target, fmt.format(value), ("≤ " if at_most else "≥ ") + fmt.format(limit), _mark(ok)))

    bf16 = set(info["dtypes"]) == {"bfloat16"}
    if bf16:
        add(
            "compressed size / ZipNN size (bf16)",
            tm and zipnn and tm["file_bytes"] / zipnn["zipnn_bytes"],
            1.03,
            True,
        )
    if ds == "crepe":
        add("compressed size / raw (real fp32 CNN)", tm and tm["file_bytes"] / raw, 0.66, True)
    add(
        "tmodel.load speed / torch.load (compressed)",
        torch_ and tm and torch_["load_s"] / tm["load_s"],
        1.5,
        False,
    )
    add(
        "tmodel.save speed / torch.save (compressed, both durable)",
        torch_ and tm and torch_["save_fsync_s"] / tm["save_fsync_s"],
        1.0,
        False,
    )
    add(
        "tmodel.load time / safetensors load_file (raw)", tr and st and tr["load_s"] / st["load_s"], 1.2, True
    )
    add(
        "tmodel.save time / safetensors save_file (raw, both durable)",
        tr and st and tr["save_fsync_s"] / st["save_fsync_s"],
        1.1,
        True,
    )
    for label, v in (("compressed", tm), ("raw", tr)):
        for which in ("largest", "median"):
            key = f"get_{which}_s"
            add(
                f"get_tensor time / safe_open get_tensor ({which} tensor, {label})",
                v and st and key in v and key in st and v[key] / st[key],
                2.0,
                True,
            )
    for name, v in (("compressed", tm), ("raw", tr)):
        add(
            f"load peak RSS above imports, MB ({name}; limit 1.05 x data + 64 MB)",
            v and v["load_over"] / MB,
            (1.05 * raw + 64 * MB) / MB,
            True,
            "{:,.0f}",
        )
        add(
            f"save peak RSS above the model in memory, MB ({name}; limit 64 MB + chunk x {threads} threads)",
            v and v["save_over"] / MB,
            (64 * MB + DEFAULT_CHUNK_SIZE * threads) / MB,
            True,
            "{:,.0f}",
        )
    return out


def info_rows(s: dict[str, Any]) -> list[str]:
    """Figures the issue asks to print without a target: ZipNN's own speeds, the non-durable save ratios."""
    info, fm, zipnn = s["info"], s["formats"], s.get("zipnn")
    lines: list[str] = []
    if info is None:
        return lines
    tm, torch_, st, tr = (fm.get(k) for k in ("tmodel", "torch", "safetensors", "tmodel-raw"))
    if zipnn:
        coded = zipnn["zipnn_coded_raw"]
        lines.append(
            f"- ZipNN ({zipnn['zipnn_threads']} threads): "
            f"size {zipnn['zipnn_bytes'] / info['raw_bytes']:.3f} of raw, "
            f"compress {coded / zipnn['zipnn_compress_s'] / 1e9:.2f} GB/s, decode "
            f"{coded / zipnn['zipnn_decode_s'] / 1e9:.2f} GB/s (decode alone, from memory)"
            + (
                f"; tmodel.load of the compressed file {info['raw_bytes'] / tm['load_s'] / 1e9:.2f} GB/s"
                if tm
                else ""
            )
        )
    if tm and torch_:
        lines.append(f"- save call only (no fsync): tmodel {torch_['save_s'] / tm['save_s']:.2f}x torch.save")
    if tr and st:
        lines.append(
            f"- raw save call only (no fsync): tmodel time / save_file {tr['save_s'] / st['save_s']:.2f}"
        )
    for v, label in ((st, "safetensors"), (tm, "tmodel compressed"), (tr, "tmodel raw")):
        if v and "get_largest_s" in v:
            lines.append(
                f"- get_tensor {label}: largest `{v['get_largest_name']}` {v['get_largest_s'] * 1e3:.1f} ms, "
                f"median `{v['get_median_name']}` {v['get_median_s'] * 1e3:.2f} ms"
            )
    return lines


def render(ds: str, s: dict[str, Any], threads: int) -> str:
    body = rows(ds, s, threads)
    if not body:
        return ""
    lines = [f"#### Targets ({ds})", "", "| target | measured | limit | |", "|---|---:|---:|---|"]
    lines += [f"| {t} | {m} | {lim} | {mark} |" for t, m, lim, mark in body]
    extra = info_rows(s)
    if extra:
        lines += ["", *extra]
    return "\n".join(lines) + "\n"


def _mark(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"
