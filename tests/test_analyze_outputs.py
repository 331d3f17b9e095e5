"""analyze.py never destroys what it did not write: --out replaces only an empty folder or a previous
charlens report; user text in report.md is escaped; folders follow the user's umask; Ctrl-C is one line."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from charlens import analyze, groupjobs
from charlens.analysis.report.folder import MARKER, check_output_dir
from analyzer_helpers import make_checkpoint
from startup_helpers import ctrl_c_while_torch_loads

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--windows", "16", "--n-boot", "50", "--induction-windows", "4", "--quiet"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt"))[0]


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_of_the_users_files_is_refused_and_left_byte_for_byte(ckpt, tmp_path, capsys):
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "thesis.md").write_text("three years of work", encoding="utf-8")
    (notes / "sub" / "data.csv").write_bytes(b"\x00\x01binary")
    before = snapshot(notes)
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(notes), *QUICK]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a charlens report" in err[0]
    assert snapshot(notes) == before and sorted(p.name for p in tmp_path.iterdir()) == ["notes"]
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(ckpt.parent), *QUICK]) == 2  # the checkpoints' own folder
    assert ckpt.is_file()


def test_an_empty_folder_or_a_previous_report_is_replaced(ckpt, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 0
    assert (out / MARKER).is_file() and (out / "summary.json").is_file()
    manifest = json.loads((out / MARKER).read_text(encoding="utf-8"))
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != MARKER)
    assert sorted(manifest["files"]) == written and "report.html" in written
    assert all(manifest["files"][rel] == hashlib.sha256((out / rel).read_bytes()).hexdigest() for rel in written)


def test_a_rerun_keeps_the_users_files_in_a_report_folder(ckpt, tmp_path):
    """Issue #18 item 1: files the user added to a report (top level, in a folder of their own, in a folder the
    report wrote) survive a rerun byte for byte, as the same file (inode); a file the old report wrote and the
    new one does not is removed."""
    out = tmp_path / "r"
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 0
    mine = {"my_notes.md": b"what I think head 1.0 does", "drafts/fig.svg": b"<svg/>", "drafts/empty": b""}
    for rel, data in mine.items():
        (out / rel).parent.mkdir(exist_ok=True)
        (out / rel).write_bytes(data)
    (out / "later").mkdir()  # an empty folder of the user's
    (out / "stale.png").write_bytes(b"a figure an older report wrote")
    manifest = json.loads((out / MARKER).read_text(encoding="utf-8"))
    manifest["files"]["stale.png"] = hashlib.sha256(b"a figure an older report wrote").hexdigest()
    (out / MARKER).write_text(json.dumps(manifest), encoding="utf-8")
    before = {rel: (out / rel).stat() for rel in mine}
    old_report = (out / "report.html").stat().st_ino
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 0
    for rel, data in mine.items():
        assert (out / rel).read_bytes() == data
        assert ((out / rel).stat().st_ino, (out / rel).stat().st_mtime_ns) == (before[rel].st_ino, before[rel].st_mtime_ns)
    assert (out / "later").is_dir() and not (out / "stale.png").exists()
    assert (out / "report.html").stat().st_ino != old_report  # charlens's own files are replaced
    assert not set(mine) & set(json.loads((out / MARKER).read_text(encoding="utf-8"))["files"])  # never listed as ours
    assert debris(tmp_path) == []


def test_a_changed_report_file_or_a_clash_is_refused_and_nothing_changes(ckpt, tmp_path, capsys):
    out = tmp_path / "r"
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 0
    (out / "report.md").write_text("my edits of the report", encoding="utf-8")
    before = snapshot(out)
    capsys.readouterr()
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"analyze.py: error: {out / 'report.md'} was changed after charlens wrote it: nothing was changed; "
                   "move it out of the report folder to keep it, or choose another --out"]
    assert snapshot(out) == before
    # a file of the user's at a name the new report writes (an older report did not): refused before the swap
    (out / "report.md").unlink()
    manifest = json.loads((out / MARKER).read_text(encoding="utf-8"))
    del manifest["files"]["heads.csv"]
    (out / MARKER).write_text(json.dumps(manifest), encoding="utf-8")
    (out / "heads.csv").write_text("my table", encoding="utf-8")
    before = snapshot(out)
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"analyze.py: error: {out / 'heads.csv'} was not written by charlens, and the new report writes a file of that "
        "name: nothing was changed; move it out of the report folder, or choose another --out")
    assert snapshot(out) == before and debris(tmp_path) == []


def test_a_report_from_before_manifests_keeps_every_file_it_does_not_rewrite(ckpt, tmp_path):
    out = tmp_path / "r"
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 0
    (out / MARKER).write_text(json.dumps({"tool": "charlens", "written_by": "analyze.py"}), encoding="utf-8")
    (out / "my_notes.md").write_text("notes", encoding="utf-8")
    (out / "summary.json").write_text("{}", encoding="utf-8")
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 0
    assert (out / "my_notes.md").read_text(encoding="utf-8") == "notes"
    assert json.loads((out / "summary.json").read_text(encoding="utf-8")) != {}  # the report's own name: replaced
    assert "my_notes.md" not in json.loads((out / MARKER).read_text(encoding="utf-8"))["files"]


def test_user_text_in_report_md_is_escaped(ckpt, tmp_path):
    odd = tmp_path / "<img src=x onerror=alert(1)>.pt"
    odd.write_bytes(ckpt.read_bytes())
    out = tmp_path / "r"
    assert analyze.main(["--ckpt", str(odd), "--out", str(out), *QUICK]) == 0
    md = (out / "report.md").read_text(encoding="utf-8")
    outside_code = "".join(md.split("`")[::2])  # code spans show their text verbatim and render no HTML
    assert "<img" not in outside_code
    assert "`<img src=x onerror=alert(1)>`" in md


def test_report_folders_follow_the_umask(ckpt, tmp_path):
    old = os.umask(0o027)
    try:
        assert analyze.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "r"), *QUICK]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r").stat().st_mode) == 0o750


def test_ctrl_c_is_one_line_exit_130_and_leaves_the_previous_report(ckpt, tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 0
    before = snapshot(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(groupjobs, "run_analysis", interrupted)
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("analyze.py: interrupted") and "Traceback" not in "".join(err)
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def dead_pid() -> int:
    """The pid of a process that has exited (for debris that a killed run would leave)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def debris(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_kill_between_the_two_renames_is_undone_by_the_next_run(ckpt, tmp_path):
    out = tmp_path / "r"
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 0
    before = snapshot(out)
    pid = dead_pid()
    out.rename(tmp_path / f".r.pid{pid}.old")  # the killed run had moved the previous report aside...
    (tmp_path / f".r.pid{pid}.abcdefgh.tmp").mkdir()  # ...and left its half-built staging folder
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "elsewhere"), *QUICK]) == 0
    assert not out.exists()  # another --out does not touch it
    check_output_dir(out)  # what every run does first for its own --out
    assert snapshot(out) == before and debris(tmp_path) == []


def test_kill_9_at_random_moments_never_loses_the_report(ckpt, tmp_path):
    out = tmp_path / "r"
    cmd = [sys.executable, str(ROOT / "analyze.py"), "--ckpt", str(ckpt), "--out", str(out), *QUICK]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    rng = random.Random(0)
    for _ in range(4):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check_output_dir(out)  # the next run's first step
        assert (out / MARKER).is_file() and (out / "summary.json").is_file() and debris(tmp_path) == []


def test_md_escape_keeps_quotes_and_neutralizes_markup():
    from charlens.analysis.report.mdtext import md_escape

    assert md_escape("the language's \"own\" classes") == "the language's \"own\" classes"
    assert md_escape("<img src=x onerror=alert(1)> [a](b) *c* `d` e|f") == \
        "&lt;img src=x onerror=alert(1)&gt; \\[a\\](b) \\*c\\* \\`d\\` e\\|f"


def test_names_are_inert_in_every_markdown_context_and_on_the_console(ckpt, tmp_path, capsys):
    """Issue #18 item 12: a checkpoint named like HTML, and one whose name holds a bidi override (U+202E shows
    'b<U+202E>gnp.pt' as 'bpt.png'): report.md (links, their targets, code spans, prose) and the console show
    them as text, never as a tag, and never with a raw bidi control."""
    html_name, bidi_name = tmp_path / "<img src=x onerror=alert(1)>.pt", tmp_path / "b\u202egnp.pt"
    for path in (html_name, bidi_name):
        path.write_bytes(ckpt.read_bytes())
    out = tmp_path / "r"
    assert analyze.main(["--compare", str(html_name), str(bidi_name), "--out", str(out), *QUICK[:-1]]) == 0
    console = capsys.readouterr()
    for md in [out / "report.md", *out.glob("*/report.md")]:
        text = md.read_text(encoding="utf-8")
        outside_code = "".join(text.split("`")[::2])
        assert "<img" not in outside_code and "\u202e" not in text, md
    links = [line for line in (out / "report.md").read_text(encoding="utf-8").splitlines() if "full report" in line]
    assert links == ["- [&lt;img src=x onerror=alert(1)&gt;: full report](%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E/report.html)",
                     "- [b&lt;U+202E&gt;gnp: full report](b%E2%80%AEgnp/report.html)"], links
    assert "\u202e" not in console.out + console.err and "analysed b<U+202E>gnp" in console.err  # a line per analysis, from the workers


def test_an_error_naming_an_odd_path_is_one_line(tmp_path, capsys):
    odd = tmp_path / "two\nlines\u202e.pt"
    assert analyze.main(["--ckpt", str(odd), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == f"analyze.py: error: checkpoint not found: {tmp_path}/two<U+000A>lines<U+202E>.pt\n"


def test_ctrl_c_while_analyze_starts_is_one_line(ckpt, tmp_path):
    """Issue #18 item 5 (start-up): one line and exit 130, not a traceback."""
    done = ctrl_c_while_torch_loads("analyze.py", "--ckpt", str(ckpt), "--out", str(tmp_path / "r"))
    assert (done.returncode, done.stderr) == (130, "interrupted before analysis; nothing was written\n")
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_analysis_is_one_line_and_leaves_no_temporary_folder(ckpt, tmp_path):
    """Issue #18 item 5 (SIGTERM): the analyzer used to die silently (-15) and leave its staging folder."""
    out = tmp_path / "r"
    cmd = [sys.executable, str(ROOT / "analyze.py"), "--ckpt", str(ckpt), "--out", str(out), *QUICK[:-1], "--n-boot", "5000"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and not debris(tmp_path):  # the staging folder: the analysis has begun
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert stderr.splitlines()[-1] == ("analyze.py: terminated (SIGTERM); no report was written (a previous report "
                                       "at --out is unchanged)") and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []
