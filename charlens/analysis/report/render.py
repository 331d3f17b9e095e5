"""The one renderer: every report file of an analysis, or of a comparison, from typed results.

    write_analysis_report(summary, out_dir)      # summary.json, heads.csv, report.md, figures, report.html,
                                                 # attention_examples.npz
    write_group_report(comparison, out_dir, links)   # two groups of models, seeds as the unit
    write_study_report(study, out_dir, links)         # four conditions: script or language
Nothing is computed here that a result does not hold; the folder is the caller's (staged) folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from charlens.analysis.report.circuits import circuit_sections
from charlens.analysis.report.extras import extras_sections
from charlens.analysis.report.figures.base import FigureWriter, style
from charlens.analysis.report.figures.groups import group_figures
from charlens.analysis.report.figures.sets import analysis_figures
from charlens.analysis.report.figures.study import attribution_figure, stage_figures
from charlens.analysis.report.files import write_examples, write_heads_csv, write_json
from charlens.analysis.report.html import write_group_page, write_html_report
from charlens.analysis.report.markdown import group_markdown, report_markdown
from charlens.analysis.report.studytext import stage_markdown, study_markdown, write_study_page
from charlens.analysis.runs.groups import GroupComparison
from charlens.analysis.runs.stages import StageComparison
from charlens.analysis.runs.study import StudyResult
from charlens.analysis.runs.results import Summary


def write_analysis_report(summary: Summary, out_dir: Path | str, live: Optional[dict] = None) -> dict:
    """Every report file of one analysis into `out_dir` (which must exist); returns the summary dict.
    `live`: the model for report.html's live view (`analysis.report.live_model.live_model`), or None."""
    out_dir = Path(out_dir)
    data = summary.to_dict()
    write_json(data, out_dir / "summary.json")
    write_heads_csv(data, out_dir / "heads.csv")
    write_examples(summary.examples, out_dir / "attention_examples.npz")
    figures = FigureWriter(out_dir)
    analysis_figures(data, summary.examples, figures)
    extras = FigureWriter(out_dir)
    sections = circuit_sections(data, extras) + extras_sections(summary.extras, summary.analysis.lang, extras)
    head_map = next((f["file"] for f in figures.entries if f["name"] == "behaviours"), None)
    (out_dir / "report.md").write_text(report_markdown(data, sections, head_map), encoding="utf-8")
    write_html_report(data, summary.examples, figures.entries, out_dir / "report.html",
                      extra_sections=[s.as_html_section() for s in sections], live=live,
                      snapshots=summary.snapshots)
    return data


def write_group_report(comparison: GroupComparison, out_dir: Path | str, links: Sequence[dict] = (),
                       stages: Optional[StageComparison] = None) -> None:
    """compare.json, report.md, the group figures and report.html into `out_dir`; each model's own
    report is written by `write_analysis_report` (into a subfolder, which `links` point to). With `stages`
    (analyze.py --stages), the findings across training join each file."""
    out_dir = Path(out_dir)
    write_json({**comparison.to_dict(), **({"stages": stages.to_dict()} if stages else {})}, out_dir / "compare.json")
    figures = FigureWriter(out_dir)
    with style():
        for name, (title, fig, caption) in {**group_figures(comparison), **(stage_figures(stages) if stages else {})}.items():
            figures.add(name, title, fig, caption)
    shown = next((f["file"] for f in figures.entries if f["name"] == "group_findings"), None)
    text = group_markdown(comparison, links, shown)
    if stages is not None:
        text += "\n" + "\n".join(stage_markdown(stages))
    (out_dir / "report.md").write_text(text, encoding="utf-8")
    write_group_page(comparison, figures.entries, out_dir / "report.html", links, stages)


def write_study_report(study: StudyResult, out_dir: Path | str, links: Sequence[dict] = ()) -> None:
    """study.json, report.md, the attribution and stage figures and report.html into `out_dir`, and the full
    English-vs-Hebrew comparison into `out_dir`/en_vs_he."""
    out_dir = Path(out_dir)
    (out_dir / "en_vs_he").mkdir()
    up = [{"text": link["text"], "href": f"../{link['href']}"} for link in links]
    write_group_report(study.main, out_dir / "en_vs_he", up, study.stages)
    write_json(study.to_dict(), out_dir / "study.json")
    figures = FigureWriter(out_dir)
    with style():
        for name, (title, fig, caption) in {**attribution_figure(study),
                                            **(stage_figures(study.stages) if study.stages else {})}.items():
            figures.add(name, title, fig, caption)
    (out_dir / "report.md").write_text(study_markdown(study, links), encoding="utf-8")
    write_study_page(study, figures.entries, out_dir / "report.html", links)
