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
    return {p.name: (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


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
    assert train.main(tiny(text, "--out", str(folder / "first.pt"))) == 0  # a charlens log and plot, moved beside m.pt
    (folder / "first.loss.png").rename(folder / "m.loss.png")
    capsys.readouterr()
    line = refused(tiny(text, "--out", str(out)), folder, capsys)
    assert line == (f"train.py: error: refusing to overwrite {folder / 'm.loss.png'}: no checkpoint {out} is beside it, "
                    "so charlens may not have written it; add --overwrite to replace it")
    assert train.main(tiny(text, "--out", str(out), "--overwrite")) == 0
    assert (folder / "m.loss.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name, content", [("m.loss.png", b"someone's figure"), ("m.log.jsonl", b'{"my": "notes"}\n'),
                                           ("m.loss.png", None)])
def test_a_log_or_plot_charlens_did_not_write_is_refused_even_with_overwrite(folder, capsys, name, content):
    """Only a charlens log (JSON records with a kind) or loss plot (a PNG marked as charlens's) is replaced."""
    text, out = folder / "corpus.txt", folder / "m.pt"
    assert train.main(tiny(text, "--out", str(out))) == 0
    if content is None:  # a PNG, but not one charlens wrote
        from matplotlib.figure import Figure
        Figure().savefig(folder / name, format="png", metadata={"Software": "my plotting tool"})
    else:
        (folder / name).write_bytes(content)
    capsys.readouterr()
    kind = "loss plot" if name.endswith(".png") else "training log"
    for extra in ([], ["--overwrite"]):
        line = refused(tiny(text, "--out", str(out), *extra), folder, capsys)
        assert line == (f"train.py: error: refusing to overwrite {folder / name}: it is not a charlens {kind}; move it "
                        "away or choose another --out")


def test_a_users_file_at_a_snapshot_path_is_never_replaced(folder, capsys):
    """Issue #18 item 3: --snapshots 2 --out snap.pt writes snap.step<k>.pt; a user's file there is refused with or
    without --overwrite; another run's snapshot needs --overwrite; a resumed run rewrites its own."""
    text, out = folder / "corpus.txt", folder / "snap.pt"
    flags = ("--max-iters", "6", "--snapshots", "2")  # snapshots at steps 2 and 6
    (folder / "snap.step2.pt").write_text("a user's file", encoding="utf-8")
    for extra in ([], ["--overwrite"]):
        line = refused(tiny(text, "--out", str(out), *flags, *extra), folder, capsys)
        assert line == (f"train.py: error: refusing to overwrite {folder / 'snap.step2.pt'}: it exists and is not a "
                        "loadable charlens checkpoint; choose another --out")
    (folder / "snap.step2.pt").unlink()
    assert train.main(tiny(text, "--out", str(folder / "other.pt"), *flags)) == 0
    (folder / "other.step2.pt").rename(folder / "snap.step2.pt")  # another run's snapshot
    capsys.readouterr()
    line = refused(tiny(text, "--out", str(out), *flags), folder, capsys)
    assert line.startswith(f"train.py: error: {folder / 'snap.step2.pt'} already holds a checkpoint of another run")
    assert train.main(tiny(text, "--out", str(out), *flags, "--overwrite")) == 0
    assert train.main(["--resume", str(out), "--max-iters", "8", "--snapshots", "3", "--sample-chars", "0"]) == 0


def test_an_existing_folder_as_out_is_named_as_the_problem(folder, capsys):
    """Issue #18 item 10."""
    (folder / "ckpts").mkdir()
    line = refused(tiny(folder / "corpus.txt", "--out", str(folder / "ckpts")), folder, capsys)
    assert line == f"train.py: error: cannot write the checkpoint {folder / 'ckpts'}: it is a folder; give a file name inside it"


@pytest.mark.parametrize("out, problem", [
    ("/proc/x.pt", "No such file or directory (a file could not be created in /proc)"),  # item 6: the kernel's folder
    ("{folder}/" + "n" * 300 + ".pt", "a name in it is too long (303 bytes; this file system takes 255, and charlens adds"),
    # the checkpoint's own temporary name fits (whatever the pid's 2 to 7 digits), the log's does not
    ("{folder}/" + "n" * 227 + ".pt", "a name in it is too long (237 bytes; this file system takes 255, and charlens adds"),
    ("{folder}/corpus.txt/m.pt", "{folder}/corpus.txt is a file, not a folder"),
])
def test_an_unwritable_out_is_refused_before_training(folder, capsys, out, problem):
    """Issue #18 items 6 and 7: the check writes a real temporary file, named as the longest of the run's files
    (here the log, 7 characters longer than the checkpoint), so what would fail at the first save fails now."""
    out = out.format(folder=folder)
    line = refused(tiny(folder / "corpus.txt", "--out", out), folder, capsys)
    assert line.startswith("train.py: error: cannot write the ") and problem.format(folder=folder) in line, line
