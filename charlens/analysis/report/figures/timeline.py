"""The timeline figure: how the heads formed during training, from summary.json's `timeline` entry.

Small multiples on one log-step axis: the loss (training, validation, probe set), the strongest head per
behaviour (the 8 highest at the end, and induction), then one panel per validated head with its labels' selectivity, the cut as a line and the
formation step marked; and (every_head_figure) one panel per final label with every head's selectivity for it,
the heads that end with the label highlighted. Step 0 (the initialized model) is drawn on the symmetric-log axis's linear part.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

COLUMNS = 4
MAX_LABELS = 8  # behaviours drawn in the strongest-head panel (the highest at the last step), and induction


def _values(xs: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in xs], dtype=float)


def _step_axis(ax, last: float) -> None:
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(0, max(last, 1))  # symlog's margins would otherwise open a negative range
    ax.grid(alpha=0.3)


def timeline_figure(entry: dict) -> Figure:
    """Small multiples of a recorded timeline (`entry`: summary.json's `timeline` with recorded = true)."""
    steps = np.asarray(entry["steps"], dtype=float)
    cut = entry["cut"]
    heads: dict[tuple[int, int], list[dict]] = {}
    for h in entry["heads"]:
        heads.setdefault((h["layer"], h["head"]), []).append(h)
    n = 2 + len(heads)
    rows = math.ceil(n / COLUMNS)
    fig = Figure(figsize=(2.6 * min(n, COLUMNS), 2.1 * rows), layout="constrained")
    axes = fig.subplots(rows, min(n, COLUMNS), squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)

    ax = axes[0]
    for key, label, colour in (("train_loss", "training", "C0"), ("val_loss", "validation", "C1")):
        if entry[key]["steps"]:
            ax.plot(entry[key]["steps"], _values(entry[key]["loss"]), color=colour, linewidth=1, label=label)
    ax.plot(steps, _values(entry["losses"]["probe_loss"]), color="C2", linewidth=1, marker=".", markersize=3,
            label="probe set")
    _step_axis(ax, steps[-1])
    ax.set_title("loss (nats/char)")
    ax.legend(fontsize=6)

    ax = axes[1]
    ranked = sorted(entry["strongest"], key=lambda k: -np.nan_to_num(_values(entry["strongest"][k])[-1], nan=-9))
    shown = ranked[:MAX_LABELS] + (["induction"] if "induction" in ranked[MAX_LABELS:] else [])  # always induction
    for label in shown:
        series = entry["strongest"][label]
        ax.plot(steps, _values(series), linewidth=1, label=label)
    ax.axhline(cut, color="black", linestyle="--", linewidth=0.8)
    _step_axis(ax, steps[-1])
    ax.set_title("strongest head per behaviour")
    ax.legend(fontsize=5, ncol=2)

    for ax, ((layer, head), labels) in zip(axes[2:], heads.items()):
        for k, h in enumerate(labels):
            ax.plot(steps, _values(h["selectivity"]), linewidth=1.6 if h["primary"] else 0.8, color=f"C{k}",
                    label=h["label"])
            if h["formed"] is not None:
                ax.axvline(h["formed"], color=f"C{k}", linestyle=":", linewidth=1)
        ax.axhline(cut, color="black", linestyle="--", linewidth=0.8)
        _step_axis(ax, steps[-1])
        ax.set_title(f"L{layer}H{head} {labels[0]['label']}")
        ax.legend(fontsize=5)
    for ax in axes[:n]:
        ax.set_xlabel("step", fontsize=7)
    for ax in axes[1:n]:
        ax.set_ylabel("selectivity", fontsize=7)
    return fig


def every_head_figure(entry: dict) -> Figure:
    """One panel per behaviour that a head of the final model has as its label: every head's selectivity for it
    over training (grey), the heads that end with that label highlighted, the cut as a dashed line."""
    steps = np.asarray(entry["steps"], dtype=float)
    labelled: dict[str, set[tuple[int, int]]] = {}
    for h in entry["heads"]:
        if h["primary"]:
            labelled.setdefault(h["label"], set()).add((h["layer"], h["head"]))
    behaviours = list(entry["every_head"])
    n = max(len(behaviours), 1)
    fig = Figure(figsize=(3.2 * min(n, COLUMNS), 2.4 * math.ceil(n / COLUMNS)), layout="constrained")
    axes = fig.subplots(math.ceil(n / COLUMNS), min(n, COLUMNS), squeeze=False).ravel()
    for ax in axes[len(behaviours):]:
        ax.set_visible(False)
    for ax, label in zip(axes, behaviours):
        k = 0
        for layer, row in enumerate(entry["every_head"][label]):
            for head, series in enumerate(row):
                if (layer, head) in labelled.get(label, ()):
                    ax.plot(steps, _values(series), linewidth=1.6, color=f"C{k % 10}", label=f"L{layer}H{head}")
                    k += 1
                else:
                    ax.plot(steps, _values(series), linewidth=0.6, color="0.7")
        ax.axhline(entry["cut"], color="black", linestyle="--", linewidth=0.8)
        _step_axis(ax, steps[-1])
        ax.set_title(f"{label}: every head", fontsize=9)
        ax.set_xlabel("step", fontsize=7)
        ax.set_ylabel("selectivity", fontsize=7)
        ax.legend(fontsize=5, ncol=2)
    return fig
