"""The training log (<name>.log.jsonl) and loss plot (<name>.loss.png) beside a checkpoint, and how to
recognise them (a run replaces only the log and plot charlens wrote)."""
from __future__ import annotations

import json
import struct
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
    atomic_write(plot_path, lambda f: fig.savefig(f, format="png", dpi=110, metadata={"Software": PLOT_SOFTWARE}))


PLOT_SOFTWARE = "charlens"  # the PNG's Software text: what marks a loss plot as written by charlens
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_training_log(path: Path) -> bool:
    """Whether `path` is a charlens training log: one or more JSON lines, each a record with a "kind"."""
    lines = 0
    try:
        with open(path, encoding="utf-8") as f:
            for lines, line in enumerate(f, 1):
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
                    return False
    except (OSError, ValueError):
        return False
    return lines > 0


def is_loss_plot(path: Path) -> bool:
    """Whether `path` is a loss plot charlens wrote: a PNG whose Software text is charlens's (or, from before
    that mark, Matplotlib's)."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != PNG_SIGNATURE:
                return False
            while True:
                length, kind = struct.unpack(">I4s", f.read(8))
                if kind in (b"IDAT", b"IEND"):  # the text chunks come first
                    return False
                data = f.read(length)
                f.seek(4, 1)  # the chunk's CRC
                if kind == b"tEXt" and data.startswith(b"Software\x00"):
                    software = data[len(b"Software\x00"):]
                    return software == PLOT_SOFTWARE.encode() or software.startswith(b"Matplotlib version")
    except (OSError, struct.error):
        return False
