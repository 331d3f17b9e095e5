"""Analyzer speed and memory.

    python bench/analyze_speed.py [--ckpt checkpoints/en.pt] [--windows 256] [--sizes 500 5000]
    python bench/analyze_speed.py --ckpt checkpoints/en.pt --vs ../main [--pairs 3]

1. Throughput on the same model and windows: windows/s of the plain forward pass that produces the
   attention (hooks.attention_patterns: the hook points read by run_with_cache) vs that forward pass plus the full detector suite
   (the positional control's frequency pass over the text, every detector with its control baseline,
   class-to-class sums, head metrics, the decomposition's fit on its first windows). Target: ratio >= 0.5.
2. Peak memory (ru_maxrss of a fresh subprocess per size) of the whole analysis (run_analysis: streaming,
   bootstrap, repeated-sequence test, decomposition) over 500 and 5,000 windows (half discovery, half held-out).
   Target: growth from 500 to 5,000 windows <= 10%.
3. With --vs CHECKOUT, instead: this checkout's analyzer against another checkout's (e.g. the main branch's), as
   whole processes alternating A, B, A, B, ... (--pairs pairs), each timing the extraction alone (iter_attention)
   and extraction + detector suite (best of 3 inside the process) on the same model and windows; prints each
   pair's ratio A / B and the median. Ratios within one alternating run are the only speed comparison that means
   anything on a shared CPU.
Without --ckpt a freshly initialized `small`-preset model over the English Bible is used (same cost).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

# --code DIR (used by --vs) imports charlens from another checkout; by default from this one.
CODE = Path(sys.argv[sys.argv.index("--code") + 1]) if "--code" in sys.argv else Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CODE.resolve()))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from charlens.analysis.runs.inputs import AnalysisInputs, Settings, TextSplit, load_inputs, sample_windows  # noqa: E402
from charlens.analysis.runs.single import Decomposition, SplitRun, class_frequencies, run_analysis  # noqa: E402
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

    from charlens.model.hooks import attention_patterns  # here: a --vs child may run an older checkout without it

    @torch.no_grad()
    def plain() -> None:
        for x in ids:
            attention_patterns(inputs.model, x)

    best = {plain: 0.0, suite_run(inputs, batch_size): 0.0}
    return best_rates(best, len(windows), rounds)


def suite_run(inputs: AnalysisInputs, batch_size: int, suite: bool = True):
    """The analyzer's path over the discovery windows: streamed extraction, with the detector suite or without."""
    def run() -> None:
        settings = Settings()
        names = settings.detectors_for("en")
        split = SplitRun(names, class_frequencies(inputs.tokenizer, inputs.discovery, "en", names, batch_size)) if suite else None
        decomposition = Decomposition(names, settings.decompose_windows)
        for batch in iter_attention(inputs.model, inputs.tokenizer, inputs.discovery.windows, "en", batch_size):
            if split is not None:
                split.add(batch)
                decomposition.add(batch, "discovery")
    return run


def best_rates(fns: dict, n_windows: int, rounds: int) -> tuple[float, ...]:
    """Best windows/s of each function over `rounds` alternating timings (the least disturbed run on a shared CPU)."""
    for _ in range(rounds):
        for fn in fns:
            t = time.perf_counter()
            fn()
            fns[fn] = max(fns[fn], n_windows / (time.perf_counter() - t))
    return tuple(fns.values())


def child_speed(ckpt: str | None, n: int, batch_size: int) -> None:
    """One side of --vs: extraction alone and extraction + suite with this process's charlens, as JSON."""
    inputs = inputs_for(ckpt, 2 * n)
    fns = {suite_run(inputs, batch_size, suite=False): 0.0, suite_run(inputs, batch_size): 0.0}
    extract, full = best_rates(fns, len(inputs.discovery.windows), 3)
    print(json.dumps({"extract": extract, "full": full, "code": str(CODE)}))


def versus(ckpt: str | None, other: str, n: int, batch_size: int, pairs: int) -> None:
    """This checkout against `other`, whole processes alternating; ratios per pair and their median."""
    here = Path(__file__).resolve().parents[1]
    ratios: dict[str, list[float]] = {"extract": [], "full": []}
    for k in range(pairs):
        got = []
        for code in (here, Path(other)):
            cmd = [sys.executable, __file__, "--code", str(code), "--child-speed", "--windows", str(n),
                   "--batch-size", str(batch_size)] + (["--ckpt", ckpt] if ckpt else [])
            got.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]))
        for key in ratios:
            ratios[key].append(got[0][key] / got[1][key])
        print(f"pair {k + 1}: extraction {got[0]['extract']:.1f} vs {got[1]['extract']:.1f} win/s "
              f"(ratio {ratios['extract'][-1]:.3f}); extraction + suite {got[0]['full']:.1f} vs {got[1]['full']:.1f} "
              f"win/s (ratio {ratios['full'][-1]:.3f})")
    print(f"median ratio {here} / {other}: extraction {float(np.median(ratios['extract'])):.3f}, "
          f"extraction + suite {float(np.median(ratios['full'])):.3f} ({pairs} alternating pairs)")


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
    p.add_argument("--vs", metavar="CHECKOUT", help="compare with another checkout's analyzer (e.g. the main branch's)")
    p.add_argument("--pairs", type=int, default=3, help="alternating process pairs for --vs (default 3)")
    p.add_argument("--code", help=argparse.SUPPRESS)
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--child-speed", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        peak_memory_child(args.ckpt, args.child)
        return
    if args.child_speed:
        child_speed(args.ckpt, args.windows, args.batch_size)
        return
    if args.vs:
        versus(args.ckpt, args.vs, args.windows, args.batch_size, args.pairs)
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
