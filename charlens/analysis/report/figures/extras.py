"""Figures for the analyses beyond raw attention weights. Each function takes arrays (never
a model) and returns a matplotlib Figure; draw them inside `analysis.report.figures.base.style()` so
Hebrew glyphs resolve, and save them with `analysis.report.figures.base.save`."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from charlens.analysis.report.figures.attention import attention_heatmap
from charlens.analysis.report.figures.base import char_ticks, grid_map
from charlens.analysis.report.hebrew import char_label, is_rtl, snippet


def value_weighted_figure(raw: np.ndarray, weighted: np.ndarray, chars: str, layer: int, head: int) -> Figure:
    """One head on one text: raw attention beside value-weighted attention (row-normalized)."""
    fig = Figure(figsize=(12, 5.6))
    a, b = fig.subplots(1, 2)
    attention_heatmap(raw, chars, f"L{layer}H{head} raw attention weights", ax=a)
    attention_heatmap(weighted, chars, f"L{layer}H{head} value-weighted ‖α·vW_O‖ (rows sum to 1)", ax=b)
    return fig


def disagreement_figure(disagreement: np.ndarray) -> Figure:
    """Per head, how far value-weighted rows are from raw rows (total variation, 0..1)."""
    fig = Figure(figsize=(4.5, 3.6))
    ax = fig.add_subplot()
    im = grid_map(ax, np.asarray(disagreement), Normalize(0, max(0.05, float(np.nanmax(disagreement)))), "Oranges")
    ax.set_title("raw vs value-weighted attention\n(mean total-variation distance per row)")
    fig.colorbar(im, ax=ax, fraction=0.05)
    return fig


def counterfactual_figure(att_a: np.ndarray, att_b: np.ndarray, difference: np.ndarray, aligned_chars: str,
                          text_a: str, text_b: str, mean_abs_diff: np.ndarray, layer: int, head: int) -> Figure:
    """The most changed head on both texts, its difference on aligned positions, and every
    head's mean absolute difference."""
    fig = Figure(figsize=(16, 4.8))
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1, 1, 0.7]})
    attention_heatmap(att_a, text_a, f"A, L{layer}H{head}: " + snippet(text_a, 28), ax=axes[0])
    attention_heatmap(att_b, text_b, f"B, L{layer}H{head}: " + snippet(text_b, 28), ax=axes[1])
    bound = max(1e-6, float(np.abs(difference).max()))
    im = axes[2].imshow(difference, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound), interpolation="nearest")
    char_ticks(axes[2], "x", aligned_chars)
    char_ticks(axes[2], "y", aligned_chars)
    axes[2].set_title(f"A − B on the {len(aligned_chars)} aligned characters")
    fig.colorbar(im, ax=axes[2], fraction=0.04, pad=0.02)
    im = grid_map(axes[3], np.asarray(mean_abs_diff), Normalize(0, max(1e-6, float(np.nanmax(mean_abs_diff)))), "Reds",
                   fmt="{:.3f}")
    axes[3].set_title("mean |A − B| per head")
    fig.colorbar(im, ax=axes[3], fraction=0.05)
    return fig


def _shaded_text(ax, chars: str, scores: np.ndarray, label: str, per_row: int = 64) -> None:
    """Characters in boxes shaded by score, wrapped at `per_row`; right-to-left texts run from the right."""
    rtl = is_rtl(chars)
    top = max(float(np.max(scores)), 1e-12)
    rows = (len(chars) + per_row - 1) // per_row
    for i, (c, s) in enumerate(zip(chars, scores)):
        r, col = divmod(i, per_row)
        x = per_row - 1 - col if rtl else col
        ax.add_patch(Rectangle(
            (x, -r - 1), 1, 1, color=(0.86, 0.24, 0.12, float(s) / top), linewidth=0))
        ax.text(x + 0.5, -r - 0.5, char_label(c), ha="center", va="center", fontsize=8)
    ax.set_xlim(0, per_row)
    ax.set_ylim(-rows, 0)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(label, loc="right" if rtl else "left")


def importance_figure(chars: str, raw: np.ndarray, rollout: np.ndarray) -> Figure:
    """Attention received by each character: raw (all heads and layers) and through rollout."""
    per_row = min(64, len(chars))
    rows = (len(chars) + per_row - 1) // per_row
    fig = Figure(figsize=(max(6.0, per_row * 0.2), 1.2 + 2 * 0.3 * rows * 1.6))
    a, b = fig.subplots(2, 1)
    _shaded_text(a, chars, raw, "raw: mean attention received, all layers and heads", per_row)
    _shaded_text(b, chars, rollout, "rollout: what each character gives the last layer's outputs", per_row)
    return fig


def entropy_figure(samples: np.ndarray, by_position: np.ndarray) -> Figure:
    """Normalized attention entropy: its distribution per head (grouped by layer) and its mean
    by query position per layer (0 = one key, 1 = uniform over the visible keys)."""
    L, H = samples.shape[:2]
    fig = Figure(figsize=(12, 3.8))
    a, b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    data = [s[np.isfinite(s)] for s in samples.reshape(L * H, -1)]
    a.boxplot(data, showfliers=False, widths=0.6)
    a.set_xticks(range(1, L * H + 1), [f"L{l}H{h}" for l in range(L) for h in range(H)], rotation=90, fontsize=6)
    for l in range(1, L):
        a.axvline(l * H + 0.5, color="grey", linewidth=0.6)
    a.set_ylabel("normalized entropy of a row")
    a.set_title("per head (boxes: quartiles over query rows)")
    for l in range(L):
        b.plot(np.arange(1, by_position.shape[-1]), by_position[l, :, 1:].mean(axis=0), label=f"layer {l}")  # row 0: no choice
    b.set_xlabel("query position")
    b.set_ylabel("mean normalized entropy")
    b.set_ylim(0, 1.05)
    b.legend(fontsize=7)
    b.set_title("per layer, by position")
    return fig


def rollout_figure(rollout: np.ndarray, chars: str) -> Figure:
    """Attention rollout over all layers for one text (rows: outputs, columns: inputs)."""
    fig = Figure(figsize=(6.5, 6.0))
    attention_heatmap(rollout, chars, "attention rollout: " + snippet(chars, 30), ax=fig.add_subplot())
    return fig


def qk_map_figure(queries: np.ndarray, keys: np.ndarray, classes: np.ndarray, class_names: Sequence[str],
                  layer: int, head: int, spearman: float, method: str = "pca") -> Figure:
    """Queries (dots) and keys (crosses) of one head in one 2-D space, coloured by character class."""
    fig = Figure(figsize=(6.5, 5.5))
    ax = fig.add_subplot()
    cmap = colormaps["tab10"]
    for c in np.unique(classes):
        sel = classes == c
        colour = cmap(int(c) % 10)
        ax.scatter(queries[sel, 0], queries[sel, 1], s=9, color=colour, marker="o", alpha=0.6, label=f"{class_names[c]} (query)")
        ax.scatter(keys[sel, 0], keys[sel, 1], s=14, color=colour, marker="x", alpha=0.6)
    ax.set_title(f"L{layer}H{head} queries (•) and keys (×), {method.upper()}; "
                 f"Spearman(2-D distance, attention) = {spearman:.2f}")
    ax.legend(fontsize=6, markerscale=1.5, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def ablation_figure(delta: np.ndarray, validated: np.ndarray, unused: np.ndarray, mode: str = "zero") -> Figure:
    """Loss change (nats/char) when each head is ablated alone; boxed = validated behaviour,
    hatched = visible but unused."""
    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.add_subplot()
    bound = max(1e-4, float(np.nanmax(np.abs(delta))))
    im = grid_map(ax, np.asarray(delta), TwoSlopeNorm(0.0, -bound, bound), "RdBu_r", marked=np.asarray(validated),
                   fmt="{:+.3f}")
    for l, h in zip(*np.nonzero(np.asarray(unused))):
        ax.add_patch(Rectangle(
            (h - 0.5, l - 0.5), 1, 1, fill=False, hatch="///", edgecolor="grey", linewidth=0))
    ax.set_title(f"held-out loss change when a head is {mode}-ablated\n(boxed: validated, hatched: visible but unused)")
    fig.colorbar(im, ax=ax, fraction=0.05, label="Δ loss (nats/char)")
    return fig
