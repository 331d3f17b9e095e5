"""Figures of attention on one text: a head's heatmap, all heads as small multiples, and flow graphs
(one head, or one query rolled out across layers). Characters get visible stand-ins for
whitespace; Hebrew titles are put in display order and flow graphs are mirrored for Hebrew.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from charlens.analysis.measures.flow import query_flow
from charlens.analysis.report.figures.base import char_ticks
from charlens.analysis.report.hebrew import char_label, display, is_rtl, snippet

HEATMAP_CHARS = 64  # the standard heatmaps show this many leading characters
FLOW_CHARS = 40  # the flow graphs draw the last this-many characters before the query


def attention_heatmap(attention: np.ndarray, chars: str, title: str = "", ax=None) -> Figure:
    """One head on one text: from-character (query) on y, to-character (key) on x."""
    T = len(chars)
    if attention.shape != (T, T):
        raise ValueError(f"attention must be ({T}, {T}) for {T} characters, got {attention.shape}")
    side = max(6.0, 0.13 * T + 1.2)  # room for one label per character
    fig = ax.figure if ax is not None else Figure(figsize=(side + 0.6, side))
    ax = ax if ax is not None else fig.add_subplot()
    im = ax.imshow(np.asarray(attention, dtype=np.float32), cmap="Blues", vmin=0.0, vmax=1.0,
                   interpolation="nearest")
    char_ticks(ax, "x", chars)
    char_ticks(ax, "y", chars)
    ax.set_xlabel("attends to (key), text order →")
    ax.set_ylabel("from (query)")
    ax.set_title(display(title or snippet(chars)))
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="attention weight")
    return fig

def heads_grid(attention: np.ndarray, chars: str, names: Optional[Sequence[str]] = None,
               title: str = "") -> Figure:
    """All heads on one text as n_layer × n_head small multiples; `names` (one per
    head, layer-major) are added to the panel titles."""
    L, H, T, _ = attention.shape
    fig = Figure(figsize=(1.9 * H + 0.6, 1.9 * L + 0.6), layout="constrained")
    axes = fig.subplots(L, H, squeeze=False)
    for l in range(L):
        for h in range(H):
            ax = axes[l, h]
            ax.imshow(np.asarray(attention[l, h], dtype=np.float32), cmap="Blues", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            name = names[l * H + h] if names else ""
            ax.set_title(f"L{l}H{h}" + (f"\n{name}" if name and name != "none" else ""), fontsize=7)
    fig.suptitle(display(title or f"all heads on: {snippet(chars)}"))
    return fig

def _flow_axes(ax, T: int, levels: int, rtl: bool):
    x = (T - 1 - np.arange(T)) if rtl else np.arange(T)
    ax.set_xlim(-1, T)
    ax.set_ylim(-0.6, levels - 0.4)
    ax.set_xticks([])
    return x

def _draw_edges(ax, x, y_from, y_to, weights: np.ndarray, colour: str, threshold: float = 0.01):
    """Lines from every query position (at height y_from) to the keys (y_to), alpha and
    width weighted by the attention in `weights` (T, T)."""
    i, j = np.nonzero(weights > threshold)
    if not len(i):
        return
    w = weights[i, j]
    segments = np.stack([np.stack([x[i], np.full(len(i), y_from)], 1), np.stack([x[j], np.full(len(j), y_to)], 1)], 1)
    colours = np.tile(np.array(colormaps["Greys"](0.0)), (len(w), 1))
    colours[:, :3] = np.array(colormaps[colour](0.8))[:3]
    colours[:, 3] = np.clip(w / max(w.max(), 1e-9), 0.08, 1.0)
    ax.add_collection(LineCollection(list(segments), colors=colours, linewidths=0.4 + 2.6 * w / max(w.max(), 1e-9)))

def _draw_chars(ax, x, y, chars: str, weights: Optional[np.ndarray] = None):
    for k, c in enumerate(chars):
        shade = 0.0 if weights is None else float(weights[k])
        ax.text(x[k], y, char_label(c), ha="center", va="center", fontsize=7,
                bbox=dict(boxstyle="round,pad=0.15", linewidth=0,
                          facecolor=colormaps["Oranges"](min(1.0, shade)) if weights is not None else "white"))

def flow_graph(attention: np.ndarray, chars: str, layer: int, head: int, query: Optional[int] = None,
               title: str = "") -> Figure:
    """One head as a graph: characters as nodes (queries below, keys above), edges
    weighted by attention. With `query`, only that position's edges are drawn."""
    T = len(chars)
    start = max(0, (T if query is None else query + 1) - FLOW_CHARS)
    end = T if query is None else query + 1
    part = chars[start:end]
    A = np.asarray(attention[layer, head], dtype=float)[start:end, start:end]
    if query is not None:
        A = np.where(np.arange(len(part))[:, None] == len(part) - 1, A, 0.0)
    fig = Figure(figsize=(0.22 * len(part) + 1.0, 2.6))
    ax = fig.add_subplot()
    rtl = is_rtl(part)
    x = _flow_axes(ax, len(part), 2, rtl)
    _draw_edges(ax, x, 0, 1, A, "Blues")
    _draw_chars(ax, x, 0, part)
    _draw_chars(ax, x, 1, part, A.sum(0) / max(A.sum(0).max(), 1e-9))
    ax.set_yticks([0, 1], ["from", "to"])
    ax.set_frame_on(False)
    ax.set_title(display(title) if title else f"L{layer}H{head}: attention as a graph"
                 + (" (right to left)" if rtl else ""))
    return fig

def rollout_graph(attention: np.ndarray, chars: str, query: Optional[int] = None, title: str = "") -> Figure:
    """Attention flow of one query (default: the last character) rolled out across
    layers: one row of characters per layer, edges carry the query's mass down through
    each layer's head-averaged attention plus the residual (0.5·I + 0.5·A); the node
    shading of the bottom row is the query's attention rollout over the input."""
    L = attention.shape[0]
    query = len(chars) - 1 if query is None else query
    start = max(0, query + 1 - FLOW_CHARS)
    A = np.asarray(attention, dtype=float)[:, :, start:query + 1, start:query + 1]
    A = A / A.sum(-1, keepdims=True)  # rows renormalized after cropping the far past
    part = chars[start:query + 1]
    nodes, edges = query_flow(A, len(part) - 1)
    fig = Figure(figsize=(0.22 * len(part) + 1.2, 0.85 * (L + 1) + 0.8))
    ax = fig.add_subplot()
    rtl = is_rtl(part)
    x = _flow_axes(ax, len(part), L + 1, rtl)
    for l in range(L):
        _draw_edges(ax, x, l + 1, l, edges[l], "Purples", threshold=0.005)
    for level in range(L + 1):
        _draw_chars(ax, x, level, part, nodes[level] / max(nodes[level].max(), 1e-9))
    ax.set_yticks(range(L + 1), ["input"] + [f"after L{l}" for l in range(L)])
    ax.set_frame_on(False)
    ax.set_title(display(title) if title else
                 f"attention flow of the last character {char_label(part[-1])!r} rolled out across layers")
    return fig
