"""A self-contained HTML report: one file, no network. The page is a fixed template
(analysis/report/templates/report.html, .css, .js); the Python side only fills in a title,
the CSS, the script and one JSON data block, and the script draws every section
(sortable tables, figures, interactive head views, extra sections) from that data.

Figures go in as base64 data URIs; attention for the head view goes in as uint8
(weight × 255) base64, capped in size: at most `MAX_VIEW_TEXTS` texts per view, each
cut to the prefix that fits the byte budget (a prefix of a causal window keeps its
attention rows exact).
"""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from string import Template
from typing import Iterable, Optional, Sequence

import numpy as np

from charlens.analysis.report.figures.base import head_names
from charlens.analysis.report.files import key_chars_text
from charlens.analysis.report.findings import model_findings
from charlens.analysis.report.hebrew import is_rtl
from charlens.analysis.runs.groups import GroupComparison
from charlens.analysis.runs.snapshots import SnapshotAttention
from charlens.analysis.runs.stages import StageComparison
from charlens.model.atomic import atomic_write

TEMPLATES = Path(__file__).resolve().parent / "templates"
# One <script>, dependencies first: report.js draws the page and mounts live views with live.js.
SCRIPTS = ("export.js", "live_forward.js", "live_detectors.js", "live.js", "report.js")
STYLES = ("report.css", "live.css")
MAX_VIEW_TEXTS = 4
MAX_VIEW_BYTES = 1_500_000  # attention bytes per head view, over all its texts
MIN_VIEW_CHARS = 16
MAX_STEP_BYTES = 2_000_000  # attention bytes of the training-step slider, over all its steps


def figure_entry(path: Path | str, title: str = "", caption: str = "", name: str = "") -> dict:
    """A figure file (PNG or SVG) as a report entry with its content inlined."""
    path = Path(path)
    mime = {".png": "image/png", ".svg": "image/svg+xml"}.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"figures must be .png or .svg, got {path}")
    src = f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return {"name": name or path.stem, "title": title, "caption": caption, "src": src}


def figure_entries(figures: Iterable[dict], figure_dir: Path | str) -> list[dict]:
    """Inline a list of {"file" (relative to figure_dir) or "src", "title", "caption"}."""
    out = []
    for f in figures:
        if "src" in f:
            out.append(dict(f))
        else:
            out.append(figure_entry(Path(figure_dir) / f["file"], f.get("title", ""), f.get("caption", ""),
                                    f.get("name", "")))
    return out


def view_chars(n_texts: int, n_layer: int, n_head: int, length: int, budget: int = MAX_VIEW_BYTES) -> int:
    """How many leading characters of each text fit the byte budget."""
    fit = int(math.sqrt(budget / max(1, n_texts * n_layer * n_head)))
    return max(min(length, MIN_VIEW_CHARS), min(length, fit))


def head_view(examples: dict, name: str = "", head_names: Optional[Sequence[str]] = None,
              max_texts: int = MAX_VIEW_TEXTS, budget: int = MAX_VIEW_BYTES,
              start: tuple[int, int] = (0, 0)) -> dict:
    """Head-view data from attention examples (the attention_examples.npz keys)."""
    att = np.asarray(examples["attention"])
    if att.ndim != 5:
        raise ValueError(f"attention must be (N, L, H, T, T), got {att.shape}")
    texts = [str(t) for t in np.asarray(examples["text"]).tolist()][:max_texts]
    N, L, H, T, _ = att.shape
    keep = view_chars(len(texts), L, H, T, budget)
    entries = []
    for k, text in enumerate(texts):
        n = min(keep, len(text))  # texts shorter than the window (--sentences) are zero-padded in the npz
        a = np.clip(np.asarray(att[k, :, :, :n, :n], dtype=np.float32), 0.0, 1.0)
        q = np.rint(a * 255).astype(np.uint8)
        entries.append({"text": text[:n], "attention": base64.b64encode(q.tobytes()).decode("ascii"),
                        "cropped_from": len(text) if n < len(text) else None})
    lang = str(np.asarray(examples.get("lang", "")))
    return {"name": name, "lang": lang, "rtl": lang == "he" or any(is_rtl(t) for t in texts),
            "n_layer": L, "n_head": H, "head_names": list(head_names or [""] * (L * H)),
            "class_names": [str(c) for c in np.asarray(examples.get("class_names", [])).tolist()],
            "texts": entries, "start_layer": int(start[0]), "start_head": int(start[1])}


def _bytes(a: np.ndarray) -> str:
    """Weights as uint8 (weight x 255), base64."""
    q = np.rint(np.clip(np.asarray(a, dtype=np.float32), 0.0, 1.0) * 255).astype(np.uint8)
    return base64.b64encode(q.tobytes()).decode("ascii")


def step_view(snap: SnapshotAttention, budget: int = MAX_STEP_BYTES) -> dict:
    """The head view's training-step slider: the first text's attention at each step, cut to the byte budget."""
    S, L, H, T, _ = snap.attention.shape
    n = view_chars(S, L, H, T, budget)
    return {"text_index": 0, "text": snap.text[:n], "steps": list(snap.steps),
            "attention": [_bytes(a[:, :, :n, :n]) for a in snap.attention],
            "cropped_from": len(snap.text) if n < len(snap.text) else None}


def heads_table(summary: dict, title: str = "") -> dict:
    """The head behaviour table: one row per head with every key the summary has."""
    return {"title": title or f"Heads of {summary.get('name', 'the model')}",
            "note": "Click a column header to sort; click again to reverse. Validated heads are marked at the left.",
            "rows": [{**h, "key_chars": key_chars_text(h["key_chars"])} if "key_chars" in h else h for h in summary["heads"]]}


def provenance(summary: dict) -> dict:
    """Settings and provenance of one analysis (the page shows them collapsed, at the end)."""
    values = {"checkpoint": summary.get("checkpoint"), "language": summary.get("lang"), **summary.get("model", {})}
    for split, info in summary.get("texts", {}).items():
        values[f"{split} text"] = ", ".join(f"{k} {v}" for k, v in info.items())
    values.update({f"setting: {k}": v for k, v in summary.get("settings", {}).items()})
    timeline = summary.get("timeline")
    if timeline:
        values["timeline"] = (f"{len(timeline['steps'])} recorded steps, {timeline['steps'][0]}..{timeline['steps'][-1]}"
                              if timeline["recorded"] else timeline["note"])
    return {"title": summary.get("name", "analysis"), "values": values}


def _plain(value):
    """JSON-safe copy: numpy scalars and arrays to Python, NaN and infinities to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def render(data: dict) -> str:
    """The report page for `data` (keys: title; findings_lead (paragraphs), findings_title, findings (sentences),
    findings_note, findings_figures (shown beside the sentences); links, tables, figures, views, live (entries
    from analysis.report.live_model), extra_sections, provenance (collapsed at the end); all optional but title)."""
    page = Template((TEMPLATES / "report.html").read_text(encoding="utf-8"))
    payload = json.dumps(_plain(data), ensure_ascii=False, allow_nan=False)
    # Inside <script> only "</" and "<!--" matter; escaping <, > and & covers both.
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return page.substitute(title=html.escape(data.get("title", "charlens report")),
                           css="\n".join((TEMPLATES / f).read_text(encoding="utf-8") for f in STYLES),
                           script="\n".join((TEMPLATES / f).read_text(encoding="utf-8") for f in SCRIPTS),
                           data=payload)


def write_page(data: dict, out_path: Path | str) -> Path:
    """Render and write atomically (`model.checkpoint.atomic_write`)."""
    out_path = Path(out_path)
    text = render(data).encode("utf-8")
    atomic_write(out_path, lambda f: f.write(text))
    return out_path


def extra_section_entries(sections: Optional[Sequence[dict]], figure_dir: Path | str) -> list[dict]:
    """Extra sections {"title", "html" and/or "figures"} with their figures inlined."""
    out = []
    for s in sections or []:
        if "title" not in s or not ("html" in s or "figures" in s):
            raise ValueError(f"an extra section needs a title and html or figures, got keys {sorted(s)}")
        out.append({"title": s["title"], "html": s.get("html", ""),
                    "figures": figure_entries(s.get("figures", []), figure_dir)})
    return out


def split_figures(figures: Sequence[dict], first: str) -> tuple[list[dict], list[dict]]:
    """The figure named `first` (shown beside the findings) and the others, in order."""
    return [f for f in figures if f.get("name") == first], [f for f in figures if f.get("name") != first]


def write_html_report(summary: dict, examples: Optional[dict], figures: Sequence[dict], out_path: Path | str,
                      extra_sections: Optional[Sequence[dict]] = None, figure_dir: Path | str | None = None,
                      live: Optional[dict] = None, snapshots: Optional[SnapshotAttention] = None) -> Path:
    """report.html for one analysis: what it found (a paragraph built from the numbers, the most selective
    heads, the head map), the sortable head table, figures (FigureWriter entries, files relative to
    `figure_dir`, default the report's folder), the head view of the attention examples (with a training-step
    slider over `snapshots` when given), the live view of `live` (`analysis.report.live_model.live_model`;
    None: none), any extra sections, and settings and provenance collapsed at the end."""
    out_path = Path(out_path)
    figure_dir = Path(figure_dir) if figure_dir is not None else out_path.parent
    names = head_names(summary)
    views = ([head_view(examples, summary.get("name", ""), with_key_chars(summary, names), start=first_validated(summary))]
             if examples is not None and len(examples.get("text", [])) else [])
    if views and snapshots is not None and len(snapshots.steps) > 1:
        views[0]["training_steps"] = step_view(snapshots)
    found = model_findings(summary)
    head_map, others = split_figures(figures, "behaviours")
    data = {"title": f"charlens: {summary.get('name', 'analysis')} ({summary.get('lang', '?')})",
            "findings_lead": [found.paragraph()],
            "findings_title": "The most selective heads" if found.heads else "",
            "findings": list(found.heads),
            "findings_figures": figure_entries(head_map, figure_dir),
            "tables": [heads_table(summary)],
            "figures": figure_entries(others, figure_dir),
            "views": views,
            "live": [live_view(live, names, examples)] if live is not None else [],
            "extra_sections": extra_section_entries(extra_sections, figure_dir),
            "provenance": [provenance(summary)]}
    return write_page(data, out_path)


def with_key_chars(summary: dict, names: Sequence[str]) -> list[str]:
    """The head view's head names: each head's label and the key characters beyond its positional control."""
    out = list(names)
    H = summary["model"]["n_head"]
    for h in summary["heads"]:
        if h.get("key_chars"):
            out[h["layer"] * H + h["head"]] += f" · keys {key_chars_text(h['key_chars'])}"
    return out


def live_view(live: dict, names: Sequence[str], examples: Optional[dict]) -> dict:
    """The live entry with what the report knows: the heads' behaviours, and the first example text to open on."""
    texts = [] if examples is None else [str(t) for t in np.asarray(examples.get("text", [])).tolist()]
    return {**live, "head_names": list(names), "initial_text": texts[0] if texts else ""}


def first_validated(summary: dict) -> tuple[int, int]:
    """The head a head view opens on: the first validated one (else L0H0)."""
    for head in summary["heads"]:
        if head.get("validated"):
            return head["layer"], head["head"]
    return 0, 0


def write_group_page(cmp: GroupComparison, figures: Sequence[dict], out_path: Path | str,
                     links: Sequence[dict] = (), stages: Optional[StageComparison] = None) -> Path:
    """report.html of a group comparison: the replicated findings first, their figure beside them (every seed
    a point), then every quantity with its per-seed values and verdict, within-group agreement, the findings
    across training (with `stages`), the figures and links to each model's report."""
    A, B = cmp.names
    rows = [{"quantity": q.label, "verdict": q.verdict, f"{A} mean": q.difference.mean_a if q.difference else None,
             f"{B} mean": q.difference.mean_b if q.difference else None,
             f"{A} seeds": list(q.difference.values_a) if q.difference else None,
             f"{B} seeds": list(q.difference.values_b) if q.difference else None,
             "p": q.difference.p if q.difference else None,
             "smallest p": q.difference.smallest_p if q.difference else None}
            for q in cmp.quantities]
    recurring = [{"group": name, "head (first seed)": h.head, "behaviour": h.behaviour, "recurs in every seed": h.recurs,
                  "matches": ", ".join(f"{m}: {head} d={d:.2f}" for m, head, d in h.matches)}
                 for name, agreement in zip(cmp.names, cmp.agreement) for h in agreement.heads]
    shown, others = split_figures(figures, "group_findings")
    data = {"title": f"charlens: {A} vs {B} ({len(cmp.members[0])} vs {len(cmp.members[1])} seeds)",
            "findings_title": "Replicated findings" if cmp.replicated else "",
            "findings": list(cmp.replicated) or [f"No difference between {A} and {B} replicated across seeds."],
            "findings_numbered": bool(cmp.replicated),
            "findings_figures": figure_entries(shown, Path(out_path).parent),
            "findings_note": " ".join(cmp.notes) + " Replicated: the same sign in every seed pair, exact permutation "
                             f"p <= {cmp.alpha} over seed labels, and at least the minimum effect (docs/comparison.md). Everything "
                             "else is in the table below with its per-seed values.",
            "links": list(links),
            "tables": [{"title": "Every quantity, per seed", "rows": rows},
                       {"title": "Not replicated", "rows": [{"finding": f} for f in cmp.not_replicated]}]
            + ([{"title": "Heads matched across seeds (optimal assignment on attention rows)", "rows": recurring}]
               if recurring else [])
            + ([{"title": "Findings across training", "rows": [{"finding": f} for f in stages.findings]
                 or [{"finding": "none at any recorded step"}]}] if stages is not None else []),
            "figures": figure_entries(others, Path(out_path).parent)}
    return write_page(data, out_path)
