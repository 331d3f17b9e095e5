"""Training speed (and optionally quality) of the trainer's own step, lever by lever.

    python bench/train_speed.py                   # CPU, reference configuration: every lever against the baseline
    python bench/train_speed.py --preset base     # on a GPU: float32 eager vs bfloat16 autocast vs + compile
    python bench/train_speed.py --profile         # where one step's time goes, and the speed-ups that bounds
    python bench/train_speed.py --eval-batches    # the whole-split evaluation with 4k to 32k characters a batch
    python bench/train_speed.py --seeds 2         # several seeds: one after another, one process, parallel processes
    python bench/train_speed.py --quality         # instead: a default 2,000-step run on the full King James Bible:
                                                  # its validation loss and the share of everything but the steps

The reference configuration (= the `small` preset) is nanoGPT's char-level setting: 4 layers, 4 heads,
128 embedding, block 128, batch 32, AdamW lr 1e-3 (warm-up 100, cosine to 1e-4 over 2,000 steps,
beta2 0.99). The baseline is the step as nanoGPT takes it on a CPU (float32, eager, for-each AdamW,
the loss read back every step). MFU is against the machine's own measured matmul peak (before and
after the rounds): 2048² float32 on a CPU, 8192² bfloat16 on a GPU. Variants run in interleaved rounds,
in rotated order, and each is reported from its best round (load from other processes only ever adds
time), so the ratios come from one run.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from charlens.data.corpora import write_bible_text  # noqa: E402
from charlens.data.tokenizer import CharTokenizer  # noqa: E402
from charlens.model.hooks import hook_point_name, hooks
from charlens.model.transformer import PRESETS, ModelConfig, TransformerLM  # noqa: E402
from charlens.training.batches import ConsecutiveWindows, random_windows, to_device  # noqa: E402
from charlens.training.config import DTYPES, TrainSettings, lr_at, resolve_device  # noqa: E402
from charlens.training.engine import LOG_EVERY, make_optimizer, train_step  # noqa: E402
from charlens.training.evaluation import EVAL_CHARS_PER_BATCH, full_loss  # noqa: E402
from charlens.training.runtime import autocast_for, native_bf16_cpu, resolve_dtype  # noqa: E402

NANOGPT_VAL_LOSS = 1.41  # nats, nanoGPT at the reference configuration after 2,000 iterations (last 10% of the KJV)


def settings(preset: str) -> TrainSettings:
    return TrainSettings.for_preset(preset, dropout=0.0)


def matmul_peak_flops(device: torch.device, repeats: int = 5, dtype: Optional[torch.dtype] = None) -> tuple[float, str]:
    """Best observed FLOP/s of one large matmul: 2048² float32 on a CPU, 8192² bfloat16 on a GPU (or
    2048² of the dtype given)."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, dtype or torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    best = math.inf
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best, f"{n}² {str(dtype).removeprefix('torch.')}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stepper:
    """One model + optimizer taking the trainer's own steps on fixed data, with one set of levers."""

    def __init__(self, data: np.ndarray, vocab_size: int, s: TrainSettings, device: torch.device, fused: bool = True,
                 compile: bool = False, dtype: str = "float32", sync_every_step: bool = False, threads: int = 0,
                 seed: int = 1337):
        torch.manual_seed(seed)
        self.s, self.device, self.threads, self.sync_every_step = s, device, threads, sync_every_step
        self.model = TransformerLM(s.model_config(vocab_size)).to(device)
        self.optimizer = make_optimizer(self.model, s, device, fused=fused)  # unfused: nanoGPT's CPU optimizer
        self.forward = torch.compile(self.model) if compile else self.model
        self.autocast = autocast_for(dtype, device)
        self.data, self.rng, self.it = data, torch.Generator().manual_seed(seed), 0

    def steps(self, n: int) -> float:
        """Run n training steps; return seconds per step."""
        threads = torch.get_num_threads()
        if self.threads:  # (only then: set_num_threads restarts the thread pool, which costs time of its own)
            torch.set_num_threads(self.threads)
        sync(self.device)
        t0 = time.perf_counter()
        for _ in range(n):
            x, y = to_device(*random_windows(self.data, self.s.block_size, self.s.batch_size, self.rng), self.device)
            loss = train_step(self.model, self.forward, self.optimizer, x, y, lr_at(self.it, self.s),
                              self.s.grad_clip, self.autocast)
            if self.sync_every_step:
                loss.item()
            self.it += 1
        loss.item()
        elapsed = (time.perf_counter() - t0) / n
        if self.threads:
            torch.set_num_threads(threads)
        return elapsed


def levers(device: torch.device, bf16: bool) -> dict[str, dict]:
    """The variants to compare; the first is the baseline."""
    if device.type == "cuda":
        return {"float32 eager": dict(), "bfloat16": dict(dtype="bfloat16"),
                "bfloat16 + compile": dict(dtype="bfloat16", compile=True)}
    variants = {"baseline (nanoGPT's step)": dict(fused=False, sync_every_step=True),
                "no per-step sync": dict(fused=False),
                "fused AdamW": dict(),
                "fused AdamW + compile": dict(compile=True),
                "baseline, 1 thread": dict(fused=False, sync_every_step=True, threads=1)}
    if bf16:  # (attention itself in float32: see the profile's kernel comparison)
        variants["fused AdamW + bfloat16"] = dict(dtype="bfloat16")
        variants["fused AdamW + bfloat16 + compile"] = dict(dtype="bfloat16", compile=True)
    return variants


def speed(data: np.ndarray, vocab_size: int, preset: str, device: torch.device, iters: int, rounds: int,
          bf16: bool) -> None:
    s = settings(preset)
    variants = {name: Stepper(data, vocab_size, s, device, **kw) for name, kw in levers(device, bf16).items()}
    for name, stepper in variants.items():  # warm-up (and compilation) outside the timing
        t0 = time.perf_counter()
        stepper.steps(3)
        print(f"{name}: warm-up {time.perf_counter() - t0:.1f} s", flush=True)
    peak, peak_what = matmul_peak_flops(device)
    times, names = {name: [] for name in variants}, list(variants)
    for r in range(rounds):  # interleaved, so load from other processes hits all alike, and
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotated: each variant leads as often
            times[name].append(variants[name].steps(iters))
    peak = max(peak, matmul_peak_flops(device)[0])  # before and after: the least disturbed of the two
    tokens = s.batch_size * s.block_size
    model = next(iter(variants.values())).model
    flops = model.flops_per_token() * tokens
    print(f"config: {preset} ({', '.join(f'{k}={getattr(s, k)}' for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'batch_size'))}); "
          f"{model.num_params() / 1e6:.3f}M parameters; torch {torch.__version__} on {device}, {torch.get_num_threads()} threads")
    print(f"{peak_what} matmul peak: {peak / 1e9:.1f} GFLOP/s (MFU below is against it)")
    if bf16 and device.type == "cpu":
        bf16_peak, bf16_what = matmul_peak_flops(device, dtype=torch.bfloat16)
        print(f"{bf16_what} matmul peak: {bf16_peak / 1e9:.1f} GFLOP/s")
    best = {name: min(ts) for name, ts in times.items()}
    base = next(iter(best.values()))
    for name, t in best.items():
        print(f"{name:28s} {t * 1e3:8.1f} ms/step  {tokens / t:11,.0f} tokens/s  {flops / t / 1e9:7.1f} GFLOP/s  "
              f"MFU {flops / t / peak:5.1%}  x{base / t:.2f} (best of {rounds} x {iters} steps)")


def _seed_worker(data: np.ndarray, vocab_size: int, seed: int, go, done) -> None:
    """A seed's own process with one thread: steps whenever told, reports its seconds."""
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    stepper = Stepper(data, vocab_size, settings("small"), cpu, seed=seed, dtype=resolve_dtype("auto", cpu))
    stepper.steps(2)
    done.put(0.0)
    while (n := go.get()) > 0:
        done.put(stepper.steps(n) * n)


def seeds(data: np.ndarray, vocab_size: int, n_seeds: int, iters: int, rounds: int) -> None:
    """Wall time for `iters` steps of each of n_seeds models: one after another (all threads), one
    process stepping the models in turn (all threads), one process per seed (one thread each)."""
    s, cpu = settings("small"), torch.device("cpu")
    dtype = resolve_dtype("auto", cpu)  # the trainer's own default here
    models = [Stepper(data, vocab_size, s, cpu, seed=k, dtype=dtype) for k in range(n_seeds)]
    for m in models:
        m.steps(2)
    ctx = mp.get_context("spawn")
    go, done = ctx.Queue(), ctx.Queue()
    workers = [ctx.Process(target=_seed_worker, args=(data, vocab_size, k, go, done)) for k in range(n_seeds)]
    for w in workers:
        w.start()
    for _ in workers:
        done.get()

    def sequential() -> float:
        return sum(m.steps(iters) * iters for m in models)

    def one_process() -> float:
        t0 = time.perf_counter()
        for _ in range(iters):
            for m in models:
                m.steps(1)
        return time.perf_counter() - t0

    def parallel() -> float:
        t0 = time.perf_counter()
        for _ in workers:
            go.put(iters)
        for _ in workers:
            done.get()
        return time.perf_counter() - t0

    ways = {"one after another": sequential, "one process, models in turn": one_process,
            f"{n_seeds} processes x 1 thread": parallel}
    times, names = {name: [] for name in ways}, list(ways)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(ways[name]())
    for _ in workers:
        go.put(0)
    for w in workers:
        w.join()
    print(f"{n_seeds} seeds x {iters} steps, reference configuration in {dtype}, {torch.get_num_threads()} threads in one process")
    base = min(times["one after another"])
    for name, ts in times.items():
        print(f"{name:30s} {min(ts):7.2f} s  {n_seeds * iters / min(ts):6.2f} steps/s  x{base / min(ts):.2f} "
              f"(best of {rounds} rounds)")


def quality(folder: Path, dtype: str) -> None:
    """A default 2,000-step run at the reference configuration on the whole KJV as one text file,
    validated on its last 10% (the split and schedule of the nanoGPT reference), as a whole process:
    its validation loss, and what everything that is not a training step costs (start-up, the
    timeline records, the evaluations every 250 steps, the saves and the whole-split evaluation)."""
    text = write_bible_text("en", folder / "kjv.txt")
    out = folder / "kjv.pt"
    command = [sys.executable, str(Path(__file__).resolve().parents[1] / "train.py"), "--text", str(text),
               "--preset", "small", "--out", str(out), "--sample-chars", "0", "--dtype", dtype]
    t0 = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    history = torch.load(out, weights_only=True)["history"]
    seconds = {kind: sum(r["ms"] for r in history if r["kind"] == kind) / 1e3 for kind in ("step", "probe", "eval", "final")}
    seconds["step"] *= LOG_EVERY  # one step record per LOG_EVERY steps, with its window's mean
    seconds["rest"] = wall - sum(seconds.values())
    estimate = [r for r in history if r["kind"] == "eval"][-1]["val_loss"]
    final = history[-1]["val_loss"]
    print(f"quality (--dtype {dtype}: {resolve_dtype(dtype, torch.device('cpu'))}): val loss after "
          f"{history[-1]['iter']:,} iterations {final:.4f} nats (whole split), "
          f"{estimate:.4f} (20-batch estimate); nanoGPT reference {NANOGPT_VAL_LOSS}; difference "
          f"{final - NANOGPT_VAL_LOSS:+.4f}")
    names = {"step": "training steps", "probe": "timeline records", "eval": "evaluations every 250 steps",
             "final": "whole-split evaluation", "rest": "start-up, saves and exit"}
    print(f"time: whole process {wall:.1f} s = " + " + ".join(
        f"{names[k]} {v:.1f} s ({v / seconds['step']:.1%} of the steps)" for k, v in seconds.items()))


def eval_batches(data: np.ndarray, vocab_size: int, device: torch.device, rounds: int) -> None:
    """The whole-split evaluation (`full_loss`) of a reference-size model over `data`, with batches of
    4k to 32k characters, in interleaved rounds."""
    s = settings("small")
    model = Stepper(data, vocab_size, s, device).model
    sizes = (4096, 8192, 16384, 32768)
    times: dict[int, list[float]] = {n: [] for n in sizes}
    for r in range(rounds):
        for n in sizes[r % len(sizes):] + sizes[:r % len(sizes)]:
            t0 = time.perf_counter()
            full_loss(model, ConsecutiveWindows(data, s.block_size), device, nullcontext(), chars_per_batch=n)
            times[n].append(time.perf_counter() - t0)
    best = {n: min(ts) for n, ts in times.items()}
    print(f"whole-split evaluation of {len(data):,} characters, reference configuration, best of {rounds} rounds:")
    for n, t in best.items():
        print(f"{n:6,} characters a batch  {t:6.2f} s  {len(data) / t:9,.0f} characters/s  x{best[EVAL_CHARS_PER_BATCH] / t:.2f} "
              f"of the default ({EVAL_CHARS_PER_BATCH:,})")


MATMUL_OPS = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm"}


def profile(data: np.ndarray, vocab_size: int, preset: str, device: torch.device, iters: int) -> None:
    """Where the adopted step's time goes, and the speed-ups that bounds: if everything but the
    matmuls and attention cost nothing; if attention also ran at the matmuls' own rate with its causal
    half skipped; if every FLOP ran at the 2048² matmul peak."""
    s, dtype = settings(preset), resolve_dtype("auto", device)
    stepper = Stepper(data, vocab_size, s, device, dtype=dtype)
    stepper.steps(3)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        stepper.steps(iters)
    seconds = {"matmul": 0.0, "attention": 0.0, "everything else": 0.0}
    for op in prof.key_averages():
        kind = ("matmul" if op.key in MATMUL_OPS else "attention" if "scaled_dot_product" in op.key
                else "everything else")
        seconds[kind] += op.self_cpu_time_total / 1e6 / iters
    step = sum(seconds.values())
    peak, peak_what = matmul_peak_flops(device, dtype=getattr(torch, dtype))  # the step's matmuls' own dtype
    c, tokens = stepper.model.config, s.batch_size * s.block_size
    matmul_flops = 6 * stepper.model.num_params() * tokens
    causal_attention_flops = 6 * c.n_layer * c.n_embd * c.block_size * tokens  # half of 12 L C T: the causal half
    matmul_rate = matmul_flops / seconds["matmul"]
    print(f"one {dtype} step (profiled, {iters} steps): {step * 1e3:.1f} ms; " + ", ".join(
        f"{kind} {t * 1e3:.1f} ms ({t / step:.0%})" for kind, t in seconds.items()))
    print(f"matmuls run at {matmul_rate / 1e9:.1f} GFLOP/s = {matmul_rate / peak:.0%} of the {peak_what} peak "
          f"({peak / 1e9:.1f} GFLOP/s)")
    print(f"speed-up over this step, at most: {step / (seconds['matmul'] + seconds['attention']):.2f}x if everything "
          f"else cost nothing; {step / (seconds['matmul'] + causal_attention_flops / matmul_rate):.2f}x if attention "
          f"also ran at the matmuls' rate on its causal half; {step * peak / (matmul_flops + causal_attention_flops):.2f}x "
          f"if every FLOP ran at the peak")
    written_out, fused = attention_ms(stepper.model, s.batch_size, rounds=10)
    print(f"one layer's attention, forward and backward: {fused:.2f} ms through scaled_dot_product_attention (the "
          f"trainer's path), {written_out:.2f} ms written out as matmul, mask, softmax, matmul ({written_out / fused:.2f}x the time)")
    if device.type == "cpu":
        f32, bf16 = sdpa_ms(c, s.batch_size, rounds=10)
        print(f"the fused attention kernel alone, forward and backward: {f32:.2f} ms in float32, {bf16:.2f} ms in "
              f"bfloat16 ({bf16 / f32:.2f}x the time; hence float32 attention under CPU autocast)")


def attention_ms(model: TransformerLM, batch_size: int, rounds: int) -> tuple[float, float]:
    """Best milliseconds of layer 0's attention forward and backward, written out (as when someone
    observes the pattern: a no-op hook on it) and through SDPA, in alternating rounds."""
    c = model.config
    x = torch.randn(batch_size, c.block_size, c.n_embd, requires_grad=True)
    attention = model.blocks[0].attn
    best = [math.inf, math.inf]
    for _ in range(rounds):
        for k, observers in enumerate(([(hook_point_name(0, "pattern"), lambda t: None)], [])):
            with hooks(model, observers):
                t0 = time.perf_counter()
                attention(x)[0].sum().backward()
                best[k] = min(best[k], (time.perf_counter() - t0) * 1e3)
    return best[0], best[1]


def sdpa_ms(c: ModelConfig, batch_size: int, rounds: int) -> tuple[float, float]:
    """Best milliseconds of one layer's causal scaled_dot_product_attention, forward and backward, on
    float32 and on bfloat16 inputs, in alternating rounds."""
    shape = (batch_size, c.n_head, c.block_size, c.n_embd // c.n_head)
    best = {torch.float32: math.inf, torch.bfloat16: math.inf}
    for _ in range(rounds):
        for dtype in best:
            q, k, v = (torch.randn(shape, dtype=dtype, requires_grad=True) for _ in range(3))
            t0 = time.perf_counter()
            F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
            best[dtype] = min(best[dtype], (time.perf_counter() - t0) * 1e3)
    return best[torch.float32], best[torch.bfloat16]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iters", type=int, default=10, help="steps per timed round (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per variant (default 3)")
    p.add_argument("--preset", choices=("small", "base"), default="small",
                   help="small = the reference configuration (default); base = the GPU preset")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    p.add_argument("--bf16", action="store_true",
                   help="CPU: also time bfloat16 autocast (emulated, and many times slower, without AVX-512 BF16 or AMX)")
    p.add_argument("--seeds", type=int, metavar="N", help="instead: time N seeds trained three ways (CPU)")
    p.add_argument("--profile", action="store_true",
                   help="instead: where one step's time goes (matmuls, attention, the rest) and the speed-ups that bounds")
    p.add_argument("--eval-batches", action="store_true",
                   help="instead: time the whole-split evaluation with 4k to 32k characters a batch")
    p.add_argument("--quality", action="store_true",
                   help="instead: a default 2,000-step run on the KJV as a whole process: its val loss and its overhead")
    p.add_argument("--dtype", choices=DTYPES, default="auto", help="with --quality: train.py's --dtype (default auto)")
    args = p.parse_args()
    if args.dtype != "auto" and not args.quality:
        p.error("--dtype goes with --quality (the speed levers time float32 and bfloat16 themselves)")
    with tempfile.TemporaryDirectory() as tmp:
        if args.quality:
            return quality(Path(tmp), args.dtype)
        text = write_bible_text("en", Path(tmp) / "kjv.txt").read_text(encoding="utf-8")
        tokenizer = CharTokenizer.from_text(text)
        data = tokenizer.encode(text[:1_000_000])
        if args.seeds:
            return seeds(data, tokenizer.vocab_size, args.seeds, args.iters, args.rounds)
        device = resolve_device(args.device)
        if args.eval_batches:
            return eval_batches(data[:200_000], tokenizer.vocab_size, device, args.rounds)
        if args.profile:
            return profile(data, tokenizer.vocab_size, args.preset, device, args.iters)
        speed(data, tokenizer.vocab_size, args.preset, device, args.iters, args.rounds, args.bf16 or native_bf16_cpu())


if __name__ == "__main__":
    main()
