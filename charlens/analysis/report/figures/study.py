"""Figures of the study: each quantity over training (small multiples, every seed a line) and the
four-condition attribution of each English-vs-Hebrew finding (every seed a point)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from charlens.analysis.measures.attribution import CONDITIONS
from charlens.analysis.report.figures.groups import GROUP_COLOURS, panel_title
from charlens.analysis.runs.stages import StageComparison, StageQuantity
from charlens.analysis.runs.study import StudyResult

MAX_PANELS = 48  # beyond this many quantities a figure names the ones left out
COLUMNS = 4


def _panels(n: int, width: float = 2.6, height: float = 2.0) -> tuple[Figure, list]:
    rows = max(1, math.ceil(n / COLUMNS))
    fig = Figure(figsize=(width * min(n, COLUMNS) + 0.6, height * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, min(n, COLUMNS), squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _stage_panel(ax, q: StageQuantity, names: Sequence[str]) -> None:
    """One quantity: every seed of both groups a line over the steps, replicated steps marked on the x axis."""
    steps = np.array(q.steps, dtype=float)
    for g, colour in enumerate(GROUP_COLOURS):
        for k, seed in enumerate(q.values[g]):
            ys = np.array([np.nan if v is None else v for v in seed], dtype=float)
            ax.plot(steps, ys, color=colour, lw=0.9, alpha=0.75, marker="o", ms=2, label=names[g] if k == 0 else None)
    held = [s for s, _ in q.held]
    if held:
        ax.scatter(held, np.full(len(held), 0.02), transform=ax.get_xaxis_transform(), marker="*", s=40,
                   color="black", zorder=5, clip_on=False, label="replicated")
    if len(steps) and steps.min() > 0 and steps.max() / steps.min() >= 20:
        ax.set_xscale("log")
    ax.set_title(f"{panel_title(q.label)}\n({q.timing or 'never'})", fontsize=6.5)
    ax.tick_params(labelsize=6)
    ax.grid(alpha=0.3)


def stage_figures(stages: StageComparison) -> dict[str, tuple[str, Figure, str]]:
    """stages_findings (every quantity that holds at some step) and stages_all (every quantity), when two or more
    steps are recorded."""
    if len(stages.steps) < 2:
        return {}
    names = list(stages.names)
    found = [q for q in stages.quantities if q.timing is not None]
    everything = [q for q in stages.quantities if sum(d is not None for d in q.differences) >= 2]
    out: dict[str, tuple[str, Figure, str]] = {}
    for name, chosen, title in (("stages_findings", found, "Findings across training"),
                                ("stages_all", everything, "Every quantity across training")):
        if not chosen:
            continue
        shown, left = chosen[:MAX_PANELS], chosen[MAX_PANELS:]
        fig, axes = _panels(len(shown))
        for ax, q in zip(axes, shown):
            _stage_panel(ax, q, names)
        axes[0].legend(fontsize=6)
        fig.suptitle(f"{title}: {names[0]} vs {names[1]}, every seed a line; * = replicated at that step", fontsize=8)
        caption = ("Each panel is one quantity of the group comparison at every recorded training step (snapshots "
                   "analysed like the final model); one line per seed; a star on the axis marks the steps where the "
                   "difference replicates by the seed-level rule. The panel title says when it holds.")
        if left:
            caption += f" Left out for space: {', '.join(q.key for q in left)}."
        out[name] = (title, fig, caption)
    return out


def attribution_figure(study: StudyResult) -> dict[str, tuple[str, Figure, str]]:
    """One panel per English-vs-Hebrew finding: x = script (alphabet, abjad), a line per language through the
    condition means, every seed a point. Parallel sloped lines = script; flat separated lines = language."""
    findings = study.findings()
    if not findings:
        return {}
    labels = study.labels()
    fig, axes = _panels(len(findings), width=2.8, height=2.3)
    for ax, (a, _) in zip(axes, findings):
        for g, (lang, colour) in enumerate(zip(("en", "he"), GROUP_COLOURS)):
            xs, means = [], []
            for x, script in enumerate(("alphabet", "abjad")):
                cond = next(c for c, role in CONDITIONS.items() if role == (lang, script))
                vals = [v for v in a.values[cond] if v is not None]
                jitter = np.linspace(-0.05, 0.05, len(vals)) if len(vals) > 1 else np.zeros(len(vals))
                ax.scatter(x + (g - 0.5) * 0.12 + jitter, vals, s=12, color=colour, alpha=0.8, zorder=3)
                if vals:
                    xs.append(x + (g - 0.5) * 0.12)
                    means.append(float(np.mean(vals)))
                ax.annotate(cond, (x + (g - 0.5) * 0.12, means[-1] if vals else 0), fontsize=5.5,
                            xytext=(4, 0), textcoords="offset points", color=colour)
            ax.plot(xs, means, color=colour, lw=1.8, label="English" if lang == "en" else "Hebrew")
        ax.set_xticks([0, 1], ["vowels written", "abjad"], fontsize=7)
        ax.set_xlim(-0.5, 1.7)
        ax.set_title(f"{panel_title(labels[a.key])}\n→ {a.verdict}", fontsize=6.5)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.suptitle("Script or language: each English-vs-Hebrew finding in the four conditions (every seed a point)",
                 fontsize=8)
    caption = ("Lines join the condition means of each language across the two scripts. A script effect slopes both "
               "lines the same way; a language effect keeps them apart at both scripts; the verdict is the seed-level "
               "rule's (study table).")
    return {"study_attribution": ("Script or language, per finding", fig, caption)}
