"""The attention of a checkpoint's snapshots (`train.py --snapshots N`: `<stem>.step<k>.pt` beside it) on the
first example window, for report.html's training-step slider. Snapshots whose model config or tokenizer
differ from the checkpoint's, that cannot be read, or that come after its step are left out; at most
MAX_SNAPSHOTS are kept (spread over the run, the last always).

    steps = snapshot_attention(inputs, analysis.examples)   # Optional[SnapshotAttention]; None: no snapshots
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from charlens.analysis.runs.extract import iter_attention
from charlens.analysis.runs.inputs import AnalysisInputs
from charlens.data.errors import CharlensError
from charlens.data.tokenizer import tokenizer_from_dict
from charlens.model.checkpoint import load_checkpoint, model_from_checkpoint

MAX_SNAPSHOTS = 8
STEP = re.compile(r"\.step(\d+)$")


@dataclass(frozen=True)
class SnapshotAttention:
    """One example window's attention at each snapshot step and at the checkpoint's own (final) step."""

    text: str  # the window (the first example)
    steps: tuple[int, ...]  # snapshot steps, ascending, then the final step
    attention: np.ndarray  # (S, L, H, T, T) float16, in the order of `steps`
    skipped: tuple[str, ...] = ()  # snapshot files left out, each with why


def snapshot_files(ckpt_path: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every `<stem>.step<k>.pt` beside the checkpoint, by step."""
    path = Path(ckpt_path)
    found = []
    for p in path.parent.glob(f"{path.stem}.step*{path.suffix}"):
        m = STEP.search(p.stem)
        if m and p.stem[: m.start()] == path.stem:
            found.append((int(m.group(1)), p))
    return sorted(found)


def spread(items: list, cap: int) -> list:
    """At most `cap` of `items`, evenly spread, the first and last kept."""
    if len(items) <= cap:
        return items
    return [items[k] for k in sorted(set(np.linspace(0, len(items) - 1, cap).round().astype(int).tolist()))]


def snapshot_attention(inputs: AnalysisInputs, examples: dict, value_weighted: bool = False,
                       cap: int = MAX_SNAPSHOTS) -> Optional[SnapshotAttention]:
    """Every usable snapshot's attention on the first example window, then the checkpoint's own; None without
    snapshot files (or without examples). When every file was left out, only the final step remains (no slider)
    and `skipped` says why."""
    texts = np.asarray(examples.get("text", [])).tolist()
    final = int(inputs.state.get("iter", 0))
    files = [(k, p) for k, p in snapshot_files(inputs.ckpt_path) if k < final]
    if not texts or not files:
        return None
    text = str(texts[0])
    kept: list[tuple[int, np.ndarray]] = []
    skipped: list[str] = []
    for step, path in spread(files, cap):
        try:
            state = load_checkpoint(path)
        except CharlensError as e:
            skipped.append(f"{path.name}: {e}")
            continue
        if state["model_config"] != inputs.state["model_config"] or state["tokenizer"] != inputs.state["tokenizer"]:
            skipped.append(f"{path.name}: another model config or tokenizer")
            continue
        model = model_from_checkpoint(state)
        batch = next(iter_attention(model, tokenizer_from_dict(state["tokenizer"]), [text], inputs.lang,
                                    value_weighted=value_weighted))
        kept.append((step, batch.attention[0].numpy().astype(np.float16)))
    T = len(text)
    last = np.asarray(examples["attention"])[0, :, :, :T, :T].astype(np.float16)
    return SnapshotAttention(text, tuple(s for s, _ in kept) + (final,), np.stack([a for _, a in kept] + [last]),
                             tuple(skipped))
