"""Figures of a group comparison: every seed as a point, each group's mean as a bar, so a reader sees at
once whether a difference holds in every seed or rests on one draw."""
from __future__ import annotations

import textwrap
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from charlens.analysis.runs.groups import GroupComparison, QuantityComparison

GROUP_COLOURS = ("C0", "C3")


def _strip(ax, quantities: Sequence[QuantityComparison], names: Sequence[str], labels: Sequence[str],
           star: bool = True) -> None:
    """Per quantity (x), the seeds of both groups as points and their means as short bars; a star marks
    replicated differences (unless `star` is off: a panel of replicated findings only)."""
    width = 0.36
    for k, q in enumerate(quantities):
        d = q.difference
        for g, (vals, colour) in enumerate(zip((d.values_a, d.values_b) if d else ((), ()), GROUP_COLOURS)):
            x = k + (g - 0.5) * width
            jitter = np.linspace(-0.06, 0.06, len(vals)) if len(vals) > 1 else np.zeros(len(vals))
            ax.scatter(x + jitter, vals, s=14, color=colour, alpha=0.8, zorder=3,
                       label=names[g] if k == 0 else None)
            if len(vals):
                ax.hlines(np.mean(vals), x - 0.14, x + 0.14, color=colour, linewidth=2.2, zorder=4)
        if star and d is not None and d.verdict == "replicated":
            top = max(d.values_a + d.values_b)
            ax.text(k, top, "*", ha="center", va="bottom", fontsize=11)
    ax.set_xticks(range(len(quantities)), labels, rotation=35, ha="right", fontsize=7)
    ax.grid(axis="y", alpha=0.3)


FINDINGS_PER_ROW = 4
TITLE_CHARS = 36  # a panel title's line, in characters: what fits over a 2.3-inch panel at 7 points


def panel_title(text: str) -> str:
    """A small panel's title in lines that fit over it (matplotlib's own wrap ignores the panel's width, so
    neighbouring titles overlap)."""
    return textwrap.fill(text, TITLE_CHARS)


def findings_figure(cmp: GroupComparison) -> Figure | None:
    """One panel per replicated finding, in the order of the sentences: every seed of both groups a point,
    each group's mean a bar, the panel titled with the quantity as its sentence begins; None when nothing
    replicated."""
    found = [q for q in cmp.quantities if q.verdict == "replicated" and q.difference]
    if not found:
        return None
    cols = min(FINDINGS_PER_ROW, len(found))
    rows = -(-len(found) // cols)
    fig = Figure(figsize=(2.3 * cols + 0.4, 2.5 * rows + 0.3), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for k, (ax, q) in enumerate(zip(axes, found)):
        _strip(ax, [q], list(cmp.names), [""], star=False)
        ax.set_xticks([])
        ax.set_title(panel_title(f"{k + 1}. {q.label}" + (f" ({q.unit})" if q.unit and q.unit != "x" else "")),
                     fontsize=7)
    for ax in axes[len(found):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=6, loc="best")
    fig.suptitle(f"replicated findings: every seed a point, bars the group means "
                 f"({len(cmp.members[0])} vs {len(cmp.members[1])} seeds)", fontsize=8)
    return fig


def group_figures(cmp: GroupComparison) -> dict[str, tuple[str, Figure, str]]:
    """{file name: (title, figure, caption)} for the figures that have something to show; the replicated
    findings' figure (group_findings) first."""
    names = list(cmp.names)
    out: dict[str, tuple[str, Figure, str]] = {}
    found = findings_figure(cmp)
    if found is not None:
        out["group_findings"] = ("Replicated findings, per seed", found,
                                 "One panel per replicated finding, numbered as the sentences: each point is one seed, "
                                 "bars are the group means.")
    by_kind: dict[str, list[QuantityComparison]] = {}
    for q in cmp.quantities:
        by_kind.setdefault(q.key.partition(":")[0], []).append(q)
    counts = [q for q in by_kind.get("count", []) if q.difference and any(q.difference.values_a + q.difference.values_b)]
    if counts:
        fig = Figure(figsize=(max(5.0, 0.75 * len(counts) + 2), 3.6), layout="constrained")
        ax = fig.add_subplot()
        _strip(ax, counts, names, [q.key.partition(":")[2] for q in counts])
        ax.set_ylabel("validated heads per model")
        ax.legend(fontsize=7)
        ax.set_title(f"validated heads per behaviour, every seed a point ({len(cmp.members[0])} vs {len(cmp.members[1])} "
                     "seeds; * replicated)")
        out["group_counts"] = ("Validated heads per behaviour, per seed", fig,
                               "Each point is one seed's count; bars are the group means; * marks a replicated difference.")
    scalars = [q for kind in ("validated_heads", "distance", "entropy", "induction") for q in by_kind.get(kind, [])
               if q.difference]
    if scalars:
        fig = Figure(figsize=(2.2 * len(scalars) + 1, 3.2), layout="constrained")
        axes = fig.subplots(1, len(scalars), squeeze=False)[0]
        for ax, q in zip(axes, scalars):
            _strip(ax, [q], names, [""])
            ax.set_title(panel_title(q.label), fontsize=7)
            ax.set_xticks([])
        axes[0].legend(fontsize=7)
        out["group_scalars"] = ("Head counts, distance, entropy and the induction test, per seed", fig,
                                "Each point is one seed; bars are the group means; * marks a replicated difference.")
    depths = [q for q in by_kind.get("depth", []) if sum(q.present)]
    if depths:
        fig = Figure(figsize=(max(5.0, 0.75 * len(depths) + 2), 3.4), layout="constrained")
        ax = fig.add_subplot()
        for k, q in enumerate(depths):
            for g, colour in enumerate(GROUP_COLOURS):
                vals = [layers for layers in cmp.agreement[g].behaviours[q.key.partition(":")[2]]["first_layers"]
                        if layers is not None]
                ax.scatter(np.full(len(vals), k + (g - 0.5) * 0.36), vals, s=14, color=colour,
                           label=names[g] if k == 0 else None)
        ax.set_xticks(range(len(depths)), [q.key.partition(":")[2] for q in depths], rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("first layer with the behaviour")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
        ax.set_title("where each behaviour first appears, per seed (seeds without it: no point)")
        out["group_depths"] = ("First layer of each behaviour, per seed", fig,
                               "The first layer holding a validated head of each behaviour, one point per seed that has one.")
    offsets = sorted(by_kind.get("offset", []), key=lambda q: int(q.key.partition(":")[2]))
    if offsets and all(q.difference for q in offsets):
        fig = Figure(figsize=(5.5, 3.4), layout="constrained")
        ax = fig.add_subplot()
        ks = [int(q.key.partition(":")[2]) for q in offsets]
        for g, colour in enumerate(GROUP_COLOURS):
            per_seed = np.array([(q.difference.values_a if g == 0 else q.difference.values_b) for q in offsets if q.difference])
            ax.plot(ks, per_seed, color=colour, linewidth=0.7, alpha=0.5)
            ax.plot(ks, per_seed.mean(1), color=colour, linewidth=2.2, marker="o", markersize=3, label=f"{names[g]} mean")
        ax.set_xlabel("offset i − j")
        ax.set_ylabel("mean attention (over heads)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax.set_title("offset profile: thin lines are seeds, thick lines group means")
        out["group_offsets"] = ("Offset profiles, per seed and mean", fig,
                                "Head-mean attention at each relative offset: one thin line per seed, the group mean thick.")
    return out
