"""Figures of an analysis: they take data in (attention arrays, characters, summary
dicts following the analysis contract), never a model, so they draw any source.

Every function returns a matplotlib `Figure` built without pyplot (no global state,
no display needed); `write_figures` saves the standard set for one analysis.
Characters on axes get visible stand-ins for whitespace, Hebrew titles are put in
display order, and the font chain has Hebrew glyphs (see `analysis.report.hebrew`).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.collections import LineCollection
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from scipy.cluster.hierarchy import dendrogram

from analysis.measures.flow import query_flow
from analysis.report.hebrew import char_label, display, font_families, is_rtl, snippet
from analysis.measures.similarity import cluster_heads, js_distance_matrix

MAX_LABELLED_CHARS = 64  # above this, axes label every k-th character
HEATMAP_CHARS = 64  # write_figures draws heatmaps of this many leading characters
FLOW_CHARS = 40  # the flow graphs draw the last this-many characters before the query


@contextmanager
def style() -> Iterator[None]:
    """Fonts with Hebrew glyphs and compact sizes for every figure drawn inside."""
    with rc_context({"font.family": font_families() or ["sans-serif"], "font.size": 8,
                     "axes.titlesize": 9, "figure.dpi": 110, "savefig.bbox": "tight"}):
        yield


def char_ticks(ax, axis: str, chars: str) -> None:
    """Label the x or y axis with the characters (visible stand-ins for whitespace), every
    k-th one when there are more than MAX_LABELLED_CHARS."""
    step = max(1, math.ceil(len(chars) / MAX_LABELLED_CHARS))
    ticks = np.arange(0, len(chars), step)
    labels = [char_label(chars[i]) for i in ticks]
    if axis == "x":
        ax.set_xticks(ticks, labels, fontsize=7)
    else:
        ax.set_yticks(ticks, labels, fontsize=7)


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


def grid_map(ax, values: np.ndarray, norm, cmap: str, marked: Optional[np.ndarray] = None,
              fmt: str = "{:.2f}"):
    """A layers × heads map of `values` (L, H) on `ax`, each cell's value written in it when
    there are at most 64 heads, `marked` heads boxed; returns the image for a colorbar."""
    L, H = values.shape
    im = ax.imshow(values, cmap=cmap, norm=norm, interpolation="nearest")
    ax.set_xticks(range(H), [f"H{h}" for h in range(H)], fontsize=6)
    ax.set_yticks(range(L), [f"L{l}" for l in range(L)], fontsize=6)
    if L * H <= 64:
        strong = np.abs(values) > 0.6 * max(abs(norm.vmin), abs(norm.vmax))
        for l in range(L):
            for h in range(H):
                ax.text(h, l, fmt.format(values[l, h]), ha="center", va="center", fontsize=5.5,
                        color="white" if strong[l, h] else "black")
    if marked is not None:
        for l, h in zip(*np.nonzero(marked)):
            ax.add_patch(Rectangle((h - 0.5, l - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.6))
    return im


def detector_maps(summaries: Sequence[dict], split: str = "heldout") -> Figure:
    """One layers × heads map per detector (and per summary, side by side): score minus
    its uniform-attention baseline; validated heads are boxed."""
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
    lifts = [np.asarray(s["detectors"][d][split]["score"]) - np.asarray(s["detectors"][d][split]["baseline"])
             for s in summaries for d in s["detectors"]]
    vmax = max(0.05, max(float(np.nanmax(np.abs(x))) for x in lifts)) if lifts else 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)
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
            lift = np.asarray(d[split]["score"], dtype=float) - np.asarray(d[split]["baseline"], dtype=float)
            im = grid_map(ax, lift, norm, "RdBu_r", np.asarray(d["validated"], dtype=bool), "{:+.2f}")
            ax.set_title(det if per_group == 1 else f"{det} · {names[i]}", fontsize=7)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.5, label=f"{split} score − uniform baseline (boxed: validated)")
    fig.suptitle(f"detector scores above baseline ({split} text)")
    return fig


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
    ax.add_collection(LineCollection(segments, colors=colours, linewidths=0.4 + 2.6 * w / max(w.max(), 1e-9)))


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


def class_preference(summaries: Sequence[dict]) -> Figure:
    """For each summary, in its own language's character classes: log2 of the
    class-to-class attention over the uniform base rate, for the most class-selective
    head (largest mean total-variation distance from the base rate). Classes that never
    occur are left out; colours saturate at 16× either way, cells give the ratio."""
    fig = Figure(figsize=(4.4 * len(summaries), 4.0), layout="constrained")
    axes = fig.subplots(1, len(summaries), squeeze=False)[0]
    for ax, s in zip(axes, summaries):
        head, ratio = most_class_selective(s)
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


def most_class_selective(summary: dict) -> tuple[tuple[int, int], np.ndarray]:
    """The head whose class-to-class attention departs most from the base rate, and its
    log2 ratio matrix (C, C) (NaN where the base rate is 0)."""
    ca = summary["class_attention"]
    att = np.asarray(ca["discovery"], dtype=float)  # (L, H, C, C)
    base = np.asarray(ca["base_rate"], dtype=float)  # (C, C)
    tv = 0.5 * np.nansum(np.abs(att - base), axis=-1).mean(-1)  # (L, H)
    l, h = np.unravel_index(np.nanargmax(tv), tv.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log2(np.where(base > 0, (att[l, h] + 1e-4) / (base + 1e-4), np.nan))
    return (int(l), int(h)), ratio


def validated_counts(summaries: Sequence[dict]) -> Figure:
    """For every behaviour, how many validated heads each summary has (bars), and in
    which layers (annotation)."""
    every = list(dict.fromkeys(d for s in summaries for d in s["detectors"]))
    detectors = [d for d in every if any(np.any(s["detectors"][d]["validated"]) for s in summaries if d in s["detectors"])]
    none = [d for d in every if d not in detectors]
    fig = Figure(figsize=(7.5, 0.3 * max(1, len(detectors)) * len(summaries) + 1.4), layout="constrained")
    ax = fig.add_subplot()
    height = 0.8 / len(summaries)
    for k, s in enumerate(summaries):
        counts, notes = [], []
        for d in detectors:
            v = np.asarray(s["detectors"][d]["validated"], dtype=bool) if d in s["detectors"] else np.zeros((0, 0), bool)
            layers = sorted({int(l) for l in np.nonzero(v)[0]})
            counts.append(int(v.sum()))
            notes.append(("layers " + ",".join(map(str, layers))) if layers else "")
        y = np.arange(len(detectors)) + k * height
        ax.barh(y, counts, height=height, color=f"C{k}", label=s.get("name", f"#{k}"))
        for yy, c, note in zip(y, counts, notes):
            if note:
                ax.text(c + 0.05, yy, note, va="center", fontsize=6)
    ax.set_xlim(0, 1.3 * max(ax.get_xlim()[1], 1))  # room for the layer notes
    ax.set_yticks(np.arange(len(detectors)) + 0.4 - height / 2, detectors)
    ax.invert_yaxis()
    ax.set_xlabel("validated heads")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7)
    ax.set_title("validated heads per behaviour")
    if none:
        fig.supxlabel("no validated head in any model: " + ", ".join(none), fontsize=6.5, wrap=True)
    return fig


def head_names(summary: dict) -> list[str]:
    """Primary behaviour of every head, layer-major (for panel and axis labels)."""
    L, H = summary["model"]["n_layer"], summary["model"]["n_head"]
    names = ["none"] * (L * H)
    for head in summary["heads"]:
        names[head["layer"] * H + head["head"]] = head.get("behaviour", "none")
    return names


def save(fig: Figure, path: Path, svg: bool = False) -> list[Path]:
    """Write the figure as PNG (and SVG when asked); returns the files written."""
    fig.savefig(path.with_suffix(".png"))
    written = [path.with_suffix(".png")]
    if svg:
        fig.savefig(path.with_suffix(".svg"))
        written.append(path.with_suffix(".svg"))
    return written


def write_figures(summary: dict, examples: Optional[dict], out_dir: Path | str) -> list[dict]:
    """Draw the standard figures of one analysis into `out_dir` (which must exist).
    `examples` is the content of attention_examples.npz (or None). Returns one entry per
    figure: {"name", "title", "file" (PNG path relative to out_dir), "caption"}."""
    out_dir = Path(out_dir)
    made: list[dict] = []

    def add(name: str, title: str, fig: Figure, caption: str, svg: bool = False) -> None:
        save(fig, out_dir / name, svg)
        made.append({"name": name, "title": title, "file": f"{name}.png", "caption": caption})

    names = head_names(summary)
    with style():
        add("behaviours", "Head behaviour summary", behaviour_summary(summary),
            "Primary validated behaviour of every head; opacity and percentage give its confidence "
            "(share of windows on which the behaviour holds).")
        split = "heldout" if all("heldout" in d for d in summary["detectors"].values()) else "discovery"
        add("detector_maps", "Detector score maps", detector_maps([summary], split),
            f"Each detector's {split} score minus the score uniform causal attention would get; boxed heads are validated.")
        if "offset_profile" in summary:
            op = summary["offset_profile"]
            add("offset_profiles", "Offset profiles",
                offset_profiles({summary.get("name", ""): (op["offsets"], op.get(split, op["discovery"]))}),
                "Mean attention each head puts at each relative offset (0 = the character itself).")
        if "class_attention" in summary:
            add("class_preference", "Character-class preference", class_preference([summary]),
                "Class-to-class attention of the most class-selective head over the base rate, "
                "in this language's own character classes.")
        if examples is not None and len(examples.get("text", [])):
            att = np.asarray(examples["attention"], dtype=np.float32)
            text = str(examples["text"][0])
            L, H = att.shape[1:3]
            first = att[0, :, :, : len(text), : len(text)]  # shorter texts are zero-padded
            # A prefix of a causal window keeps its attention rows exact: the heatmaps show
            # the first HEATMAP_CHARS characters, so that every character can be labelled.
            short = text[:HEATMAP_CHARS]
            part = f" (first {len(short)} of {len(text)} characters)" if len(short) < len(text) else ""
            best = _most_validated_head(summary)
            add("heatmap", f"Attention heatmap, L{best[0]}H{best[1]}",
                attention_heatmap(first[best[0], best[1], : len(short), : len(short)], short,
                                  f"L{best[0]}H{best[1]} ({names[best[0] * H + best[1]]}): " + snippet(text, 30) + part),
                "One head on one text: each row is a query character, each column a key it may attend to.", svg=True)
            add("heads_grid", "All heads on one text", heads_grid(first[:, :, : len(short), : len(short)], short, names),
                "Every head's attention on the same text (rows: queries, columns: keys).")
            if L * H >= 2:
                D = js_distance_matrix(att)
                labels = [f"L{l}H{h} {names[l * H + h]}" if names[l * H + h] != "none" else f"L{l}H{h}"
                          for l in range(L) for h in range(H)]
                add("similarity", "Head similarity", similarity_figure(D, labels),
                    "Mean Jensen–Shannon distance between heads' attention rows on the same inputs, "
                    "clustered (average linkage); heads that behave alike sit together.")
            add("flow_head", f"Attention flow graph, L{best[0]}H{best[1]}",
                flow_graph(first, text, best[0], best[1]),
                "Characters as nodes, lines weighted by the head's attention from each query (below) to its keys (above).")
            add("flow_rollout", "Attention flow rolled out across layers", rollout_graph(first, text),
                "The last character's attention followed down through every layer (head average plus residual); "
                "the bottom row's shading is its attention rollout over the input characters.")
    return made


def _most_validated_head(summary: dict) -> tuple[int, int]:
    """The head with the highest held-out score among validated heads (else layer 0 head 0)."""
    best, key = (0, 0), -1.0
    for head in summary["heads"]:
        if head.get("validated") and float(head.get("heldout_score") or 0) > key:
            best, key = (head["layer"], head["head"]), float(head.get("heldout_score") or 0)
    return best
