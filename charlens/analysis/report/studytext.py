"""report.md and report.html text of the study (script or language) and of findings across training."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from charlens.analysis.measures.attribution import CONTRASTS
from charlens.analysis.report.html import figure_entries, write_page
from charlens.analysis.report.markdown import model_links
from charlens.analysis.report.mdtext import md_escape, md_link
from charlens.analysis.runs.groups import says_nothing
from charlens.analysis.runs.stages import StageComparison
from charlens.analysis.runs.study import StudyResult


def _num(x) -> str:
    return "—" if x is None else f"{x:.3g}"


def stage_markdown(stages: StageComparison) -> list[str]:
    """The section on findings across training: when each finding holds, then every quantity per step."""
    A, B = stages.names
    lines = ["## Findings across training", "",
             f"Every quantity at each training step recorded in all models ({', '.join(f'{s:,}' for s in stages.steps)}: "
             "snapshots analysed with the same analyzer on the same windows, and the final models), through the same "
             "seed-level rule. Timing: throughout, late (from a later step to the end), early (not at the final step), "
             "intermittent, or flips (the sign changes).", "", *map(md_escape, stages.notes), ""]
    lines += [f"- {md_escape(f)}" for f in stages.findings] or [f"- No difference between {md_escape(A)} and "
                                                                f"{md_escape(B)} replicates at any recorded step."]
    lines += ["", "| quantity | " + " | ".join(f"step {s:,}" for s in stages.steps) + " | timing |",
              "|---|" + "---|" * (len(stages.steps) + 1)]
    for q in stages.quantities:
        if says_nothing(q.key, [v for group in q.values for seed in group for v in seed]):
            continue
        cells = []
        for d in q.differences:
            if d is None:
                cells.append("—")
            else:
                mark = " **✓**" if d.verdict == "replicated" else ""
                cells.append(f"{d.mean_a:.3g} vs {d.mean_b:.3g}{mark}")
        lines.append(f"| {md_escape(q.label)} | " + " | ".join(cells) + f" | {q.timing or '—'} |")
    return lines + ["", f"Cells: mean of {md_escape(A)} vs mean of {md_escape(B)}; ✓ = replicated at that step. Left out: "
                        "quantities undefined at every step, and counts of behaviours no model has.", ""]


def study_rows(study: StudyResult) -> list[dict]:
    """The attribution table: every English-vs-Hebrew quantity, its four condition means and each contrast."""
    labels = study.labels()
    rows = []
    for a in study.attributions:
        if says_nothing(a.key, [v for vals in a.values.values() for v in vals]):
            continue
        row: dict[str, object] = {"quantity": labels[a.key], "verdict": a.verdict}
        for c, vals in a.values.items():
            defined = [v for v in vals if v is not None]
            row[c] = sum(defined) / len(defined) if len(defined) == len(vals) and vals else None
        for n in CONTRASTS:
            d = a.contrasts[n]
            row[n] = "—" if d is None else f"{d.verdict}{' ✓' if a.holds(n) else ''}"
        row["null claims"] = ", ".join(a.null_claims) or "none"
        rows.append(row)
    return rows


def study_markdown(study: StudyResult, links: Sequence[dict] = ()) -> str:
    """report.md of the study: the attribution of every English-vs-Hebrew finding first, then the table of every
    quantity, the findings across training, and the links."""
    counts = ", ".join(f"{c} {len(m)}" for c, m in study.conditions.items())
    lines = [f"# English vs Hebrew: script or language? ({counts} seeds)", "",
             "Each English-vs-Hebrew finding (the seed-level rule of the group comparison) is attributed with two more "
             "conditions: English written without its vowel letters (an abjad, like unpointed Hebrew) and Hebrew "
             "with its vowel points (an alphabet, like English). A finding follows the script when it also separates "
             "en from en_novowel and he_niqqud from he, the same way; the language when it also holds between "
             "en_novowel and he and between en and he_niqqud; both when all four hold; neither otherwise. Every "
             "contrast uses the same rule (same sign in every seed pair, exact permutation p <= "
             f"{study.alpha}, minimum effect).", "", *map(md_escape, study.notes), "", "## Attributed findings", ""]
    lines += [f"- **{a.verdict}**: {md_escape(s)}" for a, s in study.findings()] or [
        "None: no English-vs-Hebrew difference replicated, so nothing is attributed."]
    rows = study_rows(study)
    cols = list(rows[0]) if rows else []
    lines += ["", "## Every quantity in the four conditions", "",
              "Condition columns: the mean over seeds; contrast columns: the rule's verdict, ✓ where it holds with the "
              "sign of the English-vs-Hebrew difference; null claims: conditions whose own seed halves differ. Left out: "
              "quantities undefined in every model, and counts of behaviours no model has.", "",
              "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(md_escape(r[c]) if isinstance(r[c], str) else _num(r[c]) for c in cols) + " |"
              for r in rows]
    lines += ["", f"The full English-vs-Hebrew comparison (within-group agreement, figures): "
              f"{md_link('en_vs_he/report.md', 'en_vs_he/report.md')}.", ""]
    if study.stages is not None:
        lines += stage_markdown(study.stages)
    return "\n".join(lines + model_links(links))


def write_study_page(study: StudyResult, figures: Sequence[dict], out_path: Path, links: Sequence[dict] = ()) -> Path:
    """report.html of the study: attributed findings, the attribution table, findings across training, figures."""
    data = {"title": "charlens: English vs Hebrew, script or language? ("
                     + ", ".join(f"{c} {len(m)}" for c, m in study.conditions.items()) + " seeds)",
            "findings": [f"{a.verdict}: {s}" for a, s in study.findings()]
            or ["No English-vs-Hebrew difference replicated, so nothing is attributed."],
            "findings_note": " ".join(study.notes) + " Script: also en vs en_novowel and he_niqqud vs he, the same way; "
                             "language: also en_novowel vs he and en vs he_niqqud; both: all four; each by the seed-level rule.",
            "links": [{"text": "English vs Hebrew: the full group comparison", "href": "en_vs_he/report.html"}, *links],
            "tables": [{"title": "Every quantity in the four conditions", "rows": study_rows(study)}]
            + ([{"title": "Findings across training", "rows": [{"finding": f} for f in study.stages.findings]}]
               if study.stages is not None else []),
            "figures": figure_entries(figures, out_path.parent)}
    return write_page(data, out_path)
