"""Progress (issue #18 item 14): bars on a terminal; elsewhere one plain line every N seconds, never bar frames."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from charlens.data import progress as progress_module
from charlens.data.progress import LineProgress, progress

ROOT = Path(__file__).resolve().parents[1]


def test_a_line_at_most_every_n_seconds(monkeypatch, capsys):
    clock = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    bar = LineProgress(total=200, desc="seed 1", unit="it", every=30)
    for _ in range(200):  # 200 steps of 0.5 s: 100 s, so lines at 30, 60 and 90 s, then one at the end
        clock[0] += 0.5
        bar.update(1)
        bar.set_postfix_str("loss=1.234")
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["seed 1: 60/200 it (30%), 2.0 it/s, 0:30 elapsed, about 1:10 left, loss=1.234",
                     "seed 1: 120/200 it (60%), 2.0 it/s, 1:00 elapsed, about 0:40 left, loss=1.234",
                     "seed 1: 180/200 it (90%), 2.0 it/s, 1:30 elapsed, about 0:10 left, loss=1.234",
                     "seed 1: 200/200 it (100%), 2.0 it/s, 1:40 elapsed, about 0:00 left, loss=1.234"]


def test_a_short_job_writes_nothing_and_a_disabled_bar_never(monkeypatch, capsys):
    bar = progress(total=5, desc="x", leave=False)  # stderr is captured: not a terminal
    assert isinstance(bar, LineProgress)
    bar.update(5)
    bar.close()
    quiet = progress(total=5, enabled=False)
    quiet.update(5)
    quiet.close()
    assert capsys.readouterr().err == ""


def test_train_py_writes_plain_lines_to_a_log(text_file, tmp_path):
    """The trainer's stderr into a file (not a terminal): no carriage return, no bar frame; progress lines instead
    ($CHARLENS_PROGRESS_EVERY=0.2 s here; 30 s by default)."""
    with open(tmp_path / "log.txt", "w") as log:
        done = subprocess.run([sys.executable, "train.py", "--text", str(text_file), "--preset", "tiny", "--max-iters", "300",
                               "--no-timeline", "--sample-chars", "0", "--out", str(tmp_path / "m.pt")],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "CHARLENS_PROGRESS_EVERY": "0.2"})
    text = (tmp_path / "log.txt").read_text()
    assert done.returncode == 0, text
    assert "\r" not in text and "\x1b" not in text and "|" not in text
    lines = text.splitlines()
    assert lines and all(re.fullmatch(r"[\d,]+/300 it \(\d+%\), [\d,.]+ it/s, \d+:\d\d elapsed(, about \d+:\d\d left)?"
                                      r"(, loss=[\d.]+, chars_s=[\d,]+)?", line) for line in lines), lines
    assert lines[-1].startswith("300/300 it (100%)")


PRINTER = """
import sys
from charlens.data.progress import write_whole_lines
write_whole_lines()
for i in range(5000):
    print(f"{sys.argv[1]} line {i} " + "x" * 40, file=sys.stderr if i % 2 else sys.stdout)
"""


def test_processes_sharing_a_log_never_merge_lines():
    """Two processes (as two seeds) printing into one pipe under PYTHONUNBUFFERED, where print writes a line's text
    and its newline separately: with write_whole_lines every line arrives whole (without it, thousands merge)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    both = ["-c", PRINTER]
    log = subprocess.run(["bash", "-c", f"'{sys.executable}' \"$@\" A & '{sys.executable}' \"$@\" B & wait", "sh",
                          *both], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         check=True).stdout.splitlines()
    assert len(log) == 10000 and all(re.fullmatch(r"[AB] line \d+ x{40}", line) for line in log)
