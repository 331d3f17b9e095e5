"""analyze.py never destroys what it did not write: --out replaces only an empty folder or a previous
charlens report; user text in report.md is escaped; folders follow the user's umask; Ctrl-C is one line."""
from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from charlens import analyze, groupcli
from charlens.analysis.report.files import MARKER, check_output_dir
from analyzer_helpers import make_checkpoint

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
    (out / "stale.png").write_bytes(b"old figure")
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 0  # a report: replaced whole
    assert not (out / "stale.png").exists() and (out / "report.html").is_file()


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
    monkeypatch.setattr(groupcli, "run_analysis", interrupted)
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
