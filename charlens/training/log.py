"""The training log (<name>.log.jsonl) and loss plot (<name>.loss.png) beside a checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

from charlens.model.atomic import atomic_write


def log_paths(path: Path) -> tuple[Path, Path]:
    """<name>.log.jsonl and <name>.loss.png beside the checkpoint `path` (<name>.pt)."""
    stem = path.with_suffix("")
    return stem.with_name(stem.name + ".log.jsonl"), stem.with_name(stem.name + ".loss.png")


def write_log_and_plot(history: list[dict], path: Path) -> None:
    """The log and the loss plot beside the checkpoint `path` (log_paths), each written atomically."""
    log_path, plot_path = log_paths(path)
    log = "".join(json.dumps(r) + "\n" for r in history)
    atomic_write(log_path, lambda f: f.write(log.encode()))
    from matplotlib.figure import Figure

    steps = [r for r in history if r["kind"] == "step"]
    evals = [r for r in history if r["kind"] == "eval"]
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    ax.plot([r["iter"] for r in steps], [r["loss"] for r in steps], lw=0.6, alpha=0.5, label="train (batch)")
    for split in ("train", "val"):
        ax.plot([r["iter"] for r in evals], [r[f"{split}_loss"] for r in evals], "o-", ms=3, label=f"{split} (estimate)")
    ax.set(xlabel="iteration", ylabel="loss (nats/char)", title=path.stem)
    ax.grid(alpha=0.3)
    ax.legend()
    atomic_write(plot_path, lambda f: fig.savefig(f, format="png", dpi=110))
