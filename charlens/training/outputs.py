"""Where a run writes: its checkpoint, and beside it the log and plot. Every path is checked before any
work: only a file charlens wrote is replaced, never the corpus or any other file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from charlens.data.errors import UsageError
from charlens.model.checkpoint import CheckpointError, load_checkpoint
from charlens.training.log import log_paths


def check_writable(path: Path) -> None:
    """Fail now, not after an hour of training, if the checkpoint cannot be written."""
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if path.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write the checkpoint to {path}: {folder} is not a writable folder")


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (resolved links, hard links: same device and inode)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(out: Path, inputs: list[Path], resume: Optional[Path], overwrite: bool) -> None:
    """Refuse, before any work, to write the checkpoint (or the log and plot beside it) over a file that
    must survive: a corpus file in `inputs`, any existing file that is not a charlens checkpoint, and,
    without --overwrite, a checkpoint other than the --resume file (or a log/plot with no checkpoint)."""
    check_writable(out)
    for target in (out, *log_paths(out)):
        for source in inputs:
            if same_file(target, source):
                raise UsageError(f"refusing to write {target}: it is the corpus file {source}; choose another --out")
    if out.exists():
        if resume is not None and same_file(out, resume):
            return  # continuing the run in place
        try:
            existing = load_checkpoint(out)
        except CheckpointError:
            raise UsageError(f"refusing to overwrite {out}: it exists and is not a loadable charlens checkpoint; "
                             "choose another --out") from None
        if not overwrite:
            raise UsageError(f"{out} already holds a checkpoint (step {existing['iter']}); continue it with --resume {out}, "
                             "or add --overwrite to replace it")
    elif not overwrite:
        for other in log_paths(out):
            if other.exists():
                raise UsageError(f"refusing to overwrite {other}: no checkpoint {out} is beside it, so charlens may not "
                                 "have written it; add --overwrite to replace it")
