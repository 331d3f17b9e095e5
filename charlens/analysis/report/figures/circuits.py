"""Figures of the weight-level circuit scores and of who copies in context. They take the summary's
`circuits` and `copying` entries (analysis.runs.circuits, analysis.runs.copying: plain lists), never a model."""
from __future__ import annotations

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from charlens.analysis.report.figures.base import grid_map

PAIR_PANELS = (("q_composition", "Q-composition"), ("k_composition", "K-composition"), ("v_composition", "V-composition"),
               ("qk_match", "QK match (weights)"))
HEAD_PANELS = (("ov_copying", "OV copying (eigenvalues)"), ("ov_diagonal", "OV diagonal share"),
               ("qk_previous", "positional QK: previous char"))


def _array(values) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=np.float64) \
        if np.ndim(values) == 2 else np.array(values, dtype=np.float64)


def _pair_matrix(pairs: list) -> tuple[np.ndarray, list[str], list[str]]:
    """(L, H, L, H) nested lists (None = undefined) -> the defined block: earlier heads (rows) x later heads (columns)."""
    a = np.array(pairs, dtype=object)
    a = np.where(a == None, np.nan, a).astype(np.float64)  # noqa: E711  # elementwise test for JSON nulls
    L, H = a.shape[:2]
    rows = [f"L{l}H{h}" for l in range(L - 1) for h in range(H)]
    cols = [f"L{l}H{h}" for l in range(1, L) for h in range(H)]
    return a[: L - 1, :, 1:, :].reshape(len(rows), len(cols)), rows, cols


def circuits_figure(circuits: dict) -> Figure:
    """Top: every pair score, earlier heads (rows) x later heads (columns), shaded by its excess over random heads,
    cells above the random heads' quantile boxed. Bottom: the per-head scores, the same way."""
    base = circuits["baseline"]
    fig = Figure(figsize=(15, 7.5))
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.1, 1])  # type: ignore[misc]  # an array of two SubFigures
    for k, (ax, (key, title)) in enumerate(zip(top.subplots(1, len(PAIR_PANELS)), PAIR_PANELS)):
        values, rows, cols = _pair_matrix(circuits["pairs"][key])
        _excess_map(ax, values, base[key], rows, cols)
        ax.set_title(f"{title}\n(random: {base[key]['mean']:.2f}, {100 * circuits['baseline_quantile']:.0f}%: "
                     f"{base[key]['quantile']:.2f})")
        if k == 0:
            ax.set_ylabel("earlier head (writes)")
        ax.set_xlabel("later head (reads)")
    for ax, (key, title) in zip(bottom.subplots(1, len(HEAD_PANELS)), HEAD_PANELS):
        values = _array(circuits["heads"][key])
        im = grid_map(ax, values, TwoSlopeNorm(base[key]["mean"], -1.0 if key == "ov_copying" else 0.0, 1.0), "RdBu_r",
                      marked=values > base[key]["quantile"])
        ax.set_title(f"{title}\n(random: {base[key]['mean']:.2f}, boxed above {base[key]['quantile']:.2f})")
        fig.colorbar(im, ax=ax, fraction=0.05)
    return fig


def _excess_map(ax, values: np.ndarray, base: dict, rows: list[str], cols: list[str]) -> None:
    """A rows x columns map of raw scores, coloured from the random mean (white) to 1, values written in, cells above
    the random quantile boxed; a 1-layer model has no pairs, and the panel says so."""
    if values.size == 0:
        ax.text(0.5, 0.5, "no pairs: one layer", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    im = ax.imshow(values, cmap="RdBu_r", norm=TwoSlopeNorm(base["mean"], 0.0, 1.0), interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, fontsize=6, rotation=90)
    ax.set_yticks(range(len(rows)), rows, fontsize=6)
    if values.size <= 256:
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5, color="black")
    for i, j in zip(*np.nonzero(np.nan_to_num(values, nan=-np.inf) > base["quantile"])):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.4))
    ax.figure.colorbar(im, ax=ax, fraction=0.05)


def copying_figure(copying: dict) -> Figure:
    """Left: each head's share of the copy drop removed by ablating it alone (mean ablation), carriers boxed.
    Right: the pairs ablated together, their share beside the sum of their own shares."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    share = _array(copying["share"]["mean"])
    marked = np.zeros(share.shape, dtype=bool)
    for l, h in copying["carriers"]:
        marked[l, h] = True
    bound = max([0.05, *np.abs(share[np.isfinite(share)])])
    im = grid_map(left, share, TwoSlopeNorm(0.0, -bound, bound), "RdBu_r", marked=marked, fmt="{:.0%}")
    left.set_title(f"share of the copy drop ({copying['drop'] or 0:.2f} nats) removed\nby mean-ablating one head "
                   f"(boxed: >= {copying['carrier_share']:.0%})")
    fig.colorbar(im, ax=left, fraction=0.05)
    pairs = sorted(copying["pairs"], key=lambda p: -(p["share"] or 0.0))
    labels = [f"L{a[0]}H{a[1]}+L{b[0]}H{b[1]}" for a, b in (p["heads"] for p in pairs)]
    together = [p["share"] or 0.0 for p in pairs]
    alone = [(p["share"] or 0.0) - (p["interaction"] or 0.0) for p in pairs]
    y = np.arange(len(pairs))
    right.barh(y - 0.2, together, 0.4, label="ablated together", color="#c0392b")
    right.barh(y + 0.2, alone, 0.4, label="sum of the two alone", color="#95a5a6")
    right.set_yticks(y, labels, fontsize=7)
    right.invert_yaxis()
    right.set_xlim(min([0.0, *together, *alone]) - 0.05, max([1.0, *together, *alone]) + 0.05)
    right.axvline(0, color="black", linewidth=0.6)
    right.set_xlabel("share of the copy drop removed")
    right.legend(fontsize=7, loc="lower right")
    right.set_title("pairs of the strongest heads" if pairs else "no pairs ablated: the model does not copy")
    return fig


def _series(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def formation_figure(formation: dict) -> Figure:
    """The induction circuit forming: the partner's previous-character selectivity, the head's prefix matching,
    K-composition and QK match between them, the head's OV copying (left axis), and the loss on each copy of the
    repeated sequences with the task's second-copy accuracy if logged (right panel), on one linear step axis; the
    formation step and the loss drop step marked."""
    steps = np.asarray(formation["steps"], dtype=np.float64)
    s = formation["series"]
    (l, h), partner = formation["head"], formation["partner"]
    p = f"L{partner[0]}H{partner[1]}" if partner else "partner"
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    for key, label, colour in (("previous", f"{p} previous_char selectivity", "C0"),
                               ("match", f"L{l}H{h} prefix matching (repeated sequences)", "C1"),
                               ("k_composition", f"K-composition {p} → L{l}H{h}", "C2"),
                               ("qk_match", f"QK match {p} → L{l}H{h} (weights)", "C4"),
                               ("copy", f"L{l}H{h} OV copying", "C3")):
        left.plot(steps, _series(s[key]), label=label, color=colour, linewidth=1.2, marker=".", markersize=3)
    for ax in (left, right):
        for step, style, what in ((formation["formed"], "--", "formed"), (formation["loss_drop"], ":", "loss half-way")):
            if step is not None:
                ax.axvline(step, color="black", linestyle=style, linewidth=0.8, label=f"{what} (step {step})")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    left.set_title(f"induction head L{l}H{h} and the head it reads")
    left.legend(fontsize=6)
    right.plot(steps, _series(s["loss_first_copy"]), label="first copy", color="C7", linewidth=1.2)
    right.plot(steps, _series(s["loss_second_copy"]), label="second copy", color="C3", linewidth=1.2)
    right.set_ylabel("loss on repeated sequences (nats/char)")
    right.set_title("loss on each copy" + (" and the task's second-copy accuracy" if formation["accuracy"]["steps"] else ""))
    if formation["accuracy"]["steps"]:
        acc = right.twinx()
        acc.plot(formation["accuracy"]["steps"], _series(formation["accuracy"]["second_copy"]), color="C9", linewidth=1.2,
                 label="task second-copy accuracy")
        acc.set_ylim(0, 1)
        acc.set_ylabel("accuracy")
        acc.legend(fontsize=6, loc="center right")
    right.legend(fontsize=6, loc="upper right")
    return fig
