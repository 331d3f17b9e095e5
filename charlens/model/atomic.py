"""Atomic file writes, and removal of the temporary files that killed writers leave behind.

A file is written to `.NAME.pid<PID>.<random>.tmp` beside NAME, then renamed over NAME, so a crash
mid-write never leaves a truncated NAME. A writer killed with SIGKILL (or a power cut) leaves its
temporary file; the next write of NAME removes the temporary files of NAME whose writer process is
gone (`sweep_stale_temps`). The pid only identifies processes of this machine: on a folder shared
by several machines a live writer elsewhere could lose its temporary file (its rename then fails).
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable

# Temporary files written before the pid was part of the name (`.NAME.<8 random>.tmp`) cannot be
# tied to a process; they are removed once older than this, as no write takes that long.
LEGACY_TEMP_AGE_S = 3600


def temp_prefix(path: Path) -> str:
    """The name prefix of this process's temporary files for `path`."""
    return f".{path.name}.pid{os.getpid()}."


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def sweep_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of `path` left by dead writers; return the removed paths.
    A temporary file whose writer is alive is kept (it may be renamed into place any moment).
    Temporary folders named the same way (e.g. tempfile.mkdtemp(prefix=temp_prefix(path), suffix=".tmp"),
    a report built beside its final place) are removed with their contents."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:pid(\d+)\.)?[a-z0-9_]{{8}}\.tmp")
    removed: list[Path] = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        match = pattern.fullmatch(tmp.name)
        if match is None:
            continue
        try:
            if match.group(1):
                stale = not pid_alive(int(match.group(1)))
            else:
                stale = time.time() - tmp.stat().st_mtime > LEGACY_TEMP_AGE_S
            if not stale:
                continue
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass  # gone already, or not ours to remove: leave it
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call write(file) on a temporary file in the same folder, then rename it to `path`,
    so that a crash mid-write never leaves a truncated file behind. Stale temporary files of
    `path` from dead writers are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are ordinary shareable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
