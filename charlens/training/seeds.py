"""Replicate training: one model per seed (`train.py --seeds 3` or `--seeds 0 1 2`).

Seed k of a run whose checkpoint would be checkpoints/en.pt is written to checkpoints/en_s{k}.pt
(with its .log.jsonl and .loss.png). Rerunning the same command skips the seeds whose checkpoint
is finished and resumes the interrupted ones, so Ctrl-C never costs more than the current steps.
Seeds run in parallel processes, up to one per CPU core, each with cores / processes threads: on
a CPU this beats one seed after another with all threads (measured: docs/benchmarks.md); on a GPU
they run one after another.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import torch

from charlens.data.corpora import Corpus
from charlens.data.errors import Terminated, UsageError, interrupt_status, start_shielded
from charlens.data.tokenizer import Tokenizer, tokenizer_from_dict
from charlens.model.checkpoint import load_checkpoint
from charlens.model.limits import cpu_cores
from charlens.training import seed_child
from charlens.training.config import SETTING_RANGES, TrainSettings, settings_from_flags
from charlens.training.task_source import source_for
from charlens.training.engine import INTERRUPTED, train

MAX_SEEDS = 1000  # seeds one --seeds may train (each a model, a process and a checkpoint)
TERMINATED = 143  # exit status after SIGTERM


@dataclass
class SeedRun:
    seed: int
    settings: TrainSettings  # the run's settings, its `out` the seed's own checkpoint
    resume: bool             # continue the unfinished checkpoint at settings.out


def seed_list(values: list[int]) -> list[int]:
    """`--seeds N` is seeds 0..N-1; two or more values are the seeds themselves (at most MAX_SEEDS, each a
    seed --seed would take)."""
    if len(values) == 1:
        if not 1 <= values[0] <= MAX_SEEDS:
            raise UsageError(f"--seeds N trains N seeds (0..N-1): N must be in 1..{MAX_SEEDS:,}, got {values[0]}; "
                             "a list such as --seeds 0 1 2 names them")
        return list(range(values[0]))
    if len(values) > MAX_SEEDS:
        raise UsageError(f"--seeds lists {len(values):,} seeds; at most {MAX_SEEDS:,}")
    for value in values:
        problem = SETTING_RANGES["seed"].problem(value)
        if problem:
            raise UsageError(f"--seeds: every seed {problem}")
    if len(set(values)) < len(values):
        raise UsageError(f"--seeds lists a seed twice: {' '.join(map(str, values))}")
    return values


def seed_path(out: Path, seed: int) -> Path:
    """checkpoints/en.pt -> checkpoints/en_s{seed}.pt"""
    return out.with_name(f"{out.stem}_s{seed}{out.suffix}")


def plan(seeds: list[int], s: TrainSettings, given: dict, preset: str, corpus: Corpus) -> list[SeedRun]:
    """One run per seed, fresh or resumed, with every check made now (a seed whose checkpoint holds
    other settings or another corpus is refused before any seed trains); finished seeds are left out."""
    runs = []
    for seed in seeds:
        path = seed_path(Path(str(s.out)), seed)
        if not path.exists():
            runs.append(SeedRun(seed, replace(s, seed=seed, out=str(path)), resume=False))
            continue
        checkpoint = load_checkpoint(path)
        if "train_args" not in checkpoint or "optimizer" not in checkpoint or "rng" not in checkpoint:
            raise UsageError(f"{path} holds no training state to resume from; move it away to train seed {seed} afresh")
        if checkpoint["corpus"] != corpus.identity:
            raise UsageError(f"{path} was trained on another corpus; move it away or choose another --out")
        target = given.get("max_iters", checkpoint["train_args"]["max_iters"])
        if checkpoint["iter"] >= target:
            print(f"seed {seed}: {path} already finished {checkpoint['iter']:,} steps; skipped", flush=True)
            continue
        settings = settings_from_flags({**given, "seed": seed, "out": str(path)}, preset, checkpoint, str(path))
        runs.append(SeedRun(seed, settings, resume=True))
    return runs


def default_procs(n_runs: int, device: torch.device) -> int:
    """Seeds at once: one process per CPU core (at most one per seed); on a GPU one at a time."""
    if device.type != "cpu":
        return 1
    return max(1, min(n_runs, cpu_cores()))


def run_one(run: SeedRun, corpus: Corpus, tokenizer: Tokenizer, position: int = 0) -> int:
    """Train (or resume) one seed in this process."""
    checkpoint = load_checkpoint(str(run.settings.out)) if run.resume else None
    if checkpoint is not None:
        tokenizer = tokenizer_from_dict(checkpoint["tokenizer"])
    source = source_for(corpus, tokenizer, run.settings)
    return train(run.settings, source, tokenizer, checkpoint, label=f"seed {run.seed}", position=position)


def run_child(run: SeedRun, corpus: Corpus, tokenizer_dict: dict, threads: int, position: int) -> int:
    """A seed in its own process (training/seed_child.py): `threads` threads unless the run sets its own."""
    if run.settings.threads is None:
        torch.set_num_threads(threads)
    return run_one(run, corpus, tokenizer_from_dict(tokenizer_dict), position)


@dataclass
class SeedStatus:
    """What became of each seed of a run_seeds call."""

    runs: list[SeedRun]
    exits: dict[int, int] = field(default_factory=dict)  # seed -> exit status of the seeds that ran
    signal: Optional[KeyboardInterrupt] = None  # the Ctrl-C or SIGTERM this process received

    def status(self) -> int:
        """0; 130 or 143 after Ctrl-C or SIGTERM; else the first failed seed's status (1 or 2)."""
        if self.signal is not None:
            return interrupt_status(self.signal)
        failed = [code for code in self.exits.values() if code != 0]
        return next((c for c in failed if c not in (INTERRUPTED, TERMINATED)), failed[0]) if failed else 0

    def summary(self) -> Optional[str]:
        """One line naming the seeds stopped with a checkpoint and those not started, after an interruption."""
        if self.status() not in (INTERRUPTED, TERMINATED):
            return None
        stopped = [r.seed for r in self.runs if self.exits.get(r.seed) in (INTERRUPTED, TERMINATED)
                   and Path(str(r.settings.out)).exists()]
        waiting = [r.seed for r in self.runs if r.seed not in stopped + self.finished()]
        how = "terminated (SIGTERM)" if self.status() == TERMINATED else "interrupted"
        parts = [f"seed{'s' * (len(stopped) > 1)} {', '.join(map(str, stopped))} saved"] if stopped else []
        parts += [f"seed{'s' * (len(waiting) > 1)} {', '.join(map(str, waiting))} not started"] if waiting else []
        return f"{how}: {'; '.join(parts) or 'every seed finished'}; rerun the same command to continue"

    def finished(self) -> list[int]:
        return [seed for seed, code in self.exits.items() if code == 0]


def run_seeds(runs: list[SeedRun], corpus: Corpus, tokenizer: Tokenizer, procs: int) -> int:
    """Train every run, `procs` at a time, each in its own process (one after another in this one when procs
    is 1). Returns 0; 130 or 143 after Ctrl-C or SIGTERM, once every started seed has saved its checkpoint
    (a line names them and the seeds not started); or a failed seed's status."""
    done = SeedStatus(runs)
    try:
        if procs <= 1:
            for run in runs:
                done.exits[run.seed] = run_one(run, corpus, tokenizer)
                if done.exits[run.seed]:
                    break
        else:
            _run_parallel(runs, corpus, tokenizer, procs, done)
    except KeyboardInterrupt as e:
        done.signal = e
    line = done.summary()
    if line:
        print(line, file=sys.stderr)
    return done.status()


def _run_parallel(runs: list[SeedRun], corpus: Corpus, tokenizer: Tokenizer, procs: int, done: SeedStatus) -> None:
    """The processes of run_seeds: no new seed after a failure or a signal; a signal is passed on to the seeds
    running (a terminal's Ctrl-C reaches them too), and this returns when every one of them has exited."""
    threads, ctx = max(1, cpu_cores() // procs), mp.get_context("spawn")
    running: dict[int, tuple[SeedRun, mp.process.BaseProcess]] = {}
    stop = ctx.Value("i", 0)  # once the run is stopped: the exit status of a seed whose process is still starting
    waiting = list(runs)
    while running or (waiting and done.signal is None and not any(done.exits.values())):
        try:
            while waiting and len(running) < procs and done.signal is None and not any(done.exits.values()):
                slot = min(set(range(procs)) - set(running))
                run = waiting.pop(0)
                job = pickle.dumps((run, corpus, tokenizer.to_dict(), threads, slot))
                child = ctx.Process(target=seed_child.main, args=(job, stop))
                running[slot] = (run, child)  # before it starts: a signal held back while it starts is raised as
                start_shielded(child)  # this returns; the seed then reads `stop`, set before a signal is passed on
            for slot, (run, p) in list(running.items()):
                p.join(timeout=0.2)
                if p.exitcode is not None:
                    done.exits[run.seed] = p.exitcode if p.exitcode >= 0 else 128 - p.exitcode
                    del running[slot]
        except KeyboardInterrupt as e:
            done.signal = done.signal or e
            stop.value = interrupt_status(e)
            for slot in [slot for slot, (_, p) in running.items() if p.pid is None]:  # never started
                del running[slot]
            for _, p in running.values():
                if p.exitcode is None and p.pid is not None:
                    os.kill(p.pid, signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
