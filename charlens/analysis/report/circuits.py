"""Report sections of the weight-level circuit scores, of who copies in context, and of the synthetic
induction task: figures, a markdown block and an HTML paragraph each, from the summary's `circuits`,
`copying` and `task` entries (nothing is computed here that the summary does not hold)."""
from __future__ import annotations

import html

from charlens.analysis.report.extras import Section
from charlens.analysis.report.figures import circuits as cf
from charlens.analysis.report.figures.base import FigureWriter, style

PAIR_NAMES = {"k_composition": "K-composition", "q_composition": "Q-composition", "v_composition": "V-composition",
              "qk_match": "QK match"}


def _num(x, fmt: str = ".3f") -> str:
    return "—" if x is None else format(x, fmt)


def circuit_sections(summary: dict, out: FigureWriter) -> list[Section]:
    """The sections present in `summary`, figures saved through `out`."""
    sections = []
    with style():
        if "task" in summary:
            sections.append(_task(summary["task"]))
        if "circuits" in summary:
            sections.append(_circuits(summary["circuits"], out))
        if "formation" in summary:
            sections.append(_formation(summary["formation"], out))
        if "copying" in summary:
            sections.append(_copying(summary, out))
    return sections


def _formation(f: dict, out: FigureWriter) -> Section:
    title = "How the induction circuit formed"
    intro = ("From the timeline the run recorded. Formation step: the first record from which the head's induction "
             "criterion (prefix-match and repeated-sequence selectivity at or above the cut) holds at every later record; "
             "loss drop step: the first record at which the second-copy loss of the repeated sequences has fallen half-way "
             "from its highest value to its final one.")
    fig = out.add("formation", title, cf.formation_figure(f), "The induction head, the head it reads, and the loss, over training.")
    return Section(title, [fig], html=f"<p>{html.escape(f['sentence'])}</p><p>{html.escape(intro)}</p>",
                   markdown=[f["sentence"], "", intro])


def _task(t: dict) -> Section:
    line = (f"On the task's {t['n_sequences']} held-out sequences ({t['letters']} letters, a {t['segment']}-letter segment "
            f"copied to a random later position): loss {t['loss_second_copy']:.3f} nats and accuracy "
            f"{t['accuracy_second_copy']:.3f} on the second copy's predictable letters, {t['loss_other']:.3f} and "
            f"{t['accuracy_other']:.3f} elsewhere (chance {1 / t['letters']:.3f}).")
    return Section("The synthetic induction task", html=f"<p>{html.escape(line)}</p>", markdown=[line])


def _circuits(c: dict, out: FigureWriter) -> Section:
    title = "Circuits in the weights"
    base = c["baseline"]
    rows = ["| score | from | to | value | excess | random mean | random 99% | stands out |", "|---|---|---|---:|---:|---:|---:|---|"]
    for key in ("k_composition", "qk_match", "q_composition", "v_composition"):
        for p in c["strongest"][key][:3]:
            rows.append(f"| {PAIR_NAMES[key]} | L{p['from'][0]}H{p['from'][1]} | L{p['to'][0]}H{p['to'][1]} | "
                        f"{_num(p['score'])} | {_num(p['excess'], '+.3f')} | {base[key]['mean']:.3f} | "
                        f"{base[key]['quantile']:.3f} | {'**yes**' if p['stands_out'] else 'no'} |")
    intro = ("Read off the weights alone (LayerNorm scales folded in, reading and writing weights centred; no text). "
             "Composition: how much of an earlier head's output a later head's queries (Q), keys (K) or values (V) read "
             "(Frobenius-norm scores of Elhage et al. 2021, as TransformerLens computes them). QK match: the share of "
             "characters a later head, reading a character, scores highest where an earlier head moved that same "
             "character. Excess = (value - random mean) / (1 - random mean) over Gaussian heads with the model's own "
             f"embeddings; a value stands out above the random heads' {100 * c['baseline_quantile']:.0f}% quantile.")
    fig = out.add("circuits", title, cf.circuits_figure(c),
                  "Pair scores (earlier heads x later heads) and per-head scores; boxed: above the random heads' quantile.")
    return Section(title, [fig], html=f"<p>{html.escape(intro)}</p>", markdown=[intro, "", *rows, ""])


def _copying(summary: dict, out: FigureWriter) -> Section:
    title = "Who copies in context"
    c = summary["copying"]
    repeated = summary.get("induction_test", {})
    heads = {(h["layer"], h["head"]): h for h in summary["heads"]}
    lines = [c["sentence"], "",
             f"On {c['n_sequences']} random letter sequences of {c['length'] // 2} written twice; a head's share (interval: "
             f"-+ {c['z']:.2f} bootstrap standard errors over the sequences): how much of the copy drop (the loss on the same letters reordered at the second copy's positions minus the loss on the copy) disappears when the head's output is replaced by its "
             "mean over held-out text (mean) or by zero. Beside it, the head's prefix-matching selectivity on repeated "
             "sequences (held-out set; its lower bound must clear the cut to validate), its label and circuit scores.", "",
             "| layer | head | label | share (mean) [interval] | share (zero) | repeated-sequence selectivity [bound] | "
             "OV copying | K-composition from |", "|---:|---:|---|---:|---:|---:|---:|---|"]
    share = c["share"]["mean"]
    order = sorted(heads, key=lambda lh: -(share[lh[0]][lh[1]] if share[lh[0]][lh[1]] is not None else -1e9))
    held = repeated.get("heldout", {})
    for l, h in order[:8] if c["copies"] else ():  # shares of a drop indistinguishable from none are noise
        row = heads[(l, h)]
        sel = held.get("selectivity", [[None]])[l][h] if held else None
        ci = held.get("selectivity_ci", [[[None, None]]])[l][h][0] if held else None
        lo, hi = c["share_ci"][l][h]
        lines.append(f"| {l} | {h} | {row['behaviour']} | {_num(share[l][h], '.1%')} [{_num(lo, '.0%')}, {_num(hi, '.0%')}] | "
                     f"{_num(c['share']['zero'][l][h], '.1%')} | {_num(sel)} [{_num(ci)}] | {_num(row.get('ov_copying'))} | "
                     f"{row.get('k_composition_from') or '—'} {_num(row.get('k_composition'))} |")
    if c["pairs"]:
        lines += ["", "| pair | share together [interval] | interaction |", "|---|---:|---:|"]
        for p in sorted(c["pairs"], key=lambda p: -(p["share"] or 0.0))[:6]:
            (a, b) = p["heads"]
            lines.append(f"| L{a[0]}H{a[1]} + L{b[0]}H{b[1]} | {_num(p['share'], '.1%')} [{_num(p['ci'][0], '.0%')}, "
                         f"{_num(p['ci'][1], '.0%')}] | {_num(p['interaction'], '+.1%')} |")
    fig = out.add("copying", title, cf.copying_figure(c), "Share of the in-context copy drop each head (and pair) carries.")
    return Section(title, [fig], html=f"<p>{html.escape(c['sentence'])}</p>", markdown=[*lines, ""])
