"""The analyses behind analyze.py's runs over many models, as independent jobs: a model's final analysis with its
report (ModelJob), or one training snapshot's stage analysis (StageJob). `run_jobs` runs them one after another in
this process, or `procs` at a time in worker processes of one thread each: on a 2-core CPU two one-thread analyses
side by side take 0.6 of the time of the same two in turn with two threads, and the main job's whole comparison
0.82 (docs/benchmarks.md), because an analysis of a small model is many small operations that a second thread
barely speeds up.

Each job writes its own files into the staged output folder and returns what the comparison needs, so the results
are the same whichever process ran them (up to the last bits of floating-point sums with another thread count).
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from tqdm import tqdm

from charlens.analysis.report.files import write_json
from charlens.analysis.report.live_model import live_model
from charlens.analysis.report.render import write_analysis_report
from charlens.analysis.runs.extras import ExtrasRequest, run_extras
from charlens.analysis.runs.groups import model_quantities
from charlens.analysis.runs.inputs import AnalysisInputs, Settings, TextSplit, load_inputs
from charlens.analysis.runs.results import Extras, Summary
from charlens.analysis.runs.single import run_analysis
from charlens.data.errors import SHIELDED, CharlensError, start_shielded, visible


def analyse_model(inputs: AnalysisInputs, settings: Settings, request: ExtrasRequest, progress: bool,
                  save_attention: Optional[Path] = None) -> Summary:
    """The analysis of one model and the extras asked for, as one summary."""
    analysis = run_analysis(inputs, settings, save_attention=save_attention, progress=progress)
    extras = run_extras(request, inputs, analysis, progress=progress) if request.wanted() else Extras()
    return Summary(analysis, extras)


def live_view(inputs: AnalysisInputs) -> dict:
    """The model for report.html's live view."""
    return live_model(inputs.model, inputs.tokenizer, inputs.lang, inputs.name)


@dataclass(frozen=True)
class ModelResult:
    summary: dict  # the model's summary.json
    examples: dict[str, np.ndarray]  # its attention examples (the comparison's pictures)


@dataclass(frozen=True)
class StageResult:
    step: int
    quantities: Optional[dict]  # model_quantities of the stage; None when the snapshot was left out
    note: str = ""  # why it was left out


@dataclass(frozen=True)
class ModelJob:
    """A model's analysis with the extras asked for, its report written into `folder`."""

    inputs: AnalysisInputs
    settings: Settings
    request: ExtrasRequest
    folder: Path
    live: bool  # include the model for report.html's live view

    def label(self) -> str:
        return visible(self.inputs.name)

    def run(self, progress: bool) -> ModelResult:
        summary = analyse_model(self.inputs, self.settings, self.request, progress)
        self.folder.mkdir()
        live = live_view(self.inputs) if self.live else None
        return ModelResult(write_analysis_report(summary, self.folder, live=live), summary.examples)


@dataclass(frozen=True)
class StageJob:
    """A snapshot of a model analysed like the model, on its windows, but without the copying ablation, which no
    quantity reads from a stage; its summary.json written to `file`. It carries only what it needs of the model
    (not the model's corpus), since it travels to a worker process."""

    path: Path
    step: int
    name: str  # the model's name in the run
    heldout: TextSplit
    discovery: TextSplit
    model_config: dict
    tokenizer: dict
    settings: Settings
    file: Path

    @classmethod
    def of(cls, inputs: AnalysisInputs, step: int, path: Path, settings: Settings, file: Path) -> "StageJob":
        return cls(path, step, inputs.name, inputs.heldout, inputs.discovery, inputs.state["model_config"],
                   inputs.state["tokenizer"], settings, file)

    def label(self) -> str:
        return f"{visible(self.name)} at step {self.step:,}"

    def run(self, progress: bool) -> StageResult:
        try:
            snap = load_inputs(self.path, self.settings)
        except CharlensError as e:
            return StageResult(self.step, None, f"{visible(self.path.name)}: {visible(str(e))}")
        if snap.state["model_config"] != self.model_config or snap.state["tokenizer"] != self.tokenizer:
            return StageResult(self.step, None, f"{visible(self.path.name)}: another model config or tokenizer")
        snap = dataclasses.replace(snap, heldout=self.heldout, discovery=self.discovery, name=f"{self.name}.step{self.step}")
        data = Summary(run_analysis(snap, self.settings, copying=False)).to_dict()
        self.file.parent.mkdir(exist_ok=True)
        write_json(data, self.file)
        return StageResult(self.step, model_quantities(data))


Job = Union[ModelJob, StageJob]


def run_jobs(jobs: Sequence[Job], procs: int, quiet: bool) -> list:
    """Each job's result, in the order of `jobs`; a line on stderr per job unless `quiet`. With procs > 1 the jobs
    run in that many worker processes; an error in one stops the others and is raised here."""
    if procs <= 1 or len(jobs) <= 1:
        results = []
        for k, job in enumerate(jobs, 1):
            if not quiet:
                print(f"analysing {job.label()} ({k} of {len(jobs)})", file=sys.stderr)
            results.append(job.run(progress=not quiet and isinstance(job, ModelJob)))
        return results
    return _run_in_workers(jobs, min(procs, len(jobs)), quiet)


DIED = "an analysis worker process died (out of memory?); rerun with --procs 1 to analyse one model at a time"


def _worker(conn: Connection) -> None:
    """A worker process: run each job it is sent and send back its outcome until sent None, or until the main
    process is gone (exited or killed: its end of the pipe closed), when it ends quietly instead of printing
    EOFError's or BrokenPipeError's traceback on the user's terminal. Ctrl-C is the main process's to handle (it
    stops the workers), so it stays ignored from the start (start_shielded); SIGTERM, how they are stopped, kills at
    once. tqdm gets a thread lock: its default multiprocessing lock is a semaphore that a killed worker leaves behind
    (the resource tracker then warns of a leak), and a worker shows no bars. One thread each."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SHIELDED)  # start_shielded's mask survives the exec
    tqdm.set_lock(threading.RLock())
    torch.set_num_threads(1)
    try:
        while (job := conn.recv()) is not None:
            conn.send(_outcome(job))
    except (EOFError, BrokenPipeError):
        return


def _outcome(job: Job) -> tuple[bool, object]:
    """(True, the job's result) or (False, the error to raise in the main process)."""
    try:
        return True, job.run(progress=False)
    except CharlensError as e:
        return False, e
    except Exception:  # a bug: its traceback, which would otherwise stay in the worker
        return False, RuntimeError(f"{job.label()}: the analysis failed in a worker process:\n{traceback.format_exc()}")


def _run_in_workers(jobs: Sequence[Job], procs: int, quiet: bool) -> list:
    """The jobs over `procs` worker processes, each sent its next job when it is free. A worker that dies (killed,
    out of memory) is an error, not a wait without end; on any error or signal the workers are stopped at once."""
    ctx = multiprocessing.get_context("spawn")
    workers: list[tuple[SpawnProcess, Connection]] = []
    results: list = [None] * len(jobs)
    todo, busy, done = list(enumerate(jobs)), {}, 0

    def send_next(conn: Connection) -> None:
        if todo:
            k, job = todo.pop(0)
            busy[conn] = k
            conn.send(job)

    try:
        for _ in range(procs):
            mine, theirs = ctx.Pipe()
            process = ctx.Process(target=_worker, args=(theirs,), daemon=True)
            workers.append((process, mine))  # before it starts: a Ctrl-C held back while it starts is raised
            start_shielded(process)  # as start_shielded returns, and the finally must stop this worker too
            theirs.close()
        for _, conn in workers:
            send_next(conn)
        while busy:
            ready = wait([*busy, *(p.sentinel for p, _ in workers)])
            for conn in [c for c in busy if c in ready]:
                k = busy.pop(conn)
                try:
                    ok, value = conn.recv()
                except EOFError:  # it died before it could answer
                    raise CharlensError(DIED) from None
                if not ok:
                    raise value
                results[k], done = value, done + 1
                if not quiet:
                    print(f"analysed {jobs[k].label()} ({done} of {len(jobs)})", file=sys.stderr)
                send_next(conn)
            if any(p.sentinel in ready for p, _ in workers):
                raise CharlensError(DIED)
        for process, conn in workers:
            conn.send(None)
            process.join(timeout=10)
    finally:
        for process, conn in workers:
            conn.close()
            if process.pid is None:  # interrupted before it was started
                continue
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():  # still starting up, with SIGTERM ignored until _worker
                process.kill()
            process.join()
    return results
