"""Several seeds (`--seeds`): names, equality with single runs, skip and resume on a rerun, Ctrl-C, bad flags."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from charlens import train
from charlens.data.corpora import bible_corpus
from charlens.training import seeds
from charlens.training.seeds import seed_list, seed_path
from startup_helpers import ctrl_c_as_the_nth_process_starts

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def args(text_file: Path, out: Path, *extra: str) -> list[str]:
    return ["--text", str(text_file), "--preset", "tiny", "--max-iters", "20", "--eval-interval", "10",
            "--out", str(out), "--sample-chars", "0", *extra]


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def assert_same_weights(a: Path, b: Path, atol: float = 0.0) -> None:
    wa, wb = weights(a), weights(b)
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=atol, msg=k)


def test_seed_list_and_names():
    assert seed_list([3]) == [0, 1, 2] and seed_list([5, 7]) == [5, 7] and seed_list([4, 0]) == [4, 0]
    assert seed_path(Path("checkpoints/en.pt"), 2) == Path("checkpoints/en_s2.pt")


@pytest.mark.parametrize("procs", ["1", "2"])  # one after another; side by side in spawned processes
def test_each_seed_equals_a_single_run_with_that_seed(text_file, tmp_path, procs, capsys):
    assert train.main(args(text_file, tmp_path / "m.pt", "--seeds", "2", "--seed-procs", procs)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "m_s0.log.jsonl", "m_s0.loss.png", "m_s0.pt", "m_s1.log.jsonl", "m_s1.loss.png", "m_s1.pt"]
    for seed in (0, 1):
        single = tmp_path / "single" / f"{seed}.pt"
        assert train.main(args(text_file, single, "--seed", str(seed))) == 0
        assert torch.load(tmp_path / f"m_s{seed}.pt", weights_only=True)["train_args"]["seed"] == seed
        assert_same_weights(single, tmp_path / f"m_s{seed}.pt", atol=0.0 if procs == "1" else 1e-6)
    if procs == "1":
        printed = capsys.readouterr().out
        assert "seed 0: done" in printed and "seed 1: done" in printed


def test_rerun_skips_finished_seeds_and_resumes_interrupted_ones(text_file, tmp_path, capsys):
    base = tmp_path / "m.pt"
    assert train.main(args(text_file, tmp_path / "m_s0.pt", "--seed", "0")) == 0
    assert train.main(args(text_file, tmp_path / "m_s1.pt", "--seed", "1"), stop_at=7) == train.INTERRUPTED
    finished = weights(tmp_path / "m_s0.pt")
    capsys.readouterr()
    assert train.main(args(text_file, base, "--seeds", "2", "--seed-procs", "1")) == 0
    out = capsys.readouterr().out
    assert "seed 0: " in out and "already finished 20 steps; skipped" in out and "seed 1: done" in out
    assert all(torch.equal(v, weights(tmp_path / "m_s0.pt")[k]) for k, v in finished.items())  # not retrained
    assert train.main(args(text_file, tmp_path / "ref.pt", "--seed", "1")) == 0
    assert_same_weights(tmp_path / "ref.pt", tmp_path / "m_s1.pt")  # resumed bit-exactly


def test_ctrl_c_leaves_every_seed_resumable(text_file, tmp_path):
    base = tmp_path / "m.pt"
    cmd = [sys.executable, "train.py", *args(text_file, base, "--seeds", "2", "--max-iters", "100000")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_until_started(proc, 2)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C: the whole process group
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == train.INTERRUPTED, stderr
    assert "Traceback" not in stderr and stderr.count("interrupted after step") == 2
    for seed in (0, 1):
        assert 1 <= torch.load(seed_path(base, seed), weights_only=True)["iter"] < 100000


def wait_until_started(proc: subprocess.Popen, n: int) -> None:
    """Read the run's output until n seeds have printed their start line (each prints one before its first step;
    on a loaded machine one seed may log its first evaluation before the other has started). Counted in the text,
    not per line: should two lines ever merge, a count of lines would wait forever."""
    seen = []
    while sum(line.count("parameters") for line in seen) < n:
        line = proc.stdout.readline()
        assert line, f"the run ended before {n} seeds started: {seen}"
        seen.append(line)


def start_seeds(text_file: Path, base: Path, n: int, procs: int) -> subprocess.Popen:
    """train.py --seeds n --seed-procs procs in a process group of its own, as a terminal starts it."""
    cmd = [sys.executable, "train.py", *args(text_file, base, "--seeds", str(n), "--seed-procs", str(procs),
                                             "--max-iters", "100000", "--no-compile")]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_more_seeds_than_processes_stop_on_a_signal_without_hanging(text_file, tmp_path):
    """Issue #18 item 4: --seeds 3 in 2 processes, SIGTERM to the process group while seeds 0 and 1 train: the
    parent (which used to spin forever here) exits with 143 once both saved, naming seed 2 as not started.
    (Ctrl-C takes the same path: test_ctrl_c_leaves_every_seed_resumable.)"""
    signum, status, how = signal.SIGTERM, 143, "terminated (SIGTERM)"
    base = tmp_path / "m.pt"
    proc = start_seeds(text_file, base, 3, 2)
    wait_until_started(proc, 2)
    os.killpg(proc.pid, signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr and stderr.count(f"{how} after step") == 2
    assert stderr.splitlines()[-1] == f"{how}: seeds 0, 1 saved; seed 2 not started; rerun the same command to continue"
    assert seed_path(base, 0).is_file() and seed_path(base, 1).is_file() and not seed_path(base, 2).exists()


def spawned_children(pid: int) -> int:
    """How many seed processes (multiprocessing's spawn_main) `pid` has started (Linux /proc)."""
    found = 0
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            found += b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            pass
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the seed processes through Linux's /proc")
def test_ctrl_c_while_the_seeds_start_is_one_line_per_process(text_file, tmp_path):
    """Ctrl-C while the seed processes import torch (seconds): no traceback from any of them, exit 130, no seed
    has a checkpoint, each is named as not started."""
    base = tmp_path / "m.pt"
    proc = start_seeds(text_file, base, 3, 2)
    while proc.poll() is None and spawned_children(proc.pid) < 2:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == train.INTERRUPTED and "Traceback" not in stderr, stderr
    assert stderr.splitlines()[-1] == "interrupted: seeds 0, 1, 2 not started; rerun the same command to continue"
    assert not list(tmp_path.iterdir())


def test_a_ctrl_c_held_back_while_a_seed_starts_is_waited_for(text_file, tmp_path, monkeypatch, capsys):
    """start_shielded blocks Ctrl-C while a seed's process starts, so the KeyboardInterrupt is raised as it
    returns: that seed must be counted as running and waited for (it was once left behind, untracked)."""
    starts, start_then_ctrl_c = ctrl_c_as_the_nth_process_starts(2)
    monkeypatch.setattr(seeds, "start_shielded", start_then_ctrl_c)
    assert train.main(args(text_file, tmp_path / "m.pt", "--seeds", "2", "--seed-procs", "2")) == train.INTERRUPTED
    assert [p.exitcode for p in starts] == [train.INTERRUPTED] * 2 and multiprocessing.active_children() == []
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert err.splitlines()[-1] == "interrupted: seeds 0, 1 not started; rerun the same command to continue"


@pytest.mark.parametrize("extra, message", [
    (["--seeds", "0"], "--seeds N trains N seeds (0..N-1): N must be in 1..1,000, got 0"),
    (["--seeds", "1000000000000"], "N must be in 1..1,000, got 1000000000000"),  # issue #18 item 8
    (["--seeds", "1", "-1"], "--seeds: every seed must be an integer in [0, 9,223,372,036,854,775,806], got -1"),
    (["--seeds", *map(str, range(1001))], "--seeds lists 1,001 seeds; at most 1,000"),
    (["--seeds", "1", "1"], "lists a seed twice"),
    (["--seeds", "2", "--seed", "3"], "give one of them"),
    (["--seeds", "2", "--seed-procs", "0"], "--seed-procs must be in 1..256"),
])
def test_bad_seed_flags_fail_with_one_line(text_file, tmp_path, extra, message, capsys):
    assert train.main(args(text_file, tmp_path / "m.pt", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not list(tmp_path.iterdir())


def test_a_seed_checkpoint_of_another_corpus_is_refused_before_any_work(text_file, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text(bible_corpus("en").train[50_000:90_000], encoding="utf-8")
    assert train.main(args(other, tmp_path / "m_s1.pt", "--seed", "1", "--max-iters", "2")) == 0
    capsys.readouterr()
    assert train.main(args(text_file, tmp_path / "m.pt", "--seeds", "2")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "m_s1.pt was trained on another corpus" in err[0], err
    assert not (tmp_path / "m_s0.pt").exists()
