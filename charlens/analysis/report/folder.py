"""The report folder: built in a staging folder beside its final place, then renamed into place in one step,
so a failed or killed run never leaves half a report; and never at the cost of a file charlens did not write.

Every report folder holds a manifest (MARKER, a JSON file): the files the report wrote, each with its sha256.
A later run into the same folder (`--out`)
  - refuses, in one line and before any work, a folder that is not empty and has no manifest (not a report),
    or in which a file the manifest lists was changed since (a user's edit is not charlens's to replace);
  - replaces only the files the manifest lists, and keeps every other file and folder, byte for byte (they are
    hard-linked into the new report before the swap, so a kill at any moment leaves them in one place or both);
  - refuses, before the swap, a kept file at a name the new report writes (nothing is changed then).
A report written before manifests existed (MARKER without a file list): the files the new report writes are
replaced, every other file is kept.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from charlens.data.errors import OutputError
from charlens.model.atomic import check_can_write, pid_alive, sweep_stale_temps, temp_prefix

MARKER = ".charlens-report"  # in every report folder: its manifest
MANIFEST_VERSION = 2  # 1: a marker without a file list (before manifests)


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def entries(folder: Path) -> Iterator[tuple[str, bool]]:
    """(relative path, is a folder) of everything under `folder`, parents before their contents; a symbolic
    link is an entry of its own (never followed)."""
    for item in sorted(os.scandir(folder), key=lambda e: e.name):
        inner = item.is_dir(follow_symlinks=False)
        yield item.name, inner
        if inner:
            yield from ((f"{item.name}/{rel}", d) for rel, d in entries(Path(item.path)))


def ancestors(paths: object) -> set[str]:
    """Every folder that holds one of the relative `paths` (e.g. "a/b/c" -> "a", "a/b")."""
    return {rel.rsplit("/", k)[0] for rel in paths for k in range(1, rel.count("/") + 1)}  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ReportFolder:
    """An existing report folder: the files its manifest lists (None: a report from before manifests) and the
    entries charlens did not write, to keep (folders that hold listed files are not entries of their own)."""

    path: Path
    listed: Optional[dict[str, str]]
    kept: tuple[tuple[str, bool], ...]  # (relative path, is a folder)

    def kept_by(self, written: set[str]) -> list[tuple[str, bool]]:
        """The entries a new report that writes `written` keeps; for a report from before manifests, every
        entry but those the new report writes (and the folders that hold them)."""
        if self.listed is not None:
            return list(self.kept)
        return [(rel, d) for rel, d in self.kept if rel not in written and not (d and rel in ancestors(written))]


def read_report_folder(final: Path) -> Optional[ReportFolder]:
    """What `final` holds (None if it is missing or empty); OutputError if it is not a charlens report, or if a
    file the manifest lists was changed since charlens wrote it."""
    if not final.is_dir() or not any(final.iterdir()):
        return None
    marker = final / MARKER
    try:
        manifest = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() and not marker.is_symlink() else None
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("tool") != "charlens":
        raise OutputError(f"{final} exists and is not a charlens report (it has no {MARKER} file): nothing was "
                          "changed; choose another --out, or empty or remove that folder first")
    listed = manifest.get("files")
    if listed is not None and not (isinstance(listed, dict) and all(isinstance(v, str) for v in listed.values())):
        raise OutputError(f"{marker} is damaged (its file list is unreadable): nothing was changed; choose another --out")
    found = list(entries(final))
    for rel, _ in found:
        path = final / rel
        if listed is not None and rel in listed and (path.is_symlink() or not path.is_file() or sha256_of(path) != listed[rel]):
            raise OutputError(f"{path} was changed after charlens wrote it: nothing was changed; move it out of the "
                              "report folder to keep it, or choose another --out")
    holders = ancestors(listed or {})
    kept = tuple((rel, d) for rel, d in found
                 if rel != MARKER and rel not in (listed or {}) and not (d and rel in holders))
    return ReportFolder(final, listed, kept)


def _old_name(final: Path, pid: int) -> Path:
    """Where a run keeps the previous report during the swap (named by its pid, so the next run can tell)."""
    return final.with_name(f".{final.name}.pid{pid}.old")


def recover_interrupted_swap(final: Path) -> None:
    """Undo what a killed run left beside `final`: its staging folders are removed (model.atomic's sweep) and a
    previous report it had moved aside is put back if `final` is missing (killed between the two renames), or
    removed if the new report made it into place (the files it kept are in the new report too)."""
    sweep_stale_temps(final)
    for old in final.parent.glob(f".{glob.escape(final.name)}.pid*.old"):
        match = re.fullmatch(rf"\.{re.escape(final.name)}\.pid(\d+)\.old", old.name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        try:
            if final.exists():
                shutil.rmtree(old)
            else:
                os.replace(old, final)
        except OSError:
            pass  # not ours to touch: left as it is


def check_output_dir(final: Path) -> Optional[ReportFolder]:
    """Refuse, before any work, an --out that cannot be written, is a file, or is a folder that may not be
    written into (see the module docstring); returns what an existing report there holds."""
    if final.parent.is_dir():
        recover_interrupted_swap(final)
    check_can_write(final, "the report folder", folder=True)
    existing = read_report_folder(final)
    if existing is not None and existing.kept:
        _link_kept(existing, [rel for rel, d in existing.kept if not d], None)  # can they be kept? (a trial)
    return existing


def _link_kept(existing: ReportFolder, files: list[str], into: Optional[Path]) -> None:
    """Hard-link the kept `files` of `existing` into the folder `into` (None: a trial in a staging folder that is
    removed again); OutputError, with nothing changed, if the file system refuses."""
    trial = into is None
    folder = Path(tempfile.mkdtemp(prefix=temp_prefix(existing.path), suffix=".tmp", dir=existing.path.parent)) if trial else into
    assert folder is not None
    try:
        for rel in files:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(existing.path / rel, folder / rel, follow_symlinks=False)
    except OSError as e:
        raise OutputError(f"cannot keep {existing.path / rel} in the new report ({e.strerror}): nothing was changed; "
                          "move it out of the report folder, or choose another --out") from None
    finally:
        if trial:
            shutil.rmtree(folder, ignore_errors=True)


def _user_mode() -> int:
    """Folder permissions under the user's umask (mkdtemp creates 0700)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def _finish(tmp: Path, final: Path) -> None:
    """Before the swap: the manifest of what the report wrote, then the files and folders it keeps from the
    report at `final` (read again now: the user may have added some while the report was built)."""
    written = {rel for rel, d in entries(tmp) if not d}
    manifest = {"tool": "charlens", "written_by": "analyze.py", "version": MANIFEST_VERSION,
                "files": {rel: sha256_of(tmp / rel) for rel in sorted(written)}}
    existing = read_report_folder(final)
    if existing is not None:
        kept = existing.kept_by(written)
        clash = next((rel for rel, d in kept if rel in written or (d and (tmp / rel).exists() and not (tmp / rel).is_dir())), None)
        if clash is not None:
            raise OutputError(f"{final / clash} was not written by charlens, and the new report writes a file of that "
                              "name: nothing was changed; move it out of the report folder, or choose another --out")
        for rel, is_dir in kept:
            if is_dir:
                (tmp / rel).mkdir(parents=True, exist_ok=True)
        _link_kept(existing, [rel for rel, d in kept if not d], tmp)
    (tmp / MARKER).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


@contextlib.contextmanager
def staged_output_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to `final`; on success it replaces `final` (keeping the files
    charlens did not write there), on any failure it is deleted and `final` is left as it was."""
    final = Path(final)
    check_output_dir(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final), suffix=".tmp", dir=final.parent))
        os.chmod(tmp, _user_mode())
    except OSError as e:
        raise OutputError(f"cannot write the report folder {final}: {e.strerror or e}") from None
    try:
        yield tmp
        _finish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = _old_name(final, os.getpid()) if final.exists() else None
    try:
        if old is not None:
            os.replace(final, old)
        os.replace(tmp, final)
    except OSError as e:
        if old is not None and old.exists() and not final.exists():
            os.replace(old, final)  # put the previous report back
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write the report folder {final}: {e.strerror or e}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
