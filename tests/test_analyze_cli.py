"""analyze.py end to end: outputs on good input; one clear line, exit 2 and no report on bad input."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from charlens import analyze, groupjobs
from charlens.analysis.runs.inputs import AnalysisError
from analyzer_helpers import ENGLISH, make_checkpoint

QUICK = ["--windows", "16", "--n-boot", "100", "--induction-windows", "4", "--quiet"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path, _ = make_checkpoint(tmp_path_factory.mktemp("ckpt"))
    return path


def run(argv, capsys):
    rc = analyze.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_writes_the_report_files_and_prints_the_head_table(ckpt, tmp_path, capsys):
    out_dir = tmp_path / "rep"
    rc, out, err = run(["--ckpt", ckpt, "--out", out_dir, "--windows", "16", "--n-boot", "100", "--induction-windows", "4"], capsys)
    assert rc == 0, err
    assert "| layer | head | behaviour |" in out and f"{out_dir}" in out
    assert {"attention_examples.npz", "heads.csv", "report.md", "summary.json"} <= {p.name for p in out_dir.iterdir()}
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["schema"] == 6 and summary["model"]["n_layer"] == 2 and len(summary["heads"]) == 4
    assert summary["settings"]["window"] == 32 and summary["settings"]["n_boot"] == 100
    L, H = 2, 2
    for d in summary["detectors"].values():
        assert np.array(d["discovery"]["selectivity_ci"], dtype=float).shape == (L, H, 2)
        assert np.array(d["validated"]).shape == (L, H)
    assert np.array(summary["class_attention"]["discovery"]).shape == (L, H, 8, 8)
    assert np.array(summary["offset_profile"]["heldout"]).shape == (L, H, 9)
    ex = np.load(out_dir / "attention_examples.npz")
    assert ex["attention"].dtype == np.float16 and ex["attention"].shape == (4, L, H, 32, 32)
    assert ex["classes"].shape == (4, 32) and all(len(t) == 32 for t in ex["text"]) and str(ex["lang"]) == "en"
    csv_lines = (out_dir / "heads.csv").read_text(encoding="utf-8").splitlines()
    assert csv_lines[0].startswith("layer,head,behaviour,kind,candidate,validated,borderline,selectivity") and len(csv_lines) == 5
    assert "## Most salient attention patterns" in (out_dir / "report.md").read_text(encoding="utf-8")


def test_sentences_are_held_out_windows_of_their_own_length(ckpt, tmp_path, capsys):
    rc, _, err = run(["--ckpt", ckpt, "--out", tmp_path / "r", "--sentences", "And God said.", "the light was good", *QUICK], capsys)
    assert rc == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text(encoding="utf-8"))
    assert summary["texts"]["heldout"] == {"source": "--sentences", "n_windows": 2, "n_chars": 13 + 18}
    assert not any(h["validated"] for h in summary["heads"])  # two windows cannot validate anything
    assert "gave 2 window(s), fewer than --min-windows (10)" in err  # ...and the user is told so
    ex = np.load(tmp_path / "r" / "attention_examples.npz")
    assert list(ex["lengths"]) == [13, 18] and list(ex["text"]) == ["And God said.", "the light was good"]


def test_text_file_is_split_in_halves_and_save_attention_keeps_every_window(ckpt, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(ENGLISH * 4, encoding="utf-8")
    npz = tmp_path / "all.npz"
    rc, _, err = run(["--ckpt", ckpt, "--out", tmp_path / "r", "--text", text, "--save-attention", npz, *QUICK], capsys)
    assert rc == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text(encoding="utf-8"))
    assert summary["texts"]["discovery"]["source"].endswith("(first half)")
    n = summary["texts"]["discovery"]["n_windows"] + summary["texts"]["heldout"]["n_windows"]
    saved = np.load(npz)
    assert saved["attention"].shape == (n, 2, 2, 32, 32) and saved["attention"].dtype == np.float16
    assert set(saved["split"]) == {"discovery", "heldout"} and saved["classes"].shape == (n, 32)
    rows = saved["attention"].astype(np.float32).sum(-1)
    assert np.allclose(rows, 1.0, atol=2e-2)
    assert not list(tmp_path.glob("**/*.raw"))
    # a rerun replaces the file charlens wrote there; a path in folders that do not exist yet makes them
    deeper = tmp_path / "new" / "deeper" / "all.npz"
    for target in (npz, deeper):
        rc, _, err = run(["--ckpt", ckpt, "--out", tmp_path / "r", "--text", text, "--save-attention", target, *QUICK], capsys)
        assert rc == 0, err
    assert np.load(deeper)["attention"].shape == saved["attention"].shape  # (found by tests/battery.py)


@pytest.mark.parametrize("content", [b"my results", np.savez])
def test_save_attention_never_replaces_a_file_charlens_did_not_write(ckpt, tmp_path, capsys, content):
    """Issue #18 item 2: a user's file at the --save-attention path (any bytes, or an .npz of their own) is
    refused in one line before any work, and left as it was."""
    npz = tmp_path / "mine.npz"
    if content is np.savez:
        np.savez(npz, attention=np.zeros(3))
    else:
        npz.write_bytes(content)
    before = npz.read_bytes()
    rc, _, err = run(["--ckpt", ckpt, "--out", tmp_path / "r", "--save-attention", npz, *QUICK], capsys)
    assert rc == 2 and err.splitlines() == [f"analyze.py: error: refusing to overwrite {npz}: it is not an attention "
                                            "file charlens wrote (--save-attention); choose another name"]
    assert npz.read_bytes() == before and not (tmp_path / "r").exists()


def bad(argv, capsys, tmp_path, needle):
    out_dir = tmp_path / "never"
    rc, out, err = run([*argv, "--out", out_dir, *QUICK], capsys)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and needle in err, err
    assert not out_dir.exists() and not list(tmp_path.glob(".never*"))


def test_missing_checkpoint(tmp_path, capsys):
    bad(["--ckpt", tmp_path / "nope.pt"], capsys, tmp_path, "checkpoint not found")


def test_a_checkpoint_name_too_long_for_the_file_system(tmp_path, capsys):
    bad(["--ckpt", tmp_path / ("x" * 300 + ".pt")], capsys, tmp_path, ": File name too long")  # found by tests/battery.py


def test_corrupt_checkpoint(tmp_path, capsys):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint at all")
    bad(["--ckpt", broken], capsys, tmp_path, "not a readable checkpoint")


def test_text_shorter_than_a_window(ckpt, tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("And God said", encoding="utf-8")
    bad(["--ckpt", ckpt, "--text", short], capsys, tmp_path, "at least 64 are needed")


def test_characters_outside_the_vocabulary(ckpt, tmp_path, capsys):
    odd = tmp_path / "odd.txt"
    odd.write_text(ENGLISH.replace("God", "Gжd"), encoding="utf-8")
    bad(["--ckpt", ckpt, "--text", odd], capsys, tmp_path, "'ж' (U+0436)")
    bad(["--ckpt", ckpt, "--sentences", "the Zebra"], capsys, tmp_path, "'Z' (U+005A)")


def test_unknown_characters_can_be_dropped_or_replaced(ckpt, tmp_path, capsys):
    odd = tmp_path / "odd.txt"
    odd.write_text(ENGLISH.replace("God", "Gжd"), encoding="utf-8")
    for policy in ("drop", "replace"):
        rc, _, err = run(["--ckpt", ckpt, "--text", odd, "--unknown-chars", policy, "--out", tmp_path / policy, *QUICK], capsys)
        assert rc == 0, err
        summary = json.loads((tmp_path / policy / "summary.json").read_text(encoding="utf-8"))
        assert summary["settings"]["unknown_chars"] == policy
        n_chars = summary["texts"]["discovery"]["n_chars"] + summary["texts"]["heldout"]["n_chars"]
        expected = len(ENGLISH.replace("God", "Gd" if policy == "drop" else "Gжd"))
        assert n_chars == expected
        # counted, on the console and in the report, not silently
        n_odd = ENGLISH.count("God")
        share = n_odd / len(ENGLISH.replace("God", "Gжd"))
        assert summary["texts"]["unknown_chars"] == {"policy": policy, "characters": "ж", "count": n_odd, "share": share,
                                                     "foreign_letters": pytest.approx(n_odd / sum(c.isalpha() for c in
                                                                                        ENGLISH.replace("God", "Gжd"))),
                                                     "foreign": False}
        done = "removed" if policy == "drop" else "replaced by the unknown token"
        assert f"--unknown-chars {policy} {done} {n_odd} of" in err and f"({100 * share:.1f}%)" in err
        assert f"--unknown-chars {policy} {done} {n_odd} characters ({100 * share:.1f}% of the text)" in \
            (tmp_path / policy / "report.md").read_text(encoding="utf-8")
    rc, _, err = run(["--ckpt", ckpt, "--sentences", "the Zebra", "--unknown-chars", "drop", "--out", tmp_path / "s", *QUICK], capsys)
    assert rc == 0, err
    assert "removed 1 of 9 characters" in err


def test_a_text_in_another_alphabet_is_refused_or_warned(ckpt, tmp_path, capsys):
    hebrew = tmp_path / "he.txt"
    hebrew.write_text("בראשית ברא אלהים את השמים ואת הארץ God\n" * 20, encoding="utf-8")
    bad(["--ckpt", ckpt, "--text", hebrew], capsys, tmp_path, "of its letters are outside the model's alphabet")
    rc, _, err = run(["--ckpt", ckpt, "--text", hebrew, "--unknown-chars", "drop", "--out", tmp_path / "he", *QUICK], capsys)
    assert rc == 0 and "analyze.py: warning:" in err and "the text is not in the model's language" in err
    summary = json.loads((tmp_path / "he" / "summary.json").read_text(encoding="utf-8"))
    assert summary["texts"]["unknown_chars"]["foreign"] and summary["texts"]["unknown_chars"]["foreign_letters"] > 0.8
    assert "**Warning:**" in (tmp_path / "he" / "report.md").read_text(encoding="utf-8")


def test_a_detector_without_enough_windows_says_why(ckpt, tmp_path, capsys):
    rc, _, err = run(["--ckpt", ckpt, "--out", tmp_path / "r", *QUICK], capsys)
    assert rc == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text(encoding="utf-8"))
    short = [n for n, d in summary["detectors"].items() if min(d["discovery"]["n_scored"], d["heldout"]["n_scored"]) < 10]
    assert short  # 16 windows of 32 characters: some detectors have targets in fewer than 10 of them
    report = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    for name in short:
        assert f"analyze.py: note: {name}: only " in err and f"- {name}: only " in report


def test_empty_sentences(ckpt, tmp_path, capsys):
    bad(["--ckpt", ckpt, "--sentences", "", "  "], capsys, tmp_path, "at least one non-empty sentence")


def test_unwritable_out(ckpt, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, _, err = run(["--ckpt", ckpt, "--out", blocker / "sub", *QUICK], capsys)
    assert rc == 2 and "cannot write the report folder" in err and len(err.strip().splitlines()) == 1
    assert blocker.read_text() == "x"


def test_a_failure_mid_run_leaves_the_previous_report_untouched(ckpt, tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "rep"
    assert run(["--ckpt", ckpt, "--out", out_dir, *QUICK], capsys)[0] == 0
    before = (out_dir / "summary.json").read_bytes()

    def explode(*args, **kwargs):
        raise AnalysisError("simulated failure")
    monkeypatch.setattr(groupjobs, "run_analysis", explode)
    rc, _, err = run(["--ckpt", ckpt, "--out", out_dir, *QUICK], capsys)
    assert rc == 2 and "simulated failure" in err
    assert (out_dir / "summary.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no staging folder left behind


def test_a_failed_final_rename_restores_the_previous_report(ckpt, tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "rep"
    assert run(["--ckpt", ckpt, "--out", out_dir, *QUICK], capsys)[0] == 0
    before = (out_dir / "summary.json").read_bytes()
    replace = os.replace

    def refuse_staged(src, dst):
        if Path(src).is_dir() and Path(src).name.endswith(".tmp"):  # the staged report folder
            raise OSError(errno.EBUSY, "Device or resource busy")
        replace(src, dst)
    monkeypatch.setattr(os, "replace", refuse_staged)
    rc, _, err = run(["--ckpt", ckpt, "--out", out_dir, *QUICK], capsys)
    assert rc == 2 and "cannot write the report folder" in err and len(err.strip().splitlines()) == 1
    assert (out_dir / "summary.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]


def test_bad_flag_values_are_refused_before_any_work(ckpt, tmp_path, capsys):
    bad(["--ckpt", ckpt, "--min-selectivity", "1.5"], capsys, tmp_path, "--min-selectivity must be in (0, 1)")
    bad(["--ckpt", ckpt, "--save-attention", tmp_path / "x.txt"], capsys, tmp_path, "needs a .npz file name")


@pytest.mark.parametrize("flag, value, needle", [
    ("--n-boot", "1000000000", "--n-boot must be in 1..100,000"),
    ("--induction-windows", "100000000", "--induction-windows must be in 1..10,000"),
    ("--windows", "0", "--windows must be in 1..100,000"),
    ("--seed", "-1", "--seed must be in 0..4,294,967,295"),
    ("--ablation-tol", "nan", "--ablation-tol must be a finite number >= 0"),
    ("--alpha", "nan", "--alpha must be in (0, 1)"),
])
def test_every_numeric_flag_has_a_range(ckpt, tmp_path, capsys, flag, value, needle):
    rc, _, err = run(["--ckpt", ckpt, "--out", tmp_path / "never", *QUICK, flag, value], capsys)  # the last value counts
    assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("flag, path, problem", [
    ("--out", "{tmp}/" + "r" * 300, "cannot write the report folder {tmp}/rrr"),  # issue #18 item 7
    ("--out", "/proc/report", "cannot write the report folder /proc/report: "),  # item 6
    ("--save-attention", "{tmp}/" + "a" * 300 + ".npz", "cannot write --save-attention {tmp}/aaa"),
    ("--save-attention", "/proc/a.npz", "cannot write --save-attention /proc/a.npz: "),
])
def test_an_out_path_that_cannot_be_written_is_refused_before_any_work(ckpt, tmp_path, capsys, flag, path, problem):
    path = path.format(tmp=tmp_path)
    argv = ["--ckpt", ckpt, "--out", tmp_path / "r", *QUICK, flag, path]  # the last --out counts
    rc, _, err = run(argv, capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and problem.format(tmp=tmp_path) in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_model_with_a_one_character_context_is_refused_in_one_line(tmp_path, capsys):
    one, _ = make_checkpoint(tmp_path, block_size=1)
    rc, _, err = run(["--ckpt", one, "--out", tmp_path / "r", *QUICK], capsys)
    assert rc == 2 and "there is no attention to analyse" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
