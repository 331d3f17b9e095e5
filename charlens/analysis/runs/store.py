"""Attention kept from a streaming run: every window for --save-attention (memory-mapped, so storing
does not hold the windows in memory) and the few example windows the report shows.

A --save-attention file is an .npz marked as charlens's (its `format` array); an existing file at that path
is replaced only if it is one (or has exactly the arrays such files held before the mark).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from charlens.analysis.runs.extract import AttentionBatch
from charlens.analysis.runs.results import Examples
from charlens.data.charclasses import CLASS_NAMES
from charlens.data.errors import OutputError
from charlens.model.atomic import check_can_write, sweep_stale_temps, temp_prefix

ATTENTION_FORMAT = "charlens attention 1"
LEGACY_ARRAYS = {"attention", "text", "classes", "class_names", "lang", "split", "lengths"}


def is_attention_file(path: Path) -> bool:
    """Whether `path` is a --save-attention file charlens wrote."""
    try:
        with zipfile.ZipFile(path) as z:
            names = {n.removesuffix(".npy") for n in z.namelist()}
        if names == LEGACY_ARRAYS:
            return True
        with np.load(path, allow_pickle=False) as data:
            return "format" in names and str(data["format"]) == ATTENTION_FORMAT
    except (OSError, ValueError, zipfile.BadZipFile, KeyError):
        return False


def check_attention_target(path: Path) -> None:
    """Before any work: --save-attention can write `path`, and replaces no file charlens did not write."""
    check_can_write(path, "--save-attention")  # (first: it names a path that cannot even be looked at)
    if (path.exists() or path.is_symlink()) and not is_attention_file(path):
        raise OutputError(f"refusing to overwrite {path}: it is not an attention file charlens wrote "
                          "(--save-attention); choose another name")


def place_file(src: Path, dst: Path) -> None:
    """Move a finished file to `dst` through a temporary file beside it (never half-written there); missing
    folders on the way are made, as for every output."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(dst)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(dst), suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        shutil.move(str(src), tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AttentionStore:
    """--save-attention: every analyzed window's attention, float16, written to a memory map so that
    storing does not hold the windows in memory; zero-padded when windows differ in length."""

    def __init__(self, path: Path, n: int, L: int, H: int, T: int) -> None:
        self.path = path
        self.raw = path.with_suffix(".raw")
        self.attention = np.lib.format.open_memmap(self.raw, mode="w+", dtype=np.float16, shape=(n, L, H, T, T))
        self.texts: list[str] = []
        self.classes = np.full((n, T), -1, dtype=np.int8)
        self.split: list[str] = []

    def add(self, batch: AttentionBatch, split: str) -> None:
        k, (B, _, _, T, _) = len(self.texts), batch.attention.shape
        self.attention[k:k + B, :, :, :T, :T] = batch.attention.numpy().astype(np.float16)
        self.classes[k:k + B, :T] = batch.classes.numpy()
        self.texts += batch.texts
        self.split += [split] * B

    def close(self, lang: str) -> None:
        self.attention.flush()
        np.savez(self.path, format=np.array(ATTENTION_FORMAT), attention=self.attention, text=np.array(self.texts),
                 classes=self.classes, class_names=np.array(CLASS_NAMES), lang=np.array(lang),
                 split=np.array(self.split), lengths=np.array([len(t) for t in self.texts]))
        del self.attention
        self.raw.unlink()


def examples_of(batches: list[AttentionBatch], n: int, lang: str) -> Examples:
    """The first `n` windows of `batches` as attention_examples.npz arrays (shorter windows zero-padded)."""
    wins = [w for b in batches for w in b.windows()][:n]
    T = max(len(t) for _, t, _ in wins)
    L, H = wins[0][0].shape[:2]
    att = np.zeros((len(wins), L, H, T, T), dtype=np.float16)
    cls = np.full((len(wins), T), -1, dtype=np.int8)
    for k, (a, t, c) in enumerate(wins):
        att[k, :, :, : len(t), : len(t)] = a.numpy()
        cls[k, : len(t)] = c
    return {"attention": att, "text": np.array([t for _, t, _ in wins]), "classes": cls,
            "class_names": np.array(CLASS_NAMES), "lang": np.array(lang), "lengths": np.array([len(t) for _, t, _ in wins])}
