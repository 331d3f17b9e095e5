"""Figure primitives shared by every figure module: the style (fonts with Hebrew glyphs, compact
sizes), saving, character axes and layers x heads maps. Figures take data in (arrays, characters,
summary dicts following the analysis contract), never a model, so they draw any source; each
returns a matplotlib `Figure` built without pyplot (no global state, no display needed).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from charlens.analysis.report.hebrew import char_label, font_families

MAX_LABELLED_CHARS = 64  # above this, axes label every k-th character


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

def head_names(summary: dict) -> list[str]:
    """Primary behaviour of every head, layer-major (for panel and axis labels)."""
    L, H = summary["model"]["n_layer"], summary["model"]["n_head"]
    names = ["none"] * (L * H)
    for head in summary["heads"]:
        names[head["layer"] * H + head["head"]] = head.get("behaviour", "none")
    return names

class FigureWriter:
    """Saves figures into a report folder and lists them for the report pages: one entry
    {"name", "title", "file" (PNG, relative to the folder), "caption"} per figure."""

    def __init__(self, out_dir: Path | str) -> None:
        self.out_dir = Path(out_dir)
        self.entries: list[dict] = []

    def add(self, name: str, title: str, fig: Figure, caption: str, svg: bool = False) -> dict:
        save(fig, self.out_dir / name, svg)
        entry = {"name": name, "title": title, "file": f"{name}.png", "caption": caption}
        self.entries.append(entry)
        return entry


def save(fig: Figure, path: Path, svg: bool = False) -> list[Path]:
    """Write the figure as PNG (and SVG when asked); returns the files written."""
    fig.savefig(path.with_suffix(".png"))
    written = [path.with_suffix(".png")]
    if svg:
        fig.savefig(path.with_suffix(".svg"))
        written.append(path.with_suffix(".svg"))
    return written
