"""What one analysed training stage (`analyze.py --stages`) costs, in training steps of the same model.

    python bench/stage_cost.py --ckpt checkpoints/en_s0.pt --rounds 3

Alternating, in one process with one thread: the analysis `--stages` runs on each snapshot (`run_analysis` with
the default settings, no report files), and --steps training steps of the checkpoint's own model and corpus. The
ratio (one analysis / one step) turns a measured time per step into the stage analyses' share of a job: a
group comparison with --stages adds (models x snapshots) analyses to (models x steps / processes) steps. The
machine may be shared, so only the ratio within one run is reported, with its range over the rounds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from charlens.analysis.runs.inputs import Settings, load_inputs  # noqa: E402
from charlens.analysis.runs.single import run_analysis  # noqa: E402
from charlens.model.checkpoint import model_from_checkpoint  # noqa: E402
from charlens.training.config import FIELDS, TrainSettings, lr_at  # noqa: E402
from charlens.training.batches import CorpusSource  # noqa: E402
from charlens.training.engine import make_optimizer, train_step  # noqa: E402
from charlens.training.runtime import autocast_for, resolve_dtype  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="a trained checkpoint of the default Bibles (e.g. checkpoints/en_s0.pt)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=50, help="training steps per round")
    args = p.parse_args()
    torch.set_num_threads(1)
    settings = Settings()
    inputs = load_inputs(args.ckpt, settings)
    s = TrainSettings.from_dict({k: v for k, v in inputs.state["train_args"].items() if k in FIELDS})
    model = model_from_checkpoint(inputs.state).train()
    optimizer = make_optimizer(model, s, torch.device("cpu"))  # a fresh optimizer: the steps' cost, not the run's state
    assert inputs.corpus is not None
    source = CorpusSource(inputs.corpus, inputs.tokenizer, s.block_size, s.batch_size)
    rng = torch.Generator().manual_seed(0)
    cpu = torch.device("cpu")
    autocast = autocast_for(resolve_dtype(s.dtype, cpu), cpu)  # as the run trained
    ratios = []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        for it in range(args.steps):
            x, y = source.batch("train", rng)
            train_step(model, model, optimizer, x, y, lr_at(s.max_iters - 1, s), s.grad_clip, autocast)
        step = (time.perf_counter() - t0) / args.steps
        t0 = time.perf_counter()
        run_analysis(inputs, settings)
        analysis = time.perf_counter() - t0
        ratios.append(analysis / step)
        print(f"round {r + 1}: one step {step * 1e3:.0f} ms, one analysis {analysis:.1f} s = {analysis / step:.0f} steps",
              flush=True)
    print(f"one analysed stage = {statistics.median(ratios):.0f} training steps (range {min(ratios):.0f}-{max(ratios):.0f}, "
          f"{args.rounds} rounds, one thread)")


if __name__ == "__main__":
    main()
