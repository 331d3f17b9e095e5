"""Analyzer speed and memory.

    python bench/analyze_speed.py [--ckpt checkpoints/en.pt] [--windows 256] [--sizes 500 5000]

1. Throughput on the same model and windows: windows/s of the plain forward pass that produces the
   attention (model(ids, return_attention=True)) vs that forward pass plus the full detector suite
   (the controls' frequency pass over the text, every detector with its control baseline, key characters,
   class-to-class sums, head metrics, the decomposition's sums on its first windows). Target: ratio >= 0.5.
2. Peak memory (ru_maxrss of a fresh subprocess per size) of the whole analysis (run_analysis: streaming,
   bootstrap, repeated-sequence test, decomposition) over 500 and 5,000 windows (half discovery, half held-out).
   Target: growth from 500 to 5,000 windows <= 10%.
Without --ckpt a freshly initialized `small`-preset model over the English Bible is used (same cost).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from charlens.analysis.runs.inputs import AnalysisInputs, Settings, TextSplit, load_inputs, sample_windows  # noqa: E402
from charlens.analysis.runs.single import Decomposition, SplitRun, run_analysis, split_frequencies  # noqa: E402
from charlens.analysis.runs.extract import iter_attention  # noqa: E402
from charlens.data.corpora import bible_corpus  # noqa: E402
from charlens.data.tokenizer import CharTokenizer  # noqa: E402
from charlens.model.transformer import PRESETS, ModelConfig, TransformerLM  # noqa: E402


def model_and_text(ckpt: str | None):
    corpus = bible_corpus("en")
    if ckpt:
        inputs = load_inputs(ckpt, Settings())
        return inputs.model, inputs.tokenizer, corpus
    tok = CharTokenizer.from_text(corpus.train + corpus.heldout)
    torch.manual_seed(0)
    return TransformerLM(ModelConfig(vocab_size=tok.vocab_size, **PRESETS["small"])).eval(), tok, corpus


def inputs_for(ckpt: str | None, n_windows: int) -> AnalysisInputs:
    model, tok, corpus = model_and_text(ckpt)
    T = model.config.block_size
    rng = np.random.default_rng(0)
    half = n_windows // 2
    split = lambda text, name: TextSplit(name, sample_windows(text, T, half, rng), len(text))
    return AnalysisInputs(ckpt or "fresh-small", "bench", "en", model, tok, {"iter": 0},
                                   split(corpus.train, "train"), split(corpus.train[len(corpus.train) // 2:], "train, 2nd half"))


def throughput(ckpt: str | None, n: int, batch_size: int, rounds: int = 3) -> tuple[float, float]:
    """Best of `rounds` alternating timings of each (the CPU may be shared: the best run is the least disturbed)."""
    inputs = inputs_for(ckpt, 2 * n)
    windows = inputs.discovery.windows
    ids = [torch.from_numpy(np.stack([inputs.tokenizer.encode(w, unknown="replace").astype(np.int64) for w in windows[k:k + batch_size]]))
           for k in range(0, len(windows), batch_size)]

    @torch.no_grad()
    def plain() -> None:
        for x in ids:
            inputs.model(x, return_attention=True)

    def full() -> None:
        settings = Settings()
        names = settings.detectors_for("en")
        run = SplitRun(names, split_frequencies(inputs.tokenizer, inputs.discovery, "en", names, batch_size))
        decomposition = Decomposition(names, settings.decompose_windows)
        for batch in iter_attention(inputs.model, inputs.tokenizer, windows, "en", batch_size):
            run.add(batch)
            decomposition.add(batch, "discovery")

    best = {plain: 0.0, full: 0.0}
    for _ in range(rounds):
        for fn in best:
            t = time.perf_counter()
            fn()
            best[fn] = max(best[fn], len(windows) / (time.perf_counter() - t))
    return best[plain], best[full]


def peak_memory_child(ckpt: str | None, n_windows: int) -> None:
    import resource
    inputs = inputs_for(ckpt, n_windows)
    t = time.perf_counter()
    run_analysis(inputs, Settings(n_windows=n_windows // 2))
    print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": time.perf_counter() - t}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="checkpoint to use (default: a fresh small-preset model)")
    p.add_argument("--windows", type=int, default=256, help="windows for the throughput comparison")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--sizes", type=int, nargs="+", default=[500, 5000], help="window counts for the memory runs")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        peak_memory_child(args.ckpt, args.child)
        return
    plain, full = throughput(args.ckpt, args.windows, args.batch_size)
    print(f"threads {torch.get_num_threads()}, {args.windows} windows, batch {args.batch_size}, best of 3 alternating runs")
    print(f"forward pass with attention: {plain:8.1f} windows/s")
    print(f"forward + detector suite:    {full:8.1f} windows/s   ratio {full / plain:.2f} (target >= 0.5)")
    peaks = {}
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(n)] + (["--ckpt", args.ckpt] if args.ckpt else [])
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        peaks[n] = res["maxrss_mb"]
        print(f"whole analysis of {n:5d} windows: peak RSS {res['maxrss_mb']:7.1f} MB, {res['seconds']:6.1f} s")
    lo, hi = min(args.sizes), max(args.sizes)
    print(f"peak memory growth {lo} -> {hi} windows: {100 * (peaks[hi] / peaks[lo] - 1):+.1f}% (target <= +10%)")


if __name__ == "__main__":
    main()
