"""report.md: what the analysis found (a paragraph built from the numbers and the head map), the head table,
validated heads per detector, the induction test, salient patterns, the character classes, the sections of
the optional analyses, and settings and provenance collapsed at the end; built once from the summary."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from charlens.analysis.report.extras import Section
from charlens.analysis.report.files import key_chars_text
from charlens.analysis.report.findings import model_findings
from charlens.analysis.report.mdtext import md_code, md_escape, md_link
from charlens.analysis.runs.groups import GroupComparison
from charlens.analysis.runs.matching import RECUR_DISTANCE
from charlens.data.charclasses import table_markdown


def _behaviour_cell(h: dict) -> str:
    if h["validated"]:
        name = h["behaviour"] if h["behaviour"] == h["candidate"] else f"{h['behaviour']} ({h['candidate']})"
    else:
        name = f"none ({'borderline' if h['borderline'] else 'best'}: {h['candidate']})"
    others = [b for b in h["behaviours"] if b != h["candidate"]]
    return name + (f" (+{', '.join(others)})" if others else "")


# The head table's columns, in order: (header, markdown alignment, the cell of one summary["heads"] entry).
# A new column is one line here (heads.csv and report.html's table take every key of a head by themselves).
HEAD_COLUMNS: list[tuple[str, str, Callable[[dict], str]]] = [
    ("layer", "---:", lambda h: str(h["layer"])),
    ("head", "---:", lambda h: str(h["head"])),
    ("behaviour", "---", _behaviour_cell),
    ("selectivity", "---:", lambda h: _num(h["selectivity"])),
    ("held-out", "---:", lambda h: _num(h["heldout_selectivity"])),
    ("margin (SE)", "---:", lambda h: f"{_num(h['margin'], '+.3f')} ({_num(h['margin_se'], '+.1f')})"),
    ("score", "---:", lambda h: _num(h["score"])),
    ("control", "---:", lambda h: _num(h["baseline"])),
    ("attention explained as", "---", lambda h: str(h["components"])),
    ("unexplained", "---:", lambda h: _num(h["unexplained"], ".2f")),
    ("key characters (mass vs control)", "---", lambda h: md_escape(key_chars_text(h["key_chars"]))),
]


def format_head_table(summary: dict) -> str:
    """The concise head table printed by the CLI (and used in report.md): one row per head, HEAD_COLUMNS."""
    rows = ["| " + " | ".join(c[0] for c in HEAD_COLUMNS) + " |", "|" + "|".join(c[1] for c in HEAD_COLUMNS) + "|"]
    rows += ["| " + " | ".join(cell(h) for _, _, cell in HEAD_COLUMNS) + " |" for h in summary["heads"]]
    return "\n".join(rows)


def _num(x, fmt: str = ".3f") -> str:
    return "—" if x is None or x != x else format(x, fmt)


def few_windows(summary: dict) -> list[str]:
    """A line for each detector that cannot validate any head because a split has too few windows with its targets."""
    need = summary["settings"]["min_windows"]
    out = []
    for name, d in summary["detectors"].items():
        short = [f"{d[k]['n_scored']} {k} window(s)" for k in ("discovery", "heldout") if d[k]["n_scored"] < need]
        if short:
            out.append(f"{name}: only {' and '.join(short)} have its targets, fewer than --min-windows ({need}): "
                       "it validates no head")
    return out


def _show(c: str) -> str:
    return {" ": "␠", "\n": "⏎", "|": "\\|"}.get(c, c)


def unknown_lines(texts: dict) -> list[str]:
    """What --unknown-chars did to the text, for report.md (nothing when nothing was done)."""
    u = texts.get("unknown_chars")
    if not u:
        return []
    done = "removed" if u["policy"] == "drop" else "replaced by the unknown token"
    line = (f"**Text changed:** --unknown-chars {u['policy']} {done} {u['count']:,} characters ({100 * u['share']:.1f}% of the "
            f"text): {md_code(u['characters'])}.")
    if u["foreign"]:
        line += (f" **Warning:** {100 * u['foreign_letters']:.0f}% of its letters are outside the model's alphabet; the text "
                 "is not in the model's language.")
    return [line, ""]


def timeline_lines(timeline: dict | None) -> list[str]:
    """report.md's timeline section: formation steps and phase changes of the validated heads, or the note."""
    if not timeline:
        return []
    lines = ["## Timeline: heads forming during training", ""]
    if not timeline["recorded"]:
        return lines + [f"{md_escape(timeline['note'][0].upper() + timeline['note'][1:])}.", ""]
    steps = timeline["steps"]
    lines += [f"Recorded on the probe set at {len(steps)} steps ({steps[0]}..{steps[-1]}, log-spaced and at every "
              f"evaluation). Formation step: the first recorded step from which the head's label stays at or above the "
              f"cut {timeline['cut']} at every later record (one fixed probe set: no bootstrap bound). Phase change: the "
              "largest rise between two consecutive records, with the probe-set loss over the same interval.", ""]
    if not timeline["heads"]:
        return lines + ["No validated head to follow.", ""]
    lines += ["| layer | head | label | formed at step | largest rise | between steps |", "|---:|---:|---|---:|---|---|"]
    for h in timeline["heads"]:
        p = h["phase_change"]
        rise, between = (f"{p['before']:.2f} → {p['after']:.2f}", f"{p['from_step']}–{p['to_step']}") if p else ("—", "—")
        formed = h["formed"] if h["formed"] is not None else "not formed"
        lines.append(f"| {h['layer']} | {h['head']} | {h['label']}{'' if h['primary'] else ' (also)'} | {formed} | {rise} | "
                     f"{between} |")
    # the sentences are built from numbers and detector names (analysis/runs/timeline.py): nothing to escape
    return lines + ["", *[f"- {h['sentence']}" for h in timeline["heads"] if h["primary"]], ""]


def findings_lines(summary: dict, head_map: Optional[str] = None) -> list[str]:
    """The opening: the findings paragraph, the most selective heads, the head map."""
    found = model_findings(summary)
    lines = [md_escape(found.paragraph()), ""]
    if found.heads:
        lines += ["The most selective heads:", "", *[f"- {md_escape(sentence)}" for sentence in found.heads], ""]
    if head_map:
        lines += [f"![the primary validated behaviour of every head]({head_map})", ""]
    return lines


def provenance_lines(summary: dict) -> list[str]:
    """Settings and provenance, collapsed at the end (a <details> block, which markdown viewers fold)."""
    s, t, m = summary["settings"], summary["texts"], summary["model"]
    values = {"checkpoint": md_code(summary["checkpoint"]), "language": summary["lang"],
              **{k: v for k, v in m.items()},
              **{f"{split} text": md_escape(", ".join(f"{k} {v}" for k, v in info.items()))
                 for split, info in t.items() if isinstance(info, dict)},
              **{f"setting: {k}": md_escape(", ".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in s.items()}}
    return ["<details><summary>Settings and provenance</summary>", "", "| setting | value |", "|---|---|",
            *[f"| {k} | {v} |" for k, v in values.items()], "", "</details>", ""]


def report_markdown(summary: dict, extras: Sequence[Section] = (), head_map: Optional[str] = None) -> str:
    """The whole report.md of one analysis (`summary`: the summary.json contract; `head_map`: the file of the
    behaviour map figure, shown under the findings)."""
    s, t = summary["settings"], summary["texts"]
    ind = summary["induction_test"]
    best_ind = max(((l, h) for l in range(len(ind["score"])) for h in range(len(ind["score"][0]))),
                   key=lambda lh: ind["score"][lh[0]][lh[1]])
    lines = [
        f"# Attention heads of {md_code(summary['name'])} ({summary['lang']})",
        "",
        *findings_lines(summary, head_map),
        *unknown_lines(t),
        "## Heads",
        "",
        f"{summary['model']['n_layer']} layers x {summary['model']['n_head']} heads, window {s['window']} characters; "
        f"discovery: {md_escape(t['discovery']['source'])} ({t['discovery']['n_windows']} windows), held-out: "
        f"{md_escape(t['heldout']['source'])} ({t['heldout']['n_windows']} windows). A head gets a behaviour when "
        f"the lower end of its selectivity interval is above {s['min_selectivity']} on discovery text and again on "
        f"held-out text. Selectivity = (score - control) / (1 - control): the share of the possible gain over the "
        f"detector's control that the head achieves (control: uniform causal attention for offset detectors; for word, "
        f"line and separator detectors a head with the head's own attention at every offset (structure); a class-blind "
        f"head with the head's own positional profile for what-the-key-is detectors (position); a one-character prefix "
        f"matcher for prefix matches). Interval: selectivity -+ z x bootstrap SE "
        f"({s['n_boot']} resamples of windows; alpha {s['alpha']} over {s['n_tests']} tests, {s['alpha_per_test']:.2g} "
        f"each). `induction` also needs the repeated-sequence test. Margin: the lower end minus the cut (the smaller of "
        f"the two texts), and in standard errors; borderline: the interval contains the cut. Confidence and windows "
        f"(summary.json) are measured on held-out text. A head is labelled by a mixture (`a + b`) when two or three "
        f"components of its decomposition explain it together and each holds on its own, and by its key characters "
        f"(`key 'e'`) when a class detector's excess mass sits on one to three members of the class.",
        "",
        format_head_table(summary),
        "",
        "## Detectors",
        "",
        "| detector | control | target set | windows with targets (discovery / held-out) | validated heads |",
        "|---|---|---|---|---|",
    ]
    for name, d in summary["detectors"].items():
        heads = [f"{l}.{h}" for l, row in enumerate(d["validated"]) for h, ok in enumerate(row) if ok]
        lines.append(f"| {name} | {d['control']} | {md_escape(d['description'])} | {d['discovery']['n_scored']} / "
                     f"{d['heldout']['n_scored']} | {', '.join(heads) or '—'} |")
    lines += ["", *[f"- {md_escape(line)}" for line in few_windows(summary)]]
    held = ind["heldout"]
    lines += [
        "",
        "## Induction test: repeated random sequences",
        "",
        f"Two sets (discovery, held-out) of {ind['n_windows']} random sequences of {ind['length'] // 2} letters "
        f"(drawn from {ind['letters']}), each repeated twice. On {ind['copy_sequences']} more, the loss on the first copy {ind['loss_first_copy']:.3f}, "
        f"on the second copy {ind['loss_second_copy']:.3f}, at the same positions with the same letters reordered "
        f"{ind['loss_reordered_half']:.3f}: copy drop {ind['copy_drop']:.3f} ± {ind['copy_drop_se']:.3f}. Strongest head {best_ind[0]}.{best_ind[1]}: "
        f"{ind['score'][best_ind[0]][best_ind[1]]:.3f} of its attention on the copy target (uniform: {ind['baseline']:.3f}); "
        f"its selectivity over a one-character matcher {_num(held['selectivity'][best_ind[0]][best_ind[1]])} on the held-out "
        f"set. Heads that pass on both sets: "
        + (", ".join(f"{l}.{h}" for l, row in enumerate(ind["validated"]) for h, ok in enumerate(row) if ok) or "none") + ".",
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
    dec = summary["decomposition"]
    lines += ["", "## Attention explained", "",
              f"Each head's attention rows fitted as a mixture of the detectors' target patterns and uniform attention, "
              f"weights >= 0 summing to 1; on a row where some patterns have no target, the others share it in proportion "
              f"({dec['n_windows']['discovery']} discovery windows); `unexplained` is the share of the attention mass the "
              f"mixture leaves out on {dec['n_windows']['heldout']} held-out windows (half the L1 distance between each row "
              "and its fit). The head table names the largest terms.",
              "", *timeline_lines(summary.get("timeline")), "## Character classes", "", table_markdown(), ""]
    if extras:
        lines += ["## Beyond attention weights", ""] + [line for s in extras for line in s.as_markdown()] + [""]
    return "\n".join(lines + provenance_lines(summary))


def group_markdown(cmp: GroupComparison, links: Sequence[dict] = (), findings_figure: Optional[str] = None) -> str:
    """report.md of a group comparison: replicated findings first (numbered as the panels of `findings_figure`,
    every seed a point), then the rest, then agreement."""
    A, B = cmp.names
    lines = [f"# {md_escape(A)} vs {md_escape(B)}: {len(cmp.members[0])} vs {len(cmp.members[1])} seeds", "",
             f"{md_escape(A)}: {md_escape(', '.join(cmp.members[0]))}. {md_escape(B)}: {md_escape(', '.join(cmp.members[1]))}.",
             "", *map(md_escape, cmp.notes), "",
             "A difference replicates when it has the same sign in every seed pair, the exact permutation test over "
             f"seed labels gives p <= {cmp.alpha}, and it is at least the quantity's minimum effect.", "",
             "## Replicated findings", ""]
    lines += [f"{k}. {md_escape(f)}" for k, f in enumerate(cmp.replicated, 1)] or [
        f"None: no difference between {md_escape(A)} and {md_escape(B)} replicated across seeds."]
    if findings_figure and cmp.replicated:
        lines += ["", f"![the replicated findings, every seed a point]({findings_figure})"]
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
    return "\n".join(lines + model_links(links))


def model_links(links: Sequence[dict]) -> list[str]:
    """The "Models" section of a comparison's report.md: a link to each model's own report."""
    return ["## Models", "", *[f"- {md_link(link['text'], link['href'])}" for link in links], ""] if links else []
