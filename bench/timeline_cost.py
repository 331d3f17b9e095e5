"""What timeline recording costs a training run (train.py's default, `--no-timeline` turns it off).

    python bench/timeline_cost.py                        # parts, alternating: steps, records, checkpoint saves
    python bench/timeline_cost.py --end-to-end 400       # whole train.py processes, --timeline vs --no-timeline

Parts: in each round, in rotated order, the trainer's own steps at the small preset (train_step on
KJV batches), one timeline record (training.timeline.Recorder on the run's real probe set) and one
checkpoint save with the history a default run ends with, with and without its timeline records. The
cost of recording in a run of --max-iters M is then
    (records in M steps x time per record + saves x extra time per save) / (M x time per step),
reported for the defaults (2,000 steps, an evaluation every 250) from the medians of the rounds.
End to end: pairs of whole `train.py --text kjv.txt --preset small --max-iters N` processes, one with the
timeline and one without, alternating (which one goes first alternates too); the ratio of their wall
times beside the parts' prediction for N steps. The machine is shared, so every figure is a ratio within
one run.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from charlens.data.corpora import file_corpus, write_bible_text  # noqa: E402
from charlens.data.tokenizer import CharTokenizer  # noqa: E402
from charlens.model.checkpoint import save_checkpoint  # noqa: E402
from charlens.model.transformer import TransformerLM  # noqa: E402
from charlens.training import timeline  # noqa: E402
from charlens.training.batches import CorpusSource  # noqa: E402
from charlens.training.config import TrainSettings, lr_at  # noqa: E402
from charlens.training.engine import LOG_EVERY, make_optimizer, train_step  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def records_in(max_iters: int, eval_interval: int) -> int:
    return len(timeline.record_steps(max_iters, eval_interval))


def parts(text: Path, rounds: int, steps: int) -> None:
    s = TrainSettings.for_preset("small")
    corpus = file_corpus(text, s.block_size)
    tokenizer = CharTokenizer(sorted(corpus.chars()))
    source = CorpusSource(corpus, tokenizer, s.block_size, s.batch_size)
    torch.manual_seed(s.seed)
    model = TransformerLM(s.model_config(tokenizer.vocab_size))
    optimizer = make_optimizer(model, s, torch.device("cpu"))
    probe, recorder = timeline.recorder_for(None, corpus.heldout, corpus.lang, tokenizer, model.config, s.seed, torch.device("cpu"))
    rng, it = torch.Generator().manual_seed(s.seed), [0]

    def train(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            x, y = source.batch("train", rng)
            loss = train_step(model, model, optimizer, x, y, lr_at(it[0], s), s.grad_clip, torch.autocast("cpu", enabled=False))
            it[0] += 1
            if it[0] % LOG_EVERY == 0:
                loss.item()
        loss.item()
        return (time.perf_counter() - t0) / n

    def record() -> float:
        t0 = time.perf_counter()
        recorder.record(model, it[0])
        return time.perf_counter() - t0

    n_records = records_in(s.max_iters, s.eval_interval)
    steps_log = [{"kind": "step", "iter": k, "loss": 1.0, "lr": 1e-3, "ms": 100.0} for k in range(1, s.max_iters, LOG_EVERY)]
    with_records = steps_log + [recorder.record(model, k) for k in range(n_records)]
    folder = Path(tempfile.mkdtemp())

    def save(history: list[dict], with_probe: bool) -> float:
        state = {"model_config": model.config.to_dict(), "model": model.state_dict(), "tokenizer": tokenizer.to_dict(),
                 "corpus": corpus.identity, "iter": it[0], "train_args": s.to_dict(), "optimizer": optimizer.state_dict(),
                 "history": history, **({"probe": probe} if with_probe else {})}
        t0 = time.perf_counter()
        save_checkpoint(state, folder / "m.pt")
        return time.perf_counter() - t0

    train(3)
    record()
    jobs = {"step": lambda: train(steps), "record": record, "save with timeline": lambda: save(with_records, True),
            "save without": lambda: save(steps_log, False)}
    times: dict[str, list[float]] = {k: [] for k in jobs}
    names = list(jobs)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(jobs[name]())
    med = {k: statistics.median(v) for k, v in times.items()}
    saves = s.max_iters // s.eval_interval
    extra_save = med["save with timeline"] - med["save without"]
    cost = (n_records * med["record"] + saves * extra_save) / (s.max_iters * med["step"])
    print(f"small preset, {len(probe['windows'])} probe windows x {s.block_size} + {len(probe['repeated'])} repeated "
          f"sequences, {len(probe['detectors'])} detectors; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"medians of {rounds} rounds (min..max)")
    for name, ts in times.items():
        print(f"  {name:20s} {med[name] * 1e3:8.1f} ms  ({min(ts) * 1e3:.1f}..{max(ts) * 1e3:.1f})")
    print(f"  record = {med['record'] / med['step']:.2f} steps; a default run ({s.max_iters} steps, evaluation every "
          f"{s.eval_interval}) records {n_records} times and saves {saves} checkpoints: recording costs "
          f"{cost:.1%} of its training time")


def end_to_end(text: Path, n: int, pairs: int) -> None:
    folder = Path(tempfile.mkdtemp())
    times: dict[str, list[float]] = {"--timeline": [], "--no-timeline": []}
    order = list(times)
    for p in range(pairs):
        for flag in (order if p % 2 == 0 else order[::-1]):
            argv = [sys.executable, "train.py", "--text", str(text), "--preset", "small", "--max-iters", str(n),
                    "--sample-chars", "0", "--out", str(folder / "m.pt"), "--overwrite", flag]
            t0 = time.perf_counter()
            subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[flag].append(time.perf_counter() - t0)
            print(f"  pair {p + 1} {flag:14s} {times[flag][-1]:7.1f} s", flush=True)
    ratios = [a / b for a, b in zip(times["--timeline"], times["--no-timeline"])]
    print(f"whole train.py processes, {n} steps, {records_in(n, 250)} records: --timeline / --no-timeline = "
          f"{statistics.median(ratios):.3f} (pairs: {', '.join(f'{r:.3f}' for r in ratios)})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=7, help="rounds of the parts (default 7)")
    p.add_argument("--steps", type=int, default=20, help="training steps timed per round (default 20)")
    p.add_argument("--end-to-end", type=int, metavar="N", help="instead: whole processes of N steps, with and without")
    p.add_argument("--pairs", type=int, default=3, help="with --end-to-end: pairs of processes (default 3)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text = write_bible_text("en", Path(tmp) / "kjv.txt")
        if args.end_to_end:
            end_to_end(text, args.end_to_end, args.pairs)
        else:
            parts(text, args.rounds, args.steps)


if __name__ == "__main__":
    main()
