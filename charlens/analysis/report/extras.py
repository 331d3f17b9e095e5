"""Report sections of the optional analyses (value-weighted attention, rollout, query-key map,
counterfactual pair, ablation): for each result present, its figures, a markdown block for report.md
and an HTML section for report.html. Built from the typed results only; nothing is computed here
that a result does not already hold.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np

from charlens.analysis.report.figures import extras as xf
from charlens.analysis.report.figures.base import FigureWriter, style
from charlens.analysis.report.mdtext import md_code, md_link
from charlens.analysis.runs.results import (AblationResult, Extras, QKMapResult, RolloutResult, ValueWeightedResult)
from charlens.analysis.measures.counterfactual import Counterfactual
from charlens.data.charclasses import CLASS_NAMES


@dataclass
class Section:
    """One section of the extras, shared by report.md and report.html."""

    title: str
    figures: list[dict] = field(default_factory=list)  # FigureWriter entries
    html: str = ""
    markdown: list[str] = field(default_factory=list)

    def as_markdown(self) -> list[str]:
        return [f"### {self.title}", "", *self.markdown, *[md_link(f["caption"], f["file"], image=True) for f in self.figures], ""]

    def as_html_section(self) -> dict:
        return {"title": self.title, "html": self.html,
                "figures": [{"file": f["file"], "title": self.title, "caption": f["caption"]} for f in self.figures]}


def highlighted_html(text: str, scores, rtl: bool = False) -> str:
    """The text as HTML spans shaded by score (scaled to the text's maximum), each with its
    score as a tooltip; `rtl` sets the paragraph direction for Hebrew."""
    scores = [float(s) for s in scores]
    if len(scores) != len(text):
        raise ValueError(f"{len(scores)} scores for {len(text)} characters")
    top = max(max(scores), 1e-12)
    spans = [
        f'<span title="{s:.3f}" style="background: rgba(220, 60, 30, {s / top:.3f})">'
        f"{'&nbsp;' if ch == ' ' else html.escape(ch)}</span>"
        for ch, s in zip(text, scores)
    ]
    return f'<p class="importance" dir="{"rtl" if rtl else "ltr"}" style="font-family: monospace; font-size: 1.1em">{"".join(spans)}</p>'


def _head_list(rows: list[dict], key: str) -> str:
    return ", ".join(f"L{r['layer']}H{r['head']} ({r[key]:.2f})" for r in rows) or "none"


def extras_sections(extras: Extras, lang: str, out: FigureWriter) -> list[Section]:
    """The sections of every extra present, in a fixed order; figures are saved through `out`."""
    sections = []
    with style():
        if extras.value_weighted is not None:
            sections.append(_value_weighted(extras.value_weighted, out))
        if extras.rollout is not None:
            sections.append(_rollout(extras.rollout, lang, out))
        if extras.qk_map is not None:
            sections.append(_qk_map(extras.qk_map, out))
        if extras.counterfactual is not None:
            sections.append(_counterfactual(extras.counterfactual, out))
        if extras.ablation is not None:
            sections.append(_ablation(extras.ablation, out))
    return sections


def _value_weighted(r: ValueWeightedResult, out: FigureWriter) -> Section:
    title = "Value-weighted attention"
    worst = np.unravel_index(np.argmax(r.disagreement), r.disagreement.shape)
    return Section(title, [
        out.add("value_weighted_disagreement", title, xf.disagreement_figure(r.disagreement),
                "Where raw and value-weighted attention disagree"),
        out.add("value_weighted_head", title,
                xf.value_weighted_figure(r.attention[worst], r.weighted[worst], r.text, *map(int, worst)),
                f"L{worst[0]}H{worst[1]}, the head whose weights mislead most")],
        markdown=["Per head, the mean total-variation distance between raw attention rows and value-weighted rows "
                  "(0: the head's value vectors are equally large, so its weights tell the whole story).", "",
                  "| layer | head | behaviour | raw score | value-weighted score |", "|---:|---:|---|---:|---:|",
                  *[f"| {b['layer']} | {b['head']} | {b['behaviour']} | {b['raw_score']:.3f} | {b['value_weighted_score']:.3f} |"
                    for b in r.behaviour_scores], ""])


def _rollout(r: RolloutResult, lang: str, out: FigureWriter) -> Section:
    title = "Token importance, entropy and attention rollout"
    rtl = lang == "he"
    page = ("<p>Raw</p>" + highlighted_html(r.text, r.importance_raw, rtl=rtl)
            + "<p>Rollout</p>" + highlighted_html(r.text, r.importance_rollout, rtl=rtl))
    per_layer = ", ".join(f"layer {l}: {v:.2f}" for l, v in enumerate(np.round(r.entropy["per_layer"], 4).tolist()))
    return Section(title, [
        out.add("importance", title, xf.importance_figure(r.text, r.importance_raw, r.importance_rollout),
                "Attention received by each character: raw and rolled out"),
        out.add("entropy", title, xf.entropy_figure(r.entropy["samples"], r.entropy["by_position"]),
                "Normalized attention entropy per head and by position"),
        out.add("rollout", title, xf.rollout_figure(r.rollout, r.text),
                "Attention rollout over all layers on one held-out window")],
        html=page, markdown=[f"Mean normalized entropy per layer: {per_layer}."])


def _qk_map(r: QKMapResult, out: FigureWriter) -> Section:
    title = f"Query–key map of L{r.layer}H{r.head}"
    return Section(title, [out.add(
        f"qk_map_L{r.layer}H{r.head}", title,
        xf.qk_map_figure(r.queries, r.keys, r.classes, CLASS_NAMES, r.layer, r.head, r.spearman_2d, r.method),
        "Queries and keys in one 2-D space")],
        markdown=[f"{r.n_windows} windows x {r.length} positions. Spearman correlation of distance with attention: "
                  f"{r.spearman_2d:.2f} in the 2-D picture, {r.spearman_full:.2f} in the full {r.head_dim}-d space "
                  "(negative: nearer keys get more attention)."])


def _counterfactual(cf: Counterfactual, out: FigureWriter) -> Section:
    title = "Counterfactual pair"
    top = cf.metrics["ranking"][0]
    l, h = top["layer"], top["head"]
    aligned = "".join(cf.text_a[i] for i in cf.pos_a)
    return Section(title, [out.add(
        "counterfactual", title,
        xf.counterfactual_figure(cf.attention_a[l, h], cf.attention_b[l, h], cf.difference(l, h), aligned,
                                 cf.text_a, cf.text_b, cf.metrics["mean_abs_diff"], l, h),
        f"L{l}H{h}, the head most changed between the two texts")],
        markdown=[f"A: {md_code(cf.text_a)}  B: {md_code(cf.text_b)} ({cf.metrics['n_aligned']} aligned characters). Heads most changed "
                  "(mean |ΔA| on aligned query/key pairs): " + _head_list(cf.metrics["ranking"][:5], "mean_abs_diff") + "."])


def _ablation(r: AblationResult, out: FigureWriter) -> Section:
    title = "Head ablation"
    L = 1 + max(l for l, _ in r.heads)
    H = 1 + max(h for _, h in r.heads)
    delta = np.zeros((L, H))
    flags = np.zeros_like(delta, dtype=bool)
    marked = np.zeros_like(flags)
    for (l, h), a in r.heads.items():
        delta[l, h], flags[l, h], marked[l, h] = a.delta_loss, a.visible_but_unused, (l, h) in r.validated
    rows = ["| layer | head | behaviour | validated | Δ loss | Δ loss on its positions (n) | visible but unused |",
            "|---:|---:|---|---|---:|---:|---|"]
    for (l, h), a in sorted(r.heads.items()):
        tgt = "—" if np.isnan(a.delta_loss_targeted) else f"{a.delta_loss_targeted:+.4f} ({a.n_targeted})"
        rows.append(f"| {l} | {h} | {r.behaviours[(l, h)]} | {'yes' if (l, h) in r.validated else 'no'} | {a.delta_loss:+.4f} | "
                    f"{tgt} | {'**yes**' if a.visible_but_unused else ''} |")
    return Section(title, [out.add("ablation", title, xf.ablation_figure(delta, marked, flags, mode=r.mode),
                                   f"Held-out loss change when each head is {r.mode}-ablated")],
                   markdown=[f"Each head {r.mode}-ablated alone; loss change in nats/char on the held-out windows, and on "
                             "the query positions where the head puts at least half its attention on its behaviour's targets "
                             f"(induction: the second copy of repeated random sequences). Tolerance {r.tol}.", "", *rows])
