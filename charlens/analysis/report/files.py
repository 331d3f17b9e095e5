"""Report files: summary.json, heads.csv and attention_examples.npz, written into a staging folder
that replaces the report folder only when everything is written."""
from __future__ import annotations

import contextlib
import csv
import glob
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from charlens.data.errors import CharlensError
from charlens.model.atomic import pid_alive, sweep_stale_temps, temp_prefix

HEAD_COLUMNS = ["layer", "head", "behaviour", "kind", "candidate", "validated", "borderline", "selectivity",
                "heldout_selectivity", "margin", "margin_se", "score", "heldout_score", "baseline", "confidence", "n_windows",
                "components", "unexplained", "key_chars", "behaviours"]
VISIBLE = {" ": "␠", "\t": "⇥", "\n": "⏎", "\r": "␍"}


def key_chars_text(entries: list[dict]) -> str:
    """A head's key characters as text: "e 0.88 vs 0.17, a 0.06 vs 0.04" (mass on the character's keys vs its
    positional control; whitespace shown as a visible sign)."""
    return ", ".join(f"{VISIBLE.get(e['char'], e['char'])} {e['mass']:.2f} vs {e['control']:.2f}" for e in entries) or "—"


MARKER = ".charlens-report"  # in every report folder: what --out may replace


class OutputError(CharlensError):
    """The report folder cannot be written."""


def is_replaceable(folder: Path) -> bool:
    """A report may replace only an empty folder or one that holds a previous charlens report."""
    return not any(folder.iterdir()) or (folder / MARKER).is_file()


def _old_name(final: Path, pid: int) -> Path:
    """Where a run keeps the previous report during the swap (named by its pid, so the next run can tell)."""
    return final.with_name(f".{final.name}.pid{pid}.old")


def recover_interrupted_swap(final: Path) -> None:
    """Undo what a killed run left beside `final`: its staging folders are removed (model.atomic's sweep) and a
    previous report it had moved aside is put back if `final` is missing (killed between the two renames), or
    removed if the new report made it into place."""
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


def check_output_dir(final: Path) -> None:
    """Refuse, before any work, an --out that is a file or a folder of someone else's files."""
    if final.parent.is_dir():
        recover_interrupted_swap(final)
    if final.exists() and not final.is_dir():
        raise OutputError(f"cannot write the report folder {final}: a file of that name exists")
    if final.is_dir() and not is_replaceable(final):
        raise OutputError(f"{final} exists and is not a charlens report (it has no {MARKER} file): nothing was "
                          "changed; choose another --out, or empty or remove that folder first")


def _user_mode() -> int:
    """Folder permissions under the user's umask (mkdtemp creates 0700)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


@contextlib.contextmanager
def staged_output_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to `final`; on success it replaces `final` (an older
    report there is removed), on any failure it is deleted and `final` is left as it was. Only an
    empty folder or a previous charlens report (the MARKER file) is ever replaced."""
    final = Path(final)
    check_output_dir(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final), suffix=".tmp", dir=final.parent))
        os.chmod(tmp, _user_mode())
        (tmp / MARKER).write_text(json.dumps({"tool": "charlens", "written_by": "analyze.py"}) + "\n", encoding="utf-8")
    except OSError as e:
        raise OutputError(f"cannot write the report folder {final}: {e.strerror or e}") from None
    try:
        yield tmp
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


def _clean(x):
    """JSON has no NaN: undefined numbers (a detector without targets) become null."""
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_json(data: dict, path: Path) -> None:
    """JSON with null for undefined numbers, UTF-8 (Hebrew stays readable)."""
    Path(path).write_text(json.dumps(_clean(data), ensure_ascii=False, indent=1), encoding="utf-8")


def write_examples(examples: dict[str, np.ndarray], path: Path) -> None:
    np.savez(path, **examples)  # type: ignore[arg-type]  # numpy's stub types **kwds as its own flags


def write_heads_csv(summary: dict, path: Path) -> None:
    extra = sorted({k for h in summary["heads"] for k in h} - set(HEAD_COLUMNS))  # later steps' keys
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEAD_COLUMNS + extra)
        for h in summary["heads"]:
            row = {**h, "behaviours": ";".join(h["behaviours"]), "key_chars": key_chars_text(h["key_chars"])}
            w.writerow([_fmt(row.get(c, "")) for c in HEAD_COLUMNS + extra])


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def move_file(src: Path, dst: Path) -> None:
    """Move a finished file into place (a same-folder rename when possible: never half-written)."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.move(str(src), tmp)
    os.replace(tmp, dst)
