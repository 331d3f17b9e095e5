"""Where a run writes: its checkpoint, beside it the log and plot, and its snapshots. Every path is checked
before any work, by one rule: a file that exists is replaced only if charlens wrote it (a loadable charlens
checkpoint, a training log, a loss plot: each recognised by its format), never the corpus, and another run's
files only with --overwrite. Anything else is refused in one line."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from charlens.data.errors import UsageError
from charlens.model.atomic import check_can_write
from charlens.model.checkpoint import CheckpointError, load_checkpoint
from charlens.training.log import is_training_log, is_loss_plot, log_paths


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (resolved links, hard links: same device and inode)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def existing_checkpoint(path: Path) -> Optional[dict]:
    """The charlens checkpoint at `path`, None if there is no file; refused if the file is anything else."""
    if not path.exists() and not path.is_symlink():
        return None
    try:
        return load_checkpoint(path)
    except CheckpointError:
        raise UsageError(f"refusing to overwrite {path}: it exists and is not a loadable charlens checkpoint; "
                         "choose another --out") from None


def same_run(a: dict, b: dict) -> bool:
    """Whether two checkpoints are stages of one run (its corpus, seed and architecture)."""
    args_a, args_b = a.get("train_args", {}), b.get("train_args", {})
    return (a["corpus"] == b["corpus"] and a["model_config"] == b["model_config"]
            and args_a.get("seed") == args_b.get("seed"))


def check_output(out: Path, inputs: list[Path], resume: Optional[Path], overwrite: bool,
                 snapshots: tuple[Path, ...] = ()) -> None:
    """Refuse, before any work, to write the checkpoint `out`, the log and plot beside it, or the `snapshots`
    over a file that must survive: a corpus file in `inputs`, any existing file charlens did not write (even
    with --overwrite), and, without --overwrite, another run's checkpoint or snapshot (continuing the --resume
    file in place rewrites its own), or a log or plot with no checkpoint beside it."""
    for target in (out, *log_paths(out), *snapshots[-1:]):  # (the last snapshot has the longest name)
        check_can_write(target, "the checkpoint" if target == out else "the file")
    for target in (out, *log_paths(out), *snapshots):
        for source in inputs:
            if same_file(target, source):
                raise UsageError(f"refusing to write {target}: it is the corpus file {source}; choose another --out")
    continuing = resume is not None and same_file(out, resume)
    existing = existing_checkpoint(out)
    for other, ours, kind in zip(log_paths(out), (is_training_log, is_loss_plot), ("training log", "loss plot")):
        if other.exists() and not ours(other):
            raise UsageError(f"refusing to overwrite {other}: it is not a charlens {kind}; move it away or choose another --out")
    found = {snapshot: existing_checkpoint(snapshot) for snapshot in snapshots}
    if overwrite:
        return
    if existing is not None and not continuing:
        raise UsageError(f"{out} already holds a checkpoint (step {existing['iter']}); continue it with --resume {out}, "
                         "or add --overwrite to replace it")
    for other in log_paths(out):
        if other.exists() and existing is None:
            raise UsageError(f"refusing to overwrite {other}: no checkpoint {out} is beside it, so charlens may not "
                             "have written it; add --overwrite to replace it")
    for snapshot, state in found.items():
        if state is not None and not (continuing and existing is not None and same_run(state, existing)):
            raise UsageError(f"{snapshot} already holds a checkpoint of another run (step {state['iter']}); "
                             "add --overwrite to replace it, or choose another --out")
