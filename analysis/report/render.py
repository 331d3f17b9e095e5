"""The one renderer: every report file of an analysis, or of a comparison, from typed results.

    write_analysis_report(summary, out_dir)      # summary.json, heads.csv, report.md, figures, report.html,
                                                 # attention_examples.npz
    write_comparison_report(comparison, [summary_a, summary_b], out_dir)
Nothing is computed here that a result does not hold; the folder is the caller's (staged) folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from analysis.report.extras import extras_sections
from analysis.report.figures.base import FigureWriter
from analysis.report.figures.sets import analysis_figures, comparison_figures
from analysis.report.files import write_examples, write_heads_csv, write_json
from analysis.report.html import write_comparison_page, write_html_report
from analysis.report.markdown import report_markdown
from analysis.runs.compare import Comparison, behaviour_rows
from analysis.runs.results import Examples, Summary


def write_analysis_report(summary: Summary, out_dir: Path | str) -> dict:
    """Every report file of one analysis into `out_dir` (which must exist); returns the summary dict."""
    out_dir = Path(out_dir)
    data = summary.to_dict()
    write_json(data, out_dir / "summary.json")
    write_heads_csv(data, out_dir / "heads.csv")
    write_examples(summary.examples, out_dir / "attention_examples.npz")
    figures = FigureWriter(out_dir)
    analysis_figures(data, summary.examples, figures)
    extras = FigureWriter(out_dir)
    sections = extras_sections(summary.extras, summary.analysis.lang, extras)
    (out_dir / "report.md").write_text(report_markdown(data, sections), encoding="utf-8")
    write_html_report(data, summary.examples, figures.entries, out_dir / "report.html",
                      extra_sections=[s.as_html_section() for s in sections])
    return data


def write_comparison_report(comparison: Comparison, summaries: Sequence[dict], examples: Sequence[Optional[Examples]],
                            out_dir: Path | str, links: Sequence[dict] = ()) -> None:
    """compare.json, the comparison figures and report.html into `out_dir`, from the comparison and the
    two summaries (the summary.json contract) with their attention examples; each model's own report is
    written by `write_analysis_report`, e.g. into a subfolder."""
    out_dir = Path(out_dir)
    write_json(comparison.to_dict(), out_dir / "compare.json")
    figures = FigureWriter(out_dir)
    comparison_figures(summaries[0], summaries[1], figures, comparison.split)
    write_comparison_page(comparison.findings, behaviour_rows(comparison), summaries, examples,
                          figures.entries, out_dir / "report.html", links)
