"""Training speed (and optionally quality) at the fixed reference configuration.

    python bench/train_speed.py                  # ms/iter, chars/s, FLOP/s, MFU; eager vs --compile
    python bench/train_speed.py --quality        # instead: 2,000 iterations on the full King James Bible

The reference configuration is nanoGPT's char-level setting: 4 layers, 4 heads, 128 embedding,
block 128, batch 32, float32, AdamW lr 1e-3 (warm-up 100, cosine to 1e-4 over 2,000 steps,
beta2 0.99). MFU is measured against this machine's own 2048x2048 float32 matmul throughput, and
compiled vs eager is a ratio within one run of interleaved rounds, reported from each
variant's best round (load from other processes only ever adds time).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train  # noqa: E402
from data.corpora import write_bible_text  # noqa: E402
from data.tokenizer import CharTokenizer  # noqa: E402
from model.transformer import PRESETS, ModelConfig, TransformerLM  # noqa: E402
from training.config import ARCH_KEYS, COMMON, TRAIN_PRESETS, lr_at  # noqa: E402
from training.engine import get_batch, make_optimizer, train_step  # noqa: E402

REFERENCE = {**COMMON, **PRESETS["small"], **TRAIN_PRESETS["small"], "dtype": "float32"}
NANOGPT_VAL_LOSS = 1.41  # nats, nanoGPT at this configuration after 2,000 iterations (last 10% of the KJV)


def matmul_peak_flops(n: int = 2048, repeats: int = 10) -> float:
    """Best observed float32 FLOP/s of an n x n matmul: the machine's practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


class Stepper:
    """One model + optimizer at the reference configuration, taking the trainer's own steps on fixed data."""

    def __init__(self, data: torch.Tensor, vocab_size: int, compile: bool):
        torch.manual_seed(REFERENCE["seed"])
        config = ModelConfig(vocab_size=vocab_size, **{k: REFERENCE[k] for k in ARCH_KEYS})
        self.model = TransformerLM(config)
        self.optimizer = make_optimizer(self.model, REFERENCE, torch.device("cpu"))
        self.forward = torch.compile(self.model) if compile else self.model
        self.data, self.rng, self.it = data, torch.Generator().manual_seed(0), 0

    def steps(self, n: int) -> float:
        """Run n training steps; return seconds per step."""
        t0 = time.perf_counter()
        for _ in range(n):
            x, y = get_batch(self.data, REFERENCE["block_size"], REFERENCE["batch_size"], self.rng, torch.device("cpu"))
            train_step(self.model, self.forward, self.optimizer, x, y, lr_at(self.it, REFERENCE),
                             REFERENCE["grad_clip"], nullcontext(), self.it + 1)
            self.it += 1
        return (time.perf_counter() - t0) / n


def speed(data: torch.Tensor, vocab_size: int, iters: int, rounds: int, with_compile: bool) -> None:
    peak = matmul_peak_flops()
    variants = {"eager": Stepper(data, vocab_size, compile=False)}
    if with_compile:
        variants["compile"] = Stepper(data, vocab_size, compile=True)
    for name, stepper in variants.items():  # warm-up (and compilation) outside the timing
        t0 = time.perf_counter()
        stepper.steps(3)
        print(f"{name}: warm-up {time.perf_counter() - t0:.1f} s")
    times = {name: [] for name in variants}
    for _ in range(rounds):  # interleaved, so load from other processes hits both alike
        for name, stepper in variants.items():
            times[name].append(stepper.steps(iters))
    chars = REFERENCE["batch_size"] * REFERENCE["block_size"]
    flops = variants["eager"].model.flops_per_token() * chars
    print(f"config: {', '.join(f'{k}={REFERENCE[k]}' for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'batch_size', 'dtype'))}; "
          f"{variants['eager'].model.num_params() / 1e6:.3f}M parameters; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"2048x2048 float32 matmul peak: {peak / 1e9:.1f} GFLOP/s")
    best = {name: min(ts) for name, ts in times.items()}  # the least disturbed round: others' load only adds time
    for name, ts in times.items():
        s = best[name]
        print(f"{name:8s} {s * 1e3:7.1f} ms/iter  {chars / s:9,.0f} chars/s  {flops / s / 1e9:6.1f} GFLOP/s  "
              f"MFU {flops / s / peak:5.1%}  (best of {rounds} x {iters} iterations; median {statistics.median(ts) * 1e3:.1f} ms)")
    if with_compile:
        print(f"compile speed-up: {best['eager'] / best['compile']:.2f}x (best rounds)")


def quality(folder: Path) -> None:
    """2,000 iterations at the reference configuration on the whole KJV as one text file,
    validated on its last 10% — the same split and schedule as the nanoGPT reference."""
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
    p.add_argument("--iters", type=int, default=10, help="iterations per timed round (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per variant (default 3)")
    p.add_argument("--no-compile", action="store_true", help="time eager mode only")
    p.add_argument("--quality", action="store_true", help="instead of timing, train 2,000 iterations on the KJV and report the val loss")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.quality:
            return quality(Path(tmp))
        text = write_bible_text("en", Path(tmp) / "kjv.txt").read_text(encoding="utf-8")
        tokenizer = CharTokenizer.from_text(text)
        data = torch.from_numpy(tokenizer.encode(text[:200_000]).astype("int64"))
        speed(data, tokenizer.vocab_size, args.iters, args.rounds, not args.no_compile)


if __name__ == "__main__":
    main()
