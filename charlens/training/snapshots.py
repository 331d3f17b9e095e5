"""Snapshots (`--snapshots N`): full checkpoints at N log-spaced steps, so that any stage of a run can be
analysed in full (`analyze.py --ckpt checkpoints/en.step250.pt`) or resumed.

Snapshot k of checkpoints/en.pt is checkpoints/en.step<k>.pt (with --seeds, en_s0.step<k>.pt, ...), the
same dict as the checkpoint at that step (weights, optimizer and generator states, history, probe set),
written atomically like it. The steps are a function of N and --max-iters, so an interrupted and resumed
run writes the same ones; raising --max-iters on resume moves the snapshots still to come.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

from charlens.analysis.measures.detectors import detectors_for
from charlens.data.errors import UsageError
from charlens.model.limits import parameter_shapes, state_shapes
from charlens.training.config import TrainSettings
from charlens.training.timeline import REPEATED_SEQUENCES, PROBE_WINDOWS, SCHEDULE_POINTS

PICKLED_NUMBER = 10  # bytes a float costs in a checkpoint's pickled history (measured 9)


def snapshot_steps(n: int, max_iters: int) -> set[int]:
    """n distinct log-spaced steps in 1..max_iters, the last being max_iters (n <= max_iters)."""
    steps: list[int] = []
    for k in range(1, n + 1):
        steps.append(max(round(max_iters ** (k / n)), steps[-1] + 1 if steps else 1))
    for k in range(n - 1, -1, -1):  # from the end: leave room for the later ones
        steps[k] = min(steps[k], max_iters - (n - 1 - k))
    return set(steps)


def snapshot_path(out: Path, step: int) -> Path:
    """checkpoints/en.pt -> checkpoints/en.step250.pt"""
    return out.with_name(f"{out.stem}.step{step}{out.suffix}")


def checkpoint_bytes(s: TrainSettings, vocab_size: int, lang: str) -> int:
    """About the size of one checkpoint of this run at its end: weights and AdamW's two moments (float32),
    and the history (a step record every 10 steps, timeline records of D x L x H numbers x 3)."""
    config = s.model_config(vocab_size)
    weights = 4 * sum(math.prod(v) for v in state_shapes(config).values())
    moments = 8 * sum(math.prod(v) for v in parameter_shapes(config))
    records = SCHEDULE_POINTS + 2 + s.max_iters // s.eval_interval if s.timeline else 0
    per_record = 3 * (len(detectors_for(lang)) + 1) * s.n_layer * s.n_head + 20
    probe = (PROBE_WINDOWS + REPEATED_SEQUENCES) * s.block_size * 4
    return weights + moments + PICKLED_NUMBER * (records * per_record + 5 * s.max_iters // 10) + probe


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def check_room(s: TrainSettings, vocab_size: int, lang: str, outs: list[Path]) -> None:
    """Refuse, before any work, snapshots that would not fit on the disk of their folder (with the checkpoints)."""
    if not s.snapshots:
        return
    size = checkpoint_bytes(s, vocab_size, lang)
    need = len(outs) * (s.snapshots + 1) * size
    folder = outs[0].parent
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if need > free:
        raise UsageError(f"--snapshots {s.snapshots} needs about {mib(need)} in {folder} ({len(outs) * (s.snapshots + 1)} "
                         f"checkpoints of about {mib(size)}), more than the {mib(free)} free there; lower --snapshots")
