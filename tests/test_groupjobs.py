"""The analyses of --compare/--study/--stages run in worker processes (groupjobs.py): the same comparison as in one
process, results in job order, and a failing or dying worker stops the run with one line instead of hanging."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from charlens import analyze, groupjobs
from charlens.data.errors import CharlensError, UsageError, start_shielded
from charlens.groupjobs import run_jobs
from charlens.model.checkpoint import load_checkpoint, save_checkpoint
from analyzer_helpers import make_checkpoint
from job_helpers import Dies, Fails, SleepsThenWrites, Square
from startup_helpers import ctrl_c_as_the_nth_process_starts

ROOT = Path(__file__).resolve().parents[1]

QUICK = ["--windows", "16", "--n-boot", "50", "--induction-windows", "4", "--min-windows", "4", "--quiet",
         "--no-live-model"]


def test_results_come_back_in_job_order_from_workers_and_from_this_process():
    jobs = [Square(n) for n in range(7)]
    assert run_jobs(jobs, procs=2, quiet=True) == run_jobs(jobs, procs=1, quiet=True) == [n * n for n in range(7)]


def test_an_error_in_one_worker_stops_the_others_and_is_raised(tmp_path):
    marker = tmp_path / "finished"
    with pytest.raises(UsageError, match="planted failure"):
        run_jobs([SleepsThenWrites(20, marker), Fails()], procs=2, quiet=True)
    assert not marker.exists()  # the long job was stopped, not waited for
    assert multiprocessing.active_children() == []


def test_a_worker_that_dies_is_an_error_not_a_hang():
    with pytest.raises(CharlensError, match="worker process died"):
        run_jobs([Dies(), Square(2)], procs=2, quiet=True)


def test_a_ctrl_c_held_back_while_a_worker_starts_still_stops_that_worker(monkeypatch, capfd):
    """start_shielded blocks Ctrl-C while a worker starts, so the KeyboardInterrupt is raised as it returns: the
    worker just started must be stopped with the others (it was once left behind, printing EOFError's traceback
    when analyze.py exited)."""
    starts, start_then_ctrl_c = ctrl_c_as_the_nth_process_starts(2)
    monkeypatch.setattr(groupjobs, "start_shielded", start_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_jobs([Square(n) for n in range(4)], procs=2, quiet=True)
    assert len(starts) == 2 and multiprocessing.active_children() == [] and capfd.readouterr().err == ""


@pytest.mark.parametrize("busy", [False, True])  # waiting for a job; answering one
def test_a_worker_whose_main_process_is_gone_ends_quietly(capfd, tmp_path, busy):
    marker = tmp_path / "finished"
    mine, theirs = multiprocessing.get_context("spawn").Pipe()
    worker = multiprocessing.get_context("spawn").Process(target=groupjobs._worker, args=(theirs,))
    start_shielded(worker)
    theirs.close()
    if busy:
        mine.send(SleepsThenWrites(1, marker))
    mine.close()  # as when analyze.py exits or is killed
    worker.join(timeout=60)
    assert worker.exitcode == 0 and marker.exists() == busy and capfd.readouterr().err == ""


def staged_models(tmp_path: Path) -> list[Path]:
    """Two models at step 10, each with a snapshot at step 5 (another initialization of the same architecture)."""
    paths = []
    (tmp_path / "other").mkdir()
    for seed in range(2):
        path, _ = make_checkpoint(tmp_path, seed=seed)
        other, _ = make_checkpoint(tmp_path / "other", seed=seed + 10)
        state = load_checkpoint(str(path))
        save_checkpoint({**state, "model": load_checkpoint(str(other))["model"], "iter": 5}, path.with_name(f"model{seed}.step5.pt"))
        save_checkpoint({**state, "iter": 10}, path)
        paths.append(path)
    return paths


def close(a, b) -> bool:
    """Equal JSON, numbers to 1e-6 (another thread count may move the last bits of a sum)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(close, a, b))
    if isinstance(a, float) and isinstance(b, (int, float)):
        return a == pytest.approx(b, rel=1e-6, abs=1e-9, nan_ok=True)
    return a == b


def test_workers_write_the_same_comparison_and_stages_as_one_process(tmp_path):
    paths = staged_models(tmp_path)
    outs = {procs: tmp_path / f"procs{procs}" for procs in (1, 2)}
    for procs, out in outs.items():
        argv = ["--compare", str(paths[0]), str(paths[1]), "--stages"]
        assert analyze.main([*argv, "--procs", str(procs), "--out", str(out), *QUICK]) == 0
    one, two = (json.loads((out / "compare.json").read_text(encoding="utf-8")) for out in outs.values())
    assert one["stages"]["steps"] == [5, 10]
    assert close(one, two)
    for name in ("model0", "model1"):
        stage = [json.loads((out / name / "stages" / "step5.json").read_text(encoding="utf-8")) for out in outs.values()]
        assert close(*stage) and stage[0]["heads"]


def worker_pids(pid: int) -> list[int]:
    """The analysis workers among the child processes of `pid` (not multiprocessing's resource tracker)."""
    children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children if b"spawn_main" in read_bytes(Path(f"/proc/{c}/cmdline"))]


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:  # the process has just exited
        return b""


def running(pid: int) -> bool:
    """A live process (not gone, not a zombie that nobody reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("delay", [0.0, 3.0])  # while the workers start up; once they are into their analyses
def test_ctrl_c_during_a_parallel_comparison_is_one_line_and_stops_every_worker(tmp_path, delay):
    paths = staged_models(tmp_path)
    out = tmp_path / "cmp"
    cmd = [sys.executable, str(ROOT / "analyze.py"), "--compare", *map(str, paths), "--stages", "--procs", "2",
           "--out", str(out), *QUICK, "--n-boot", "20000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    while proc.poll() is None and len(worker_pids(proc.pid)) < 2:
        time.sleep(0.05)
    workers = worker_pids(proc.pid)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
    _, stderr = proc.communicate(timeout=60)
    assert (proc.returncode, stderr) == (130, "analyze.py: interrupted; no report was written (a previous report at "
                                               "--out is unchanged)\n")
    assert not out.exists() and not [pid for pid in workers if running(pid)]
