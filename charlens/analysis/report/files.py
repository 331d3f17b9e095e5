"""Report files: summary.json, heads.csv and attention_examples.npz (written into the staged report folder,
analysis/report/folder.py)."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from charlens.analysis.report.hebrew import char_label

HEAD_COLUMNS = ["layer", "head", "behaviour", "kind", "candidate", "validated", "borderline", "selectivity",
                "heldout_selectivity", "margin", "margin_se", "score", "heldout_score", "baseline", "confidence", "n_windows",
                "components", "unexplained", "key_chars", "behaviours"]


def key_chars_text(entries: list[dict]) -> str:
    """A head's key characters as text: "e 0.88 vs 0.17, a 0.06 vs 0.04" (mass on the character's keys vs its
    positional control; whitespace shown as a visible sign)."""
    return ", ".join(f"{char_label(e['char'])} {e['mass']:.2f} vs {e['control']:.2f}" for e in entries) or "—"


def _clean(x):
    """JSON has no NaN: undefined numbers (a detector without targets) become null."""
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_json(data: dict, path: Path) -> None:
    """JSON with null for undefined numbers, UTF-8 (Hebrew stays readable)."""
    Path(path).write_text(json.dumps(_clean(data), ensure_ascii=False, indent=1), encoding="utf-8")


def write_examples(examples: dict[str, np.ndarray], path: Path) -> None:
    np.savez(path, **examples)  # type: ignore[arg-type]  # numpy's stub types **kwds as its own flags


def write_heads_csv(summary: dict, path: Path) -> None:
    extra = sorted({k for h in summary["heads"] for k in h} - set(HEAD_COLUMNS))  # later steps' keys
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEAD_COLUMNS + extra)
        for h in summary["heads"]:
            row = {**h, "behaviours": ";".join(h["behaviours"]), "key_chars": key_chars_text(h["key_chars"])}
            w.writerow([_fmt(row.get(c, "")) for c in HEAD_COLUMNS + extra])


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)
