"""Several processes under torchrun (gloo on CPU) take the same steps as one process with the same global batch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from charlens import train
from charlens.model.checkpoint import load_checkpoint
from charlens.training import ddp

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           "train.py", *args, "--sample-chars", "0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def assert_close(a: Path, b: Path) -> None:
    sa, sb = (torch.load(p, weights_only=True) for p in (a, b))
    assert sa["iter"] == sb["iter"]
    for k, v in sa["model"].items():
        torch.testing.assert_close(sb["model"][k], v, rtol=0, atol=1e-5, msg=k)


def test_two_processes_equal_one_process_and_resume_across_process_counts(text_file, tmp_path):
    # float32: under bfloat16 autocast (the default on a CPU with native bfloat16) a half batch rounds differently.
    args = ["--text", str(text_file), "--preset", "tiny", "--max-iters", "20", "--batch-size", "8", "--eval-interval", "10",
            "--dtype", "float32"]
    one, two, part = tmp_path / "one.pt", tmp_path / "two" / "two.pt", tmp_path / "part.pt"
    assert train.main([*args, "--out", str(one), "--sample-chars", "0"]) == 0

    run = torchrun(2, *args, "--out", str(two))
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("done: validation loss") == 1  # rank 0 alone prints, writes the log and the plot
    assert sorted(p.name for p in two.parent.iterdir()) == ["two.log.jsonl", "two.loss.png", "two.pt"]
    assert_close(one, two)
    final = lambda p: torch.load(p, weights_only=True)["history"][-1]["val_loss"]
    assert final(two) == pytest.approx(final(one), abs=1e-5)  # the whole-split loss, sharded over 2 processes
    # Interrupted in one process at step 10, resumed under two: the same weights as the uninterrupted run.
    assert train.main([*args, "--out", str(part), "--sample-chars", "0"], stop_at=10) == train.INTERRUPTED
    run = torchrun(2, "--resume", str(part))
    assert run.returncode == 0, run.stderr[-2000:]
    assert torch.load(part, weights_only=True)["train_args"]["dtype"] == "float32"  # the run's own, not auto's
    assert_close(one, part)

    # A checkpoint written by two processes (with each one's generator states) loads like any other,
    # and one process resumes it to the same weights as one process all along.
    assert len(load_checkpoint(two)["rng"]["ranks"]) == 2
    for checkpoint in (one, two):
        assert train.main(["--resume", str(checkpoint), "--max-iters", "24", "--sample-chars", "0"]) == 0
    assert_close(one, two)


def test_global_batch_must_divide_among_processes(text_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    out = tmp_path / "m.pt"
    assert train.main(["--text", str(text_file), "--preset", "tiny", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--batch-size 8 (the global batch) is not divisible by the 3 processes" in err[0]
    assert not out.exists()


def test_rows_are_split_evenly_and_in_order():
    shares = [ddp.local_rows(ddp.Dist(rank=r, world=4), 32) for r in range(4)]
    assert [list(range(32))[s] for s in shares] == [list(range(8 * r, 8 * r + 8)) for r in range(4)]
