"""Training speed (and optionally quality) of the trainer's own step, lever by lever.

    python bench/train_speed.py                   # CPU, reference configuration: every lever against the baseline
    python bench/train_speed.py --preset base     # on a GPU: float32 eager vs bfloat16 autocast vs + compile
    python bench/train_speed.py --seeds 2         # several seeds: one after another, one process, parallel processes
    python bench/train_speed.py --quality         # instead: 2,000 steps on the full King James Bible

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
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train  # noqa: E402
from data.corpora import write_bible_text  # noqa: E402
from data.tokenizer import CharTokenizer  # noqa: E402
from model.transformer import PRESETS, ModelConfig, TransformerLM  # noqa: E402
from training.config import ARCH_KEYS, COMMON, TRAIN_PRESETS, lr_at, resolve_device  # noqa: E402
from training.engine import get_batch, make_optimizer, train_step  # noqa: E402
from training.runtime import autocast_for, native_bf16_cpu  # noqa: E402

NANOGPT_VAL_LOSS = 1.41  # nats, nanoGPT at the reference configuration after 2,000 iterations (last 10% of the KJV)


def settings(preset: str) -> dict:
    return {**COMMON, **PRESETS[preset], **TRAIN_PRESETS[preset], "dropout": 0.0}


def matmul_peak_flops(device: torch.device, repeats: int = 5) -> tuple[float, str]:
    """Best observed FLOP/s of one large matmul: 2048² float32 on a CPU, 8192² bfloat16 on a GPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
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

    def __init__(self, data: torch.Tensor, vocab_size: int, s: dict, device: torch.device, fused: bool = True,
                 compile: bool = False, dtype: str = "float32", sync_every_step: bool = False, threads: int = 0,
                 seed: int = 1337):
        torch.manual_seed(seed)
        self.s, self.device, self.threads, self.sync_every_step = s, device, threads, sync_every_step
        self.model = TransformerLM(ModelConfig(vocab_size=vocab_size, **{k: s[k] for k in ARCH_KEYS})).to(device)
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
            x, y = get_batch(self.data, self.s["block_size"], self.s["batch_size"], self.rng, self.device)
            loss = train_step(self.model, self.forward, self.optimizer, x, y, lr_at(self.it, self.s),
                              self.s["grad_clip"], self.autocast)
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
    if bf16:
        variants["fused AdamW + bfloat16"] = dict(dtype="bfloat16")
    return variants


def speed(data: torch.Tensor, vocab_size: int, preset: str, device: torch.device, iters: int, rounds: int,
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
    tokens = s["batch_size"] * s["block_size"]
    model = next(iter(variants.values())).model
    flops = model.flops_per_token() * tokens
    print(f"config: {preset} ({', '.join(f'{k}={s[k]}' for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'batch_size'))}); "
          f"{model.num_params() / 1e6:.3f}M parameters; torch {torch.__version__} on {device}, {torch.get_num_threads()} threads")
    print(f"{peak_what} matmul peak: {peak / 1e9:.1f} GFLOP/s")
    best = {name: min(ts) for name, ts in times.items()}
    base = next(iter(best.values()))
    for name, t in best.items():
        print(f"{name:28s} {t * 1e3:8.1f} ms/step  {tokens / t:11,.0f} tokens/s  {flops / t / 1e9:7.1f} GFLOP/s  "
              f"MFU {flops / t / peak:5.1%}  x{base / t:.2f} (best of {rounds} x {iters} steps)")


def _seed_worker(data: torch.Tensor, vocab_size: int, seed: int, go, done) -> None:
    """A seed's own process with one thread: steps whenever told, reports its seconds."""
    torch.set_num_threads(1)
    stepper = Stepper(data, vocab_size, settings("small"), torch.device("cpu"), seed=seed)
    stepper.steps(2)
    done.put(0.0)
    while (n := go.get()) > 0:
        done.put(stepper.steps(n) * n)


def seeds(data: torch.Tensor, vocab_size: int, n_seeds: int, iters: int, rounds: int) -> None:
    """Wall time for `iters` steps of each of n_seeds models: one after another (all threads), one
    process stepping the models in turn (all threads), one process per seed (one thread each)."""
    s, cpu = settings("small"), torch.device("cpu")
    models = [Stepper(data, vocab_size, s, cpu, seed=k) for k in range(n_seeds)]
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
    print(f"{n_seeds} seeds x {iters} steps, reference configuration, {torch.get_num_threads()} threads in one process")
    base = min(times["one after another"])
    for name, ts in times.items():
        print(f"{name:30s} {min(ts):7.2f} s  {n_seeds * iters / min(ts):6.2f} steps/s  x{base / min(ts):.2f} "
              f"(best of {rounds} rounds)")


def quality(folder: Path) -> None:
    """2,000 steps at the reference configuration on the whole KJV as one text file, validated on its
    last 10% — the same split and schedule as the nanoGPT reference — with the trainer's defaults."""
    text = write_bible_text("en", folder / "kjv.txt")
    out = folder / "kjv.pt"
    argv = ["--text", str(text), "--preset", "small", "--out", str(out), "--sample-chars", "0",
            "--eval-interval", "2000", "--eval-iters", "200"]
    t0 = time.perf_counter()
    if train.main(argv) != 0:
        raise SystemExit("training failed")
    history = torch.load(out, weights_only=True)["history"]
    estimate = [r for r in history if r["kind"] == "eval"][-1]["val_loss"]
    final = history[-1]["val_loss"]
    print(f"quality: val loss after 2,000 iterations {final:.4f} nats (whole split), {estimate:.4f} (200-batch estimate); "
          f"nanoGPT reference {NANOGPT_VAL_LOSS}; difference {final - NANOGPT_VAL_LOSS:+.4f}; "
          f"{(time.perf_counter() - t0) / 60:.1f} min")


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
    p.add_argument("--quality", action="store_true", help="instead: train 2,000 steps on the KJV and report the val loss")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.quality:
            return quality(Path(tmp))
        text = write_bible_text("en", Path(tmp) / "kjv.txt").read_text(encoding="utf-8")
        tokenizer = CharTokenizer.from_text(text)
        data = torch.from_numpy(tokenizer.encode(text[:1_000_000]).astype("int64"))
        if args.seeds:
            return seeds(data, tokenizer.vocab_size, args.seeds, args.iters, args.rounds)
        device = resolve_device(args.device)
        speed(data, tokenizer.vocab_size, args.preset, device, args.iters, args.rounds, args.bf16 or native_bf16_cpu())


if __name__ == "__main__":
    main()
