"""report.md: the head table, validated heads per detector, the induction test, salient patterns,
the character classes, and the sections of the optional analyses; built once from the summary."""
from __future__ import annotations

from typing import Sequence

from analysis.report.extras import Section
from analysis.report.mdtext import md_code, md_escape
from analysis.runs.groups import GroupComparison
from analysis.runs.matching import RECUR_DISTANCE
from data.charclasses import table_markdown


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


def report_markdown(summary: dict, extras: Sequence[Section] = ()) -> str:
    """The whole report.md of one analysis (`summary`: the summary.json contract)."""
    s, t = summary["settings"], summary["texts"]
    ind = summary["induction_test"]
    best_ind = max(((l, h) for l in range(len(ind["score"])) for h in range(len(ind["score"][0]))),
                   key=lambda lh: ind["score"][lh[0]][lh[1]])
    lines = [
        f"# Attention heads of {md_code(summary['name'])} ({summary['lang']})",
        "",
        f"Checkpoint {md_code(summary['checkpoint'])}: {summary['model']['n_layer']} layers x {summary['model']['n_head']} heads, "
        f"window {s['window']} characters.",
        f"Discovery: {md_escape(t['discovery']['source'])} ({t['discovery']['n_windows']} windows). "
        f"Held-out: {md_escape(t['heldout']['source'])} ({t['heldout']['n_windows']} windows).",
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
        lines.append(f"| {p['layer']} | {p['head']} | {md_escape(_show(p['from']))} | {md_escape(_show(p['to']))} | "
                     f"{p['weight']:.3f} | {md_code(ctx)} |")
    lines += ["", "## Character classes", "", table_markdown(), ""]
    if extras:
        lines += ["## Beyond attention weights", ""] + [line for s in extras for line in s.as_markdown()] + [""]
    return "\n".join(lines)


def group_markdown(cmp: GroupComparison, links: Sequence[dict] = ()) -> str:
    """report.md of a group comparison: replicated findings first, then the rest, then agreement."""
    A, B = cmp.names
    lines = [f"# {md_escape(A)} vs {md_escape(B)}: {len(cmp.members[0])} vs {len(cmp.members[1])} seeds", "",
             f"{md_escape(A)}: {md_escape(', '.join(cmp.members[0]))}. {md_escape(B)}: {md_escape(', '.join(cmp.members[1]))}.",
             "", *map(md_escape, cmp.notes), "",
             "A difference replicates when it has the same sign in every seed pair, the exact permutation test over "
             f"seed labels gives p <= {cmp.alpha}, and it is at least the quantity's minimum effect.", "",
             "## Replicated findings", ""]
    lines += [f"- {md_escape(f)}" for f in cmp.replicated] or [
        f"None: no difference between {md_escape(A)} and {md_escape(B)} replicated across seeds."]
    lines += ["", "## Not replicated", "", *[f"- {md_escape(f)}" for f in cmp.not_replicated], "", "## Within each group", ""]
    for name, agreement in zip(cmp.names, cmp.agreement):
        present = [f"{d} in {b['seeds']} of {agreement.n_seeds} (first layers {b['first_layers']})"
                   for d, b in agreement.behaviours.items() if b["seeds"]]
        lines += [f"**{md_escape(name)}**: " + ("; ".join(present) or "no validated behaviour in any seed") + ".", ""]
        if agreement.heads:
            recur = [h for h in agreement.heads if h.recurs]
            lines += [f"{len(recur)} of {len(agreement.heads)} heads of the first seed recur in every other seed "
                      f"(matched by attention rows, JS distance <= {RECUR_DISTANCE}):", "",
                      "| head | behaviour | recurs | matches |", "|---|---|---|---|",
                      *[f"| {h.head} | {h.behaviour} | {'yes' if h.recurs else 'no'} | "
                        + ", ".join(f"{md_escape(m)}: {hd} ({d:.2f})" for m, hd, d in h.matches) + " |" for h in agreement.heads], ""]
    if links:
        lines += ["## Models", "", *[f"- [{md_escape(link['text'])}](<{link['href']}>)" for link in links], ""]
    return "\n".join(lines)
