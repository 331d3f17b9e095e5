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
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from charlens.data.corpora import Corpus
from charlens.data.errors import UsageError
from charlens.data.tokenizer import Tokenizer, tokenizer_from_dict
from charlens.model.checkpoint import load_checkpoint
from charlens.training.batches import CorpusSource
from charlens.training.config import TrainSettings, settings_from_flags
from charlens.training.engine import INTERRUPTED, train


@dataclass
class SeedRun:
    seed: int
    settings: TrainSettings  # the run's settings, its `out` the seed's own checkpoint
    resume: bool             # continue the unfinished checkpoint at settings.out


def seed_list(values: list[int]) -> list[int]:
    """`--seeds N` is seeds 0..N-1; two or more values are the seeds themselves."""
    if len(values) == 1:
        if values[0] < 1:
            raise UsageError(f"--seeds N trains N seeds (0..N-1) and needs N >= 1, got {values[0]}; "
                             "a list such as --seeds 0 1 2 names them")
        return list(range(values[0]))
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
    return max(1, min(n_runs, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def run_one(run: SeedRun, corpus: Corpus, tokenizer: Tokenizer, position: int = 0) -> int:
    """Train (or resume) one seed in this process."""
    checkpoint = load_checkpoint(str(run.settings.out)) if run.resume else None
    if checkpoint is not None:
        tokenizer = tokenizer_from_dict(checkpoint["tokenizer"])
    source = CorpusSource(corpus, tokenizer, run.settings.block_size, run.settings.batch_size)
    return train(run.settings, source, tokenizer, checkpoint, label=f"seed {run.seed}", position=position)


def _child(run: SeedRun, corpus: Corpus, tokenizer_dict: dict, threads: int, position: int) -> None:
    """Entry point of a seed's process (spawned: a fresh interpreter, no forked OpenMP state)."""
    try:
        if run.settings.threads is None:
            torch.set_num_threads(threads)
        sys.exit(run_one(run, corpus, tokenizer_from_dict(tokenizer_dict), position))
    except KeyboardInterrupt:  # Ctrl-C before the training loop took over the signal
        sys.exit(INTERRUPTED)


def run_seeds(runs: list[SeedRun], corpus: Corpus, tokenizer: Tokenizer, procs: int) -> int:
    """Train every run, `procs` at a time; returns 0, INTERRUPTED after Ctrl-C (every seed then has a
    resumable checkpoint or none yet), or 1 if a seed failed."""
    if procs <= 1:
        for run in runs:
            status = run_one(run, corpus, tokenizer)
            if status:
                return status
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // procs)
    ctx = mp.get_context("spawn")
    running: dict[int, mp.process.BaseProcess] = {}
    waiting, statuses, stopping = list(runs), [], False
    try:
        while waiting or running:
            try:
                while waiting and len(running) < procs and not stopping:
                    slot = min(set(range(procs)) - set(running))
                    child = ctx.Process(target=_child, args=(waiting.pop(0), corpus, tokenizer.to_dict(), threads, slot))
                    child.start()
                    running[slot] = child
                for slot, p in list(running.items()):
                    p.join(timeout=0.2)
                    if p.exitcode is not None:
                        statuses.append(p.exitcode)
                        del running[slot]
                        stopping |= p.exitcode != 0
            except KeyboardInterrupt:  # pass it on (a terminal sends it to the children too), then wait for them
                stopping = True
                for p in running.values():
                    if p.exitcode is None:
                        os.kill(p.pid, signal.SIGINT)  # type: ignore[arg-type]  # started, so it has a pid
    finally:
        for p in running.values():
            p.join()
    if INTERRUPTED in statuses or (stopping and waiting and 1 not in statuses):
        return INTERRUPTED
    return 1 if any(statuses) else 0
