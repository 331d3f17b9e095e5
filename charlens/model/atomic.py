"""Atomic file writes, removal of the temporary files that killed writers leave behind, and a check,
before any work, that a path can be written at all.

A file is written to `.NAME.pid<PID>.<random>.tmp` beside NAME, then renamed over NAME, so a crash
mid-write never leaves a truncated NAME. A writer killed with SIGKILL (or a power cut) leaves its
temporary file; the next write of NAME removes the temporary files of NAME whose writer process is
gone (`sweep_stale_temps`). The pid only identifies processes of this machine: on a folder shared
by several machines a live writer elsewhere could lose its temporary file (its rename then fails).
"""
from __future__ import annotations

import errno
import glob
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable

from charlens.data.errors import OutputError

# Temporary files written before the pid was part of the name (`.NAME.<8 random>.tmp`) cannot be
# tied to a process; they are removed once older than this, as no write takes that long.
LEGACY_TEMP_AGE_S = 3600
NAME_MAX = 255  # bytes in one file name on common file systems (ext4, xfs, btrfs, APFS, NTFS)


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


def check_can_write(path: str | os.PathLike, what: str, folder: bool = False) -> None:
    """Fail now, not after the work, if `path` (a file, or with folder=True a folder) cannot be written:
    create and remove a real temporary file (folder) named as the writes will name theirs, in its folder.
    Missing parent folders are created for the test and removed again. OutputError names the problem:
    a folder where a file goes, a name too long, no permission, a file system that takes no files."""
    path = Path(path)
    created: list[Path] = []
    try:
        if not folder and path.is_dir():
            raise OutputError(f"cannot write {what} {path}: it is a folder; give a file name inside it")
        if folder and path.exists() and not path.is_dir():
            raise OutputError(f"cannot write {what} {path}: a file of that name exists")
        for attempt in range(RACE_TRIES):  # another process (a torchrun rank) may make or remove the same folders
            try:
                _trial_write(path, folder, created)
                break
            except FileNotFoundError:
                if attempt == RACE_TRIES - 1 or path.parent.exists():
                    raise
    except OSError as e:
        raise OutputError(f"cannot write {what} {path}: {_why(e, path)}") from None
    finally:
        for made in reversed(created):
            try:
                made.rmdir()
            except OSError:
                pass


RACE_TRIES = 5


def _trial_write(path: Path, folder: bool, created: list[Path]) -> None:
    """Make the missing parent folders (recorded in `created`; one another process made meanwhile is fine) and
    create and remove one temporary file (folder) beside `path`."""
    for missing in reversed([p for p in (path.parent, *path.parent.parents) if not p.exists()]):
        try:
            missing.mkdir()
            created.append(missing)
        except FileExistsError:
            if not missing.is_dir():
                raise
    if folder:
        os.rmdir(tempfile.mkdtemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent))
    else:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)


def _why(e: OSError, path: Path) -> str:
    """What an OSError from writing beside `path` means for the user."""
    if e.errno == errno.ENAMETOOLONG:
        extra = len(temp_prefix(path)) - len(path.name) + len("12345678.tmp")  # the temporary file's additions
        longest = max(len(part.encode()) for part in path.parts)
        if longest + extra > NAME_MAX:
            return (f"a name in it is too long ({longest} bytes; this file system takes {NAME_MAX}, and charlens "
                    f"adds {extra} for its temporary files)")
        return f"the path is too long ({len(str(path).encode())} bytes)"
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), path.parent)
        return f"{blocker} is a file, not a folder"
    return f"{e.strerror or e} (a file could not be created in {path.parent})"
