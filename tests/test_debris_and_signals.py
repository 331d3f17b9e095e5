"""Debris and signals (issue #14, class 4): temporary files of killed runs are removed by the next run,
SIGTERM saves like Ctrl-C, Ctrl-C during start-up is one line, and the non-finite-loss message names
only a checkpoint this run wrote."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from charlens import train
from charlens.model.atomic import LEGACY_TEMP_AGE_S, atomic_write, sweep_stale_temps
from charlens.model.transformer import TransformerLM

ROOT = Path(__file__).resolve().parents[1]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
torch.set_num_threads(1)


def tiny(text_file: Path, out: Path, *extra: str) -> list[str]:
    return ["--text", str(text_file), "--preset", "tiny", "--out", str(out), "--sample-chars", "0", *extra]


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_temp_files_of_dead_writers_only(tmp_path):
    target = tmp_path / "m.pt"
    dead = tmp_path / f".m.pt.pid{dead_pid()}.abcd1234.tmp"
    alive = tmp_path / f".m.pt.pid{os.getpid()}.abcd1234.tmp"
    old_legacy, new_legacy = tmp_path / ".m.pt.oldold12.tmp", tmp_path / ".m.pt.newnew12.tmp"
    other = tmp_path / f".n.pt.pid{dead_pid()}.abcd1234.tmp"  # another file's temp: not ours to judge here
    for p in (dead, alive, old_legacy, new_legacy, other):
        p.write_bytes(b"partial")
    report = tmp_path / "report"  # a folder staged beside its final place by a writer that died
    staged = tmp_path / f".report.pid{dead_pid()}.abcd1234.tmp"
    (staged / "figures").mkdir(parents=True)
    (staged / "figures" / "a.png").write_bytes(b"png")
    assert sweep_stale_temps(report) == [staged] and not staged.exists()
    hour_ago = time.time() - LEGACY_TEMP_AGE_S - 60
    os.utime(old_legacy, (hour_ago, hour_ago))
    assert sorted(sweep_stale_temps(target)) == sorted([dead, old_legacy])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (alive, new_legacy, other))
    atomic_write(tmp_path / "n.pt", lambda f: f.write(b"done"))  # writing n.pt sweeps n.pt's debris
    assert not other.exists() and (tmp_path / "n.pt").read_bytes() == b"done"


def temp_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_kill_9_debris_is_removed_by_the_next_run(text_file, tmp_path):
    """SIGKILL train.py while it writes a checkpoint, log or plot (a temporary file exists), then run
    again: the resumed run removes every temporary file the dead one left."""
    out = tmp_path / "m.pt"
    debris: list[Path] = []
    for _ in range(5):  # the kill can land just after a rename; it almost never does twice
        proc = subprocess.Popen([sys.executable, "train.py", *tiny(text_file, out, "--max-iters", "100000", "--eval-interval",
                                                                  "1", *(["--overwrite"] if out.exists() else []))],
                                cwd=ROOT, env=ONE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and temp_files(tmp_path):
                proc.kill()
                break
        proc.wait()
        debris = temp_files(tmp_path)
        if debris:
            break
    assert debris and all(f".pid{proc.pid}." in p.name for p in debris), debris
    assert train.main(["--resume", str(out), "--sample-chars", "0"], stop_at=torch.load(
        out, weights_only=True)["iter"] + 1) == train.INTERRUPTED
    assert temp_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.log.jsonl", "m.loss.png", "m.pt"]


def test_sigterm_saves_like_ctrl_c(text_file, tmp_path):
    out = tmp_path / "m.pt"
    proc = subprocess.Popen([sys.executable, "train.py", *tiny(text_file, out, "--max-iters", "1000000")],
                            cwd=ROOT, env=ONE_THREAD, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "parameters" in proc.stdout.readline()  # printed just before the first step
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    state = torch.load(out, weights_only=True)
    assert 1 <= state["iter"] < 1_000_000
    assert stderr.splitlines()[-1] == (f"terminated (SIGTERM) after step {state['iter']}; checkpoint saved to {out}; "
                                       f"continue with --resume {out}")
    assert "Traceback" not in stderr


# Runs train.py as a script in which Ctrl-C arrives as train.py starts importing torch. (The KeyboardInterrupt is
# raised by the import hook itself: a real SIGINT is handled wherever the interpreter next checks for signals,
# which may be inside torch's own start-up code.)
DURING_IMPORT = """
import builtins, runpy, sys
real_import = builtins.__import__
def interrupting_import(name, *args, **kwargs):
    if name == "torch":
        builtins.__import__ = real_import
        raise KeyboardInterrupt
    return real_import(name, *args, **kwargs)
builtins.__import__ = interrupting_import
sys.argv = ["train.py", "--lang", "en", "--out", sys.argv[1]]
runpy.run_path("train.py", run_name="__main__")
"""


def test_ctrl_c_while_torch_loads_gives_one_line(tmp_path):
    out = tmp_path / "m.pt"
    done = subprocess.run([sys.executable, "-c", DURING_IMPORT, str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stderr) == (130, "interrupted before training; nothing was written\n")
    assert not out.exists()


def test_ctrl_c_and_sigterm_during_set_up_give_one_line(text_file, tmp_path, monkeypatch, capsys):
    def interrupted(self, config):
        raise KeyboardInterrupt

    monkeypatch.setattr(TransformerLM, "__init__", interrupted)
    out = tmp_path / "m.pt"
    assert train.main(tiny(text_file, out)) == train.INTERRUPTED
    assert capsys.readouterr().err.splitlines() == ["interrupted; this run wrote no checkpoint"]

    def terminated(self, config):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(TransformerLM, "__init__", terminated)
    assert train.main(tiny(text_file, out)) == 143
    assert capsys.readouterr().err.splitlines() == ["interrupted; this run wrote no checkpoint"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # main restores the handler it replaced
    assert not out.exists()


def poison_training_step(monkeypatch, at: int) -> None:
    forward, calls = TransformerLM.forward, []

    def poisoned(self, idx, targets=None):
        logits, loss = forward(self, idx, targets)
        if self.training:
            calls.append(1)
            if len(calls) == at:
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(TransformerLM, "forward", poisoned)


def test_non_finite_loss_never_names_an_older_file_as_this_runs_checkpoint(text_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "m.pt"
    assert train.main(tiny(text_file, out, "--max-iters", "4")) == 0  # an older, finished run
    before = out.read_bytes()
    poison_training_step(monkeypatch, at=5)  # before this run's first save (step 10)
    capsys.readouterr()
    assert train.main(tiny(text_file, out, "--max-iters", "40", "--eval-interval", "10", "--overwrite")) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: the training loss at step 5 is nan (try a lower --lr); this run wrote no checkpoint ({out} is as it was)")
    assert out.read_bytes() == before


def test_non_finite_loss_names_the_step_this_run_saved(text_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "m.pt"
    poison_training_step(monkeypatch, at=15)
    assert train.main(tiny(text_file, out, "--max-iters", "40", "--eval-interval", "10")) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: the training loss at step 15 is nan (try a lower --lr); kept the last good checkpoint this run wrote: "
        f"{out} (step 10)")
    assert torch.load(out, weights_only=True)["iter"] == 10
