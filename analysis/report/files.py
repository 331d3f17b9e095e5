"""Report files from a summary: summary.json, heads.csv, report.md, attention_examples.npz,
written into a staging folder that replaces the report folder only when everything is written."""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from data.charclasses import table_markdown

HEAD_COLUMNS = ["layer", "head", "behaviour", "confidence", "n_windows", "score", "heldout_score", "lift",
                "heldout_lift", "validated", "behaviours", "candidate"]


class OutputError(Exception):
    """The report folder cannot be written (one-line message)."""


@contextlib.contextmanager
def staged_output_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to `final`; on success it replaces `final` (an older
    report there is removed), on any failure it is deleted and `final` is left as it was."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    except OSError as e:
        raise OutputError(f"cannot write the report folder {final}: {e.strerror or e}") from None
    if final.exists() and not final.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write the report folder {final}: a file of that name exists")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old-{os.getpid()}") if final.exists() else None
    try:
        if old is not None:
            os.replace(final, old)
        os.replace(tmp, final)
    except OSError as e:
        if old is not None and old.exists() and not final.exists():
            os.replace(old, final)  # put the previous report back
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write the report folder {final}: {e.strerror or e}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _clean(x):
    """JSON has no NaN: undefined numbers (a detector without targets) become null."""
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_outputs(summary: dict, examples: dict[str, np.ndarray], out_dir: Path) -> None:
    out_dir = Path(out_dir)
    (out_dir / "summary.json").write_text(json.dumps(_clean(summary), ensure_ascii=False, indent=1), encoding="utf-8")
    write_heads_csv(summary, out_dir / "heads.csv")
    (out_dir / "report.md").write_text(report_markdown(summary), encoding="utf-8")
    np.savez(out_dir / "attention_examples.npz", **examples)


def write_heads_csv(summary: dict, path: Path) -> None:
    extra = sorted({k for h in summary["heads"] for k in h} - set(HEAD_COLUMNS))  # later steps' keys
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEAD_COLUMNS + extra)
        for h in summary["heads"]:
            row = {**h, "behaviours": ";".join(h["behaviours"])}
            w.writerow([_fmt(row.get(c, "")) for c in HEAD_COLUMNS + extra])


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def format_head_table(summary: dict) -> str:
    """The concise head table printed by the CLI (and used in report.md)."""
    rows = ["| layer | head | behaviour | confidence | windows | score | held-out score | validated |",
            "|---:|---:|---|---:|---:|---:|---:|---|"]
    for h in summary["heads"]:
        name = h["behaviour"] if h["validated"] else f"none (best: {h['candidate']})"
        others = [b for b in h["behaviours"] if b != h["behaviour"]]
        if others:
            name += f" (+{', '.join(others)})"
        rows.append(f"| {h['layer']} | {h['head']} | {name} | {h['confidence']:.2f} | {h['n_windows']} | "
                    f"{h['score']:.3f} | {h['heldout_score']:.3f} | {'yes' if h['validated'] else 'no'} |")
    return "\n".join(rows)


def _show(c: str) -> str:
    return {" ": "␠", "\n": "⏎", "|": "\\|"}.get(c, c)


def report_markdown(summary: dict) -> str:
    s, t = summary["settings"], summary["texts"]
    ind = summary["induction_test"]
    best_ind = max(((l, h) for l in range(len(ind["score"])) for h in range(len(ind["score"][0]))),
                   key=lambda lh: ind["score"][lh[0]][lh[1]])
    lines = [
        f"# Attention heads of `{summary['name']}` ({summary['lang']})",
        "",
        f"Checkpoint `{summary['checkpoint']}`: {summary['model']['n_layer']} layers x {summary['model']['n_head']} heads, "
        f"window {s['window']} characters.",
        f"Discovery: {t['discovery']['source']} ({t['discovery']['n_windows']} windows). "
        f"Held-out: {t['heldout']['source']} ({t['heldout']['n_windows']} windows).",
        "",
        f"A head gets a behaviour when its mean attention mass on the detector's targets is at least {s['threshold']}, "
        f"its lift over uniform causal attention is at least {s['min_lift']} and the lift has a bootstrap lower bound above 0 ({s['n_boot']} resamples of windows, "
        f"alpha {s['alpha']} over {s['n_tests']} tests, {s['alpha_per_test']:.2g} each) — on discovery text and again on "
        f"held-out text. Confidence and windows are measured on held-out text: the share and number of windows on which "
        f"the head's own score clears the threshold.",
        "",
        "## Heads",
        "",
        format_head_table(summary),
        "",
        "## Detectors",
        "",
        "| detector | target set | validated heads |",
        "|---|---|---|",
    ]
    for name, d in summary["detectors"].items():
        heads = [f"{l}.{h}" for l, row in enumerate(d["validated"]) for h, ok in enumerate(row) if ok]
        lines.append(f"| {name} | {d['description']} | {', '.join(heads) or '—'} |")
    lines += [
        "",
        "## Standard induction test",
        "",
        f"{ind['n_windows']} random sequences of {ind['length'] // 2} characters, each repeated twice. Loss on the first copy "
        f"{ind['loss_first_copy']:.3f}, on the second copy {ind['loss_second_copy']:.3f}. Strongest head {best_ind[0]}.{best_ind[1]}: "
        f"{ind['score'][best_ind[0]][best_ind[1]]:.3f} of its attention on the induction target (uniform: {ind['baseline']:.3f}).",
        "",
        "## Most salient attention patterns",
        "",
        "Largest single weights, excluding self-attention, position 0 and the first 8 rows. "
        "Context: `[key]` ... `<query>`.",
        "",
        "| layer | head | from | to | weight | context |",
        "|---:|---:|---|---|---:|---|",
    ]
    if not summary["salient_patterns"]:
        lines.append("| — | — | — | — | — | no weight of at least 0.25 outside the trivial positions |")
    for p in summary["salient_patterns"][:24]:
        ctx = "".join(_show(c) for c in p["context"])
        lines.append(f"| {p['layer']} | {p['head']} | {_show(p['from'])} | {_show(p['to'])} | {p['weight']:.3f} | `{ctx}` |")
    lines += ["", "## Character classes", "", table_markdown(), ""]
    return "\n".join(lines)
