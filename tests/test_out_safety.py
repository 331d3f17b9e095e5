"""Data loss (issue #14, class 1): train.py --out never replaces the corpus or a file that is not a
charlens checkpoint, and replaces another run's checkpoint only with --overwrite. A refusal is one
line, exit status 2, and leaves every byte (and the modification time) of every file in place."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from charlens import train
from charlens.data.corpora import bible_corpus

torch.set_num_threads(1)


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / "corpus.txt").write_text(bible_corpus("en").train[:40_000], encoding="utf-8")
    return tmp_path


def tiny(text: Path, *extra: str) -> list[str]:
    return ["--text", str(text), "--preset", "tiny", "--max-iters", "2", "--sample-chars", "0", *extra]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def refused(argv: list[str], folder: Path, capsys) -> str:
    """Run train.py expecting a refusal; return its one line after checking nothing changed."""
    before = snapshot(folder)
    assert train.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert snapshot(folder) == before
    return err[0]


def test_out_on_the_text_file_is_refused(folder, capsys):
    text = folder / "corpus.txt"
    line = refused(tiny(text, "--out", str(text)), folder, capsys)
    assert line == f"train.py: error: refusing to write {text}: it is the corpus file {text}; choose another --out"
    linked = folder / "link.pt"
    os.link(text, linked)  # another name for the same file (same inode)
    line = refused(tiny(text, "--out", str(linked), "--overwrite"), folder, capsys)
    assert line == f"train.py: error: refusing to write {linked}: it is the corpus file {text}; choose another --out"


def test_a_log_beside_out_that_is_the_text_file_is_refused(folder, capsys):
    text = folder / "notes.log.jsonl"
    (folder / "corpus.txt").rename(text)
    line = refused(tiny(text, "--out", str(folder / "notes.pt"), "--overwrite"), folder, capsys)
    assert line == f"train.py: error: refusing to write {text}: it is the corpus file {text}; choose another --out"


def test_a_foreign_file_is_refused_even_with_overwrite(folder, capsys):
    foreign = folder / "thesis.pt"
    foreign.write_text("two years of work\n")
    for extra in ([], ["--overwrite"]):
        line = refused(tiny(folder / "corpus.txt", "--out", str(foreign), *extra), folder, capsys)
        assert line == (f"train.py: error: refusing to overwrite {foreign}: it exists and is not a loadable charlens "
                        "checkpoint; choose another --out")


def test_another_runs_checkpoint_needs_overwrite(folder, capsys):
    text, out = folder / "corpus.txt", folder / "m.pt"
    assert train.main(tiny(text, "--out", str(out))) == 0
    capsys.readouterr()
    for argv in (tiny(text, "--out", str(out)), tiny(text, "--out", str(out), "--lr", "0.01")):  # same or other settings
        line = refused(argv, folder, capsys)
        assert line == (f"train.py: error: {out} already holds a checkpoint (step 2); continue it with --resume {out}, "
                        "or add --overwrite to replace it")
    assert train.main(tiny(text, "--out", str(out), "--lr", "0.01", "--overwrite")) == 0
    assert torch.load(out, weights_only=True)["train_args"]["lr"] == 0.01
    assert train.main(["--resume", str(out), "--max-iters", "3", "--sample-chars", "0"]) == 0  # in place: no flag


def test_a_log_or_plot_without_its_checkpoint_needs_overwrite(folder, capsys):
    text, out = folder / "corpus.txt", folder / "m.pt"
    (folder / "m.loss.png").write_bytes(b"someone's figure")
    line = refused(tiny(text, "--out", str(out)), folder, capsys)
    assert line == (f"train.py: error: refusing to overwrite {folder / 'm.loss.png'}: no checkpoint {out} is beside it, "
                    "so charlens may not have written it; add --overwrite to replace it")
    assert train.main(tiny(text, "--out", str(out), "--overwrite")) == 0
    assert (folder / "m.loss.png").read_bytes()[:4] == b"\x89PNG"
