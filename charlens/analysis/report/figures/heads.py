"""Figures of what the heads do, from summary dicts (the analysis contract): the behaviour of every
head, detector score maps, offset profiles, head similarity and class preference.
Several summaries (a comparison) are drawn side by side or overlaid.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from scipy.cluster.hierarchy import dendrogram

from charlens.analysis.measures.similarity import cluster_heads
from charlens.analysis.report.figures.base import grid_map


def behaviour_summary(summary: dict) -> Figure:
    """Every head's primary behaviour (colour) with its confidence (text and opacity)."""
    L, H = summary["model"]["n_layer"], summary["model"]["n_head"]
    detectors = list(summary["detectors"])
    palette = colormaps["tab20"]
    colour = {d: palette(i % 20) for i, d in enumerate(detectors)}
    fig = Figure(figsize=(1.45 * H + 2.6, 0.85 * L + 1.0), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(-0.5, H - 0.5)
    ax.set_ylim(L - 0.5, -0.5)
    ax.set_xticks(range(H), [f"head {h}" for h in range(H)])
    ax.set_yticks(range(L), [f"layer {l}" for l in range(L)])
    used = {}
    for head in summary["heads"]:
        l, h, b = head["layer"], head["head"], head.get("behaviour", "none")
        conf = float(head.get("confidence") or 0.0)
        if b in colour:
            ax.add_patch(Rectangle((h - 0.48, l - 0.48), 0.96, 0.96, color=colour[b], alpha=0.35 + 0.65 * conf))
            used[b] = colour[b]
            others = [x for x in head.get("behaviours", []) if x != b]
            text = f"{b}\n{conf:.0%}" + (f"\n+{len(others)} more" if others else "")
        else:
            ax.add_patch(Rectangle((h - 0.48, l - 0.48), 0.96, 0.96, color="#eeeeee"))
            text = "no validated\nbehaviour"
        ax.text(h, l, text, ha="center", va="center", fontsize=6.5)
    if used:
        ax.legend(handles=[Rectangle((0, 0), 1, 1, color=c) for c in used.values()], labels=list(used),
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    ax.set_title(f"{summary.get('name', '')}: primary behaviour of each head (confidence = share of windows)")
    return fig

def detector_maps(summaries: Sequence[dict], split: str = "heldout") -> Figure:
    """One layers × heads map per detector (and per summary, side by side): the selectivity,
    (score - control) / (1 - control), on one scale for every detector; validated heads are boxed."""
    names = [s.get("name", f"#{i}") for i, s in enumerate(summaries)]
    detectors = list(dict.fromkeys(d for s in summaries for d in s["detectors"]))
    per_group = len(summaries)
    groups_per_row = max(1, 4 // per_group)
    ncols = groups_per_row * per_group
    nrows = math.ceil(len(detectors) / groups_per_row)
    L_max = max(s["model"]["n_layer"] for s in summaries)
    H_max = max(s["model"]["n_head"] for s in summaries)
    cell = 0.32
    fig = Figure(figsize=(ncols * (cell * H_max + 0.7) + 1.0, nrows * (cell * L_max + 0.75) + 0.6),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-1.0, vmax=1.0)  # selectivity is at most 1 (all mass on the targets)
    im = None
    for ax in axes.flat:
        ax.axis("off")
    for k, det in enumerate(detectors):
        for i, s in enumerate(summaries):
            ax = axes[k // groups_per_row, (k % groups_per_row) * per_group + i]
            if det not in s["detectors"]:
                continue
            ax.axis("on")
            d = s["detectors"][det]
            g = np.clip(np.asarray(d[split]["selectivity"], dtype=float), -1.0, 1.0)
            im = grid_map(ax, g, norm, "RdBu_r", np.asarray(d["validated"], dtype=bool), "{:+.2f}")
            ax.set_title(det if per_group == 1 else f"{det} · {names[i]}", fontsize=7)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.5, label=f"{split} selectivity over the control (boxed: validated)")
    fig.suptitle(f"detector selectivity ({split} text)")
    return fig

def offset_profiles(profiles: dict[str, tuple[Sequence[int], np.ndarray]], title: str = "") -> Figure:
    """Mean attention by relative offset (query − key), one panel per head; several
    profiles ({name: (offsets, L×H×K)}) are overlaid in each panel."""
    shapes = {np.asarray(p).shape[:2] for _, p in profiles.values()}
    L = max(s[0] for s in shapes)
    H = max(s[1] for s in shapes)
    fig = Figure(figsize=(1.8 * H + 0.5, 1.35 * L + 0.8), layout="constrained")
    axes = fig.subplots(L, H, squeeze=False, sharex=True, sharey=True)
    for k, (name, (offsets, prof)) in enumerate(profiles.items()):
        prof = np.asarray(prof, dtype=float)
        for l in range(prof.shape[0]):
            for h in range(prof.shape[1]):
                axes[l, h].plot(offsets, prof[l, h], marker="o", markersize=2.5, linewidth=1.2,
                                label=name, color=f"C{k}")
    for l in range(L):
        for h in range(H):
            axes[l, h].set_title(f"L{l}H{h}", fontsize=7)
            axes[l, h].grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("offset i − j")
    for ax in axes[:, 0]:
        ax.set_ylabel("attention")
    if len(profiles) > 1:
        axes[0, -1].legend(fontsize=7)
    fig.suptitle(title or "mean attention by relative offset")
    return fig

def similarity_figure(distances: np.ndarray, labels: Sequence[str], title: str = "") -> Figure:
    """Head × head Jensen–Shannon distance matrix in dendrogram order, dendrogram on top."""
    Z = cluster_heads(distances)
    K = len(labels)
    fig = Figure(figsize=(0.32 * K + 3.2, 0.32 * K + 3.0))
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 4], width_ratios=[20, 1], hspace=0.02, wspace=0.03)
    ax_d = fig.add_subplot(grid[0, 0])
    tree = dendrogram(Z, ax=ax_d, no_labels=True, color_threshold=0, above_threshold_color="#555555")
    ax_d.axis("off")
    order = tree["leaves"]
    ax = fig.add_subplot(grid[1, 0])
    im = ax.imshow(distances[np.ix_(order, order)], cmap="viridis_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(K), [labels[i] for i in order], rotation=90, fontsize=6)
    ax.set_yticks(range(K), [labels[i] for i in order], fontsize=6)
    fig.colorbar(im, cax=fig.add_subplot(grid[1, 1]), label="Jensen–Shannon distance")
    ax_d.set_title(title or "head similarity (mean JS distance over the same query rows)")
    return fig

def class_preference(summaries: Sequence[dict]) -> Figure:
    """For each summary, in its own language's character classes: log2 of the
    class-to-class attention over the uniform base rate, for the most class-selective
    head (`class_attention.most_selective`: largest mean total-variation distance from the
    base rate). Classes that never occur are left out; colours saturate at 16× either way,
    cells give the ratio."""
    fig = Figure(figsize=(4.4 * len(summaries), 4.0), layout="constrained")
    axes = fig.subplots(1, len(summaries), squeeze=False)[0]
    for ax, s in zip(axes, summaries):
        best = s["class_attention"]["most_selective"]
        head, ratio = best["head"], np.asarray(best["log2_ratio"], dtype=float)
        base = np.asarray(s["class_attention"]["base_rate"], dtype=float)
        present = np.nonzero((base.sum(1) > 0) & (base.sum(0) > 0))[0]
        classes = [s["class_attention"]["classes"][i] for i in present]
        ratio = ratio[np.ix_(present, present)]
        im = ax.imshow(np.clip(ratio, -4, 4), cmap="PuOr_r", norm=TwoSlopeNorm(0.0, -4, 4), interpolation="nearest")
        for q in range(len(classes)):
            for k in range(len(classes)):
                if np.isfinite(ratio[q, k]):
                    ax.text(k, q, f"×{2 ** ratio[q, k]:.2g}", ha="center", va="center", fontsize=6,
                            color="white" if abs(ratio[q, k]) > 2.5 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=6.5)
        ax.set_yticks(range(len(classes)), classes, fontsize=6.5)
        ax.set_xlabel("key class")
        ax.set_ylabel("query class")
        ax.set_title(f"{s.get('name', '')}: most class-selective head L{head[0]}H{head[1]}", fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.7, extend="both", label="log2(attention / base rate)")
    return fig
