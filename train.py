"""Train a character-level TransformerLM on English or Hebrew text.

    python train.py --lang en                       # the King James Bible (39 OT books), small preset
    python train.py --lang he                       # the Hebrew Bible, niqqud removed (--keep-niqqud keeps it)
    python train.py --text corpus.txt --out checkpoints/mine.pt
    python train.py --resume checkpoints/en.pt --max-iters 4000

Writes checkpoints/<name>.pt and, beside it, <name>.loss.png and <name>.log.jsonl.
Ctrl-C saves a checkpoint and exits; --resume continues bit-identically on CPU, because
batches are drawn from a torch.Generator whose state (with torch's global RNG for
dropout) is stored in the checkpoint.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Optional

import torch

from data.corpora import LANGS, Corpus, CorpusError, bible_corpus, corpus_from_identity, file_corpus
from data.tokenizer import UNKNOWN_ID, CharTokenizer, tokenizer_from_dict
from model.checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from model.transformer import PRESETS, ModelConfig, TransformerLM

# Training settings for each architecture preset in model.transformer.PRESETS.
TRAIN_PRESETS: dict[str, dict] = {
    "tiny": dict(batch_size=8, max_iters=60, lr=1e-3, min_lr=1e-4, warmup_iters=10, eval_interval=20, eval_iters=4),
    "small": dict(batch_size=32, max_iters=2000, lr=1e-3, min_lr=1e-4, warmup_iters=100, eval_interval=250, eval_iters=20),
    "base": dict(batch_size=32, max_iters=5000, lr=6e-4, min_lr=6e-5, warmup_iters=200, eval_interval=500, eval_iters=50,
                 dropout=0.1),
}
COMMON = dict(dropout=0.0, weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0, seed=1337)
ARCH_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "dropout")
# Settings that may differ when resuming (they do not change what the model learns per step,
# except max_iters, which extends the run and its cosine schedule).
RESUMABLE_OVERRIDES = ("max_iters", "eval_interval", "eval_iters", "device", "compile", "dtype", "threads", "out",
                       "sample_chars")
NOT_SETTINGS = ("resume", "preset", "lang", "text", "keep_niqqud")  # flags that a resumed run takes from the checkpoint
INTERRUPTED = 130  # exit status after Ctrl-C, as a shell reports it


class NonFiniteLoss(Exception):
    """The loss became inf or nan: training stops without saving the damaged weights."""


def require_finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise NonFiniteLoss(f"the {what} is {value}")
    return value


class UsageError(Exception):
    """Bad arguments: reported as one line, exit status 2, before any work."""


def build_parser() -> argparse.ArgumentParser:
    presets = "\n".join(f"  {name:6s} {', '.join(f'{k}={v}' for k, v in {**PRESETS[name], **TRAIN_PRESETS[name]}.items())}"
                         for name in PRESETS)
    p = argparse.ArgumentParser(
        prog="train.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a character-level transformer (see README, section trainer).",
        epilog=f"presets (and, unless a preset says otherwise, {', '.join(f'{k}={v}' for k, v in COMMON.items())}):\n{presets}")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--lang", choices=LANGS, help="default corpus: en = King James Bible, he = Hebrew Bible")
    src.add_argument("--text", metavar="FILE", help="train on a UTF-8 text file; its last 10%% is the validation split")
    p.add_argument("--keep-niqqud", action="store_true", help="with --lang he: keep the vowel points (writes he_niqqud)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small", help="model size and schedule (default small)")
    for name, kind, what in [
        ("n-layer", int, "transformer blocks"), ("n-head", int, "attention heads per block"),
        ("n-embd", int, "embedding width (divisible by --n-head)"), ("block-size", int, "context length in characters"),
        ("dropout", float, "dropout probability"), ("batch-size", int, "sequences per step"),
        ("max-iters", int, "total optimizer steps; also the length of the cosine schedule"),
        ("lr", float, "peak learning rate"), ("min-lr", float, "learning rate at the end of the cosine decay"),
        ("warmup-iters", int, "linear warm-up steps"), ("weight-decay", float, "AdamW weight decay (matrices only)"),
        ("beta2", float, "AdamW beta2"), ("grad-clip", float, "clip the gradient norm to this (0 = off)"),
        ("eval-interval", int, "evaluate, log and checkpoint every this many steps"),
        ("eval-iters", int, "batches per split in each evaluation"), ("seed", int, "random seed"),
    ]:
        p.add_argument(f"--{name}", type=kind, metavar="N" if kind is int else "X", help=f"{what} (default: from the preset)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="auto = bfloat16 autocast on a GPU that supports it, else float32")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (faster steps after a warm-up)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch (default: torch's choice); 1 is often faster on a busy machine")
    p.add_argument("--out", help="checkpoint path (default checkpoints/<name>.pt, or the --resume file)")
    p.add_argument("--resume", metavar="CKPT", help="continue from this checkpoint with its settings")
    p.add_argument("--sample-chars", type=int, default=300, metavar="N", help="characters to generate at the end (0 = none)")
    return p


def settings_from_args(args: argparse.Namespace, checkpoint: Optional[dict]) -> dict:
    """Preset, then (on resume) the checkpoint's settings, then the flags given."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    if checkpoint is not None:
        s = dict(checkpoint["train_args"])
        fixed = [k for k in given if k in s and k not in RESUMABLE_OVERRIDES + NOT_SETTINGS and given[k] != s[k]]
        if fixed:
            raise UsageError("--resume continues a run with its own settings; these differ: "
                             + ", ".join(f"--{k.replace('_', '-')} {given[k]} (checkpoint: {s[k]})" for k in fixed))
        s.update({k: given[k] for k in RESUMABLE_OVERRIDES if k in given})
        s["out"] = given.get("out", args.resume)
        if checkpoint["iter"] >= s["max_iters"]:
            raise UsageError(f"{args.resume} already finished {checkpoint['iter']} steps; raise --max-iters to train further")
    else:
        s = {**COMMON, **PRESETS[args.preset], **TRAIN_PRESETS[args.preset], **given}
    s.pop("resume", None)
    for k in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters", "eval_interval", "eval_iters"):
        if s[k] <= 0:
            raise UsageError(f"--{k.replace('_', '-')} must be positive, got {s[k]}")
    for k in ("warmup_iters", "sample_chars", "weight_decay", "grad_clip", "min_lr"):
        if not (s[k] >= 0 and math.isfinite(s[k])):  # also refuses nan and inf
            raise UsageError(f"--{k.replace('_', '-')} must be a non-negative number, got {s[k]}")
    if not -(2**63) <= s["seed"] < 2**63 - 1:  # torch seeds are 64-bit; evaluation uses seed + 1
        raise UsageError(f"--seed must be a 64-bit integer, got {s['seed']}")
    if s.get("threads") is not None and s["threads"] <= 0:
        raise UsageError(f"--threads must be positive, got {s['threads']}")
    if not (s["lr"] > 0 and math.isfinite(s["lr"])):
        raise UsageError(f"--lr must be a positive number, got {s['lr']}")
    if not 0 <= s["beta2"] < 1:
        raise UsageError(f"--beta2 must be in [0, 1), got {s['beta2']}")
    try:
        ModelConfig(**{k: s[k] for k in ARCH_KEYS})
    except ValueError as e:
        raise UsageError(str(e)) from None
    return s


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown --device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available() or device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: not available on this machine")
    return device


def check_writable(path: Path) -> None:
    """Fail now, not after an hour of training, if the checkpoint cannot be written."""
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if path.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write the checkpoint to {path}: {folder} is not a writable folder")


def lr_at(it: int, s: dict) -> float:
    """Linear warm-up to lr, then cosine decay to min_lr at max_iters."""
    if it < s["warmup_iters"]:
        return s["lr"] * (it + 1) / (s["warmup_iters"] + 1)
    progress = min(1.0, (it - s["warmup_iters"]) / max(1, s["max_iters"] - s["warmup_iters"]))
    return s["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * progress)) * (s["lr"] - s["min_lr"])


def get_batch(data: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows (B, T) and the same windows shifted by one character."""
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    rows = data[starts[:, None] + torch.arange(block_size + 1)]  # (B, T+1)
    return rows[:, :-1].to(device), rows[:, 1:].to(device)


def make_optimizer(model: TransformerLM, s: dict, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on LayerNorm weights or biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": s["weight_decay"]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=s["lr"], betas=(s["beta1"], s["beta2"]), fused=device.type == "cuda")


def train_step(model: TransformerLM, forward: Callable, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, lr: float, grad_clip: float, autocast, step: int) -> float:
    """One optimizer step at learning rate `lr` on the batch (x, y); returns its loss. `forward` is the
    model or its torch.compile wrapper. A non-finite loss raises NonFiniteLoss before the weights change."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast:
        _, loss, _ = forward(x, y)
    loss_value = require_finite(loss.item(), f"training loss at step {step}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss_value


@torch.no_grad()
def estimate_loss(model, splits: dict[str, torch.Tensor], s: dict, device, autocast) -> dict[str, float]:
    """Mean loss over eval_iters batches per split, drawn from a fixed generator so every
    evaluation sees the same windows and the training RNG is not touched."""
    model.eval()
    out = {}
    for name, data in splits.items():
        g = torch.Generator().manual_seed(s["seed"] + 1)
        losses = []
        for _ in range(s["eval_iters"]):
            x, y = get_batch(data, s["block_size"], s["batch_size"], g, device)
            with autocast:
                losses.append(model(x, y)[1].item())
        out[name] = sum(losses) / len(losses)
    model.train()
    return out


@torch.no_grad()
def full_loss(model, data: torch.Tensor, s: dict, device, autocast) -> float:
    """Mean loss per character over the whole split, in consecutive non-overlapping windows."""
    model.eval()
    T = s["block_size"]
    n = (len(data) - 1) // T
    rows = data[: n * T + 1]
    x_all, y_all = rows[:-1].view(n, T), rows[1:].view(n, T)
    total = 0.0
    for i in range(0, n, 64):
        with autocast:
            total += model(x_all[i:i + 64].to(device), y_all[i:i + 64].to(device))[1].item() * len(x_all[i:i + 64])
    model.train()
    return total / n


def write_log_and_plot(history: list[dict], path: Path) -> None:
    """<name>.log.jsonl and <name>.loss.png beside the checkpoint, each written atomically."""
    stem = path.with_suffix("")
    log = "".join(json.dumps(r) + "\n" for r in history)
    atomic_write(stem.with_name(stem.name + ".log.jsonl"), lambda f: f.write(log.encode()))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = [r for r in history if r["kind"] == "step"]
    evals = [r for r in history if r["kind"] == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["iter"] for r in steps], [r["loss"] for r in steps], lw=0.6, alpha=0.5, label="train (batch)")
    for split in ("train", "val"):
        ax.plot([r["iter"] for r in evals], [r[f"{split}_loss"] for r in evals], "o-", ms=3, label=f"{split} (estimate)")
    ax.set(xlabel="iteration", ylabel="loss (nats/char)", title=path.stem)
    ax.grid(alpha=0.3)
    ax.legend()
    atomic_write(stem.with_name(stem.name + ".loss.png"), lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def prepare(args: argparse.Namespace) -> tuple[dict, Corpus, CharTokenizer, Optional[dict]]:
    """Everything that can fail because of the arguments, before any training work."""
    if args.keep_niqqud and args.lang != "he" and not args.resume:
        raise UsageError("--keep-niqqud only applies to --lang he")
    checkpoint = None
    if args.resume:
        checkpoint = load_checkpoint(args.resume)
        if "train_args" not in checkpoint or "optimizer" not in checkpoint or "rng" not in checkpoint:
            raise UsageError(f"{args.resume} holds no training state to resume from")
        if args.lang or args.text:
            raise UsageError("--resume takes its corpus from the checkpoint; drop --lang/--text")
    elif not (args.lang or args.text):
        raise UsageError("choose a corpus: --lang en, --lang he or --text FILE")
    s = settings_from_args(args, checkpoint)
    resolve_device(s["device"])
    if checkpoint is not None:
        corpus = corpus_from_identity(checkpoint["corpus"])
        try:
            tokenizer = tokenizer_from_dict(checkpoint["tokenizer"])
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{args.resume} holds no usable tokenizer ({type(e).__name__}: {e})") from None
    else:
        corpus = bible_corpus(args.lang, args.keep_niqqud) if args.lang else file_corpus(args.text, s["block_size"])
        tokenizer = CharTokenizer.from_text(corpus.train + corpus.val + corpus.heldout)
    s.setdefault("out", f"checkpoints/{corpus.name}.pt")
    check_writable(Path(s["out"]))
    return s, corpus, tokenizer, checkpoint


def train(s: dict, corpus: Corpus, tokenizer: CharTokenizer, checkpoint: Optional[dict] = None,
          stop_at: Optional[int] = None) -> int:
    """The training loop. `stop_at` behaves like a Ctrl-C after that many steps (for tests)."""
    device = resolve_device(s["device"])
    if s.get("threads"):
        torch.set_num_threads(s["threads"])
    dtype = s["dtype"] if s["dtype"] != "auto" else (
        "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bfloat16" else nullcontext()
    out = Path(s["out"])
    splits = {name: torch.from_numpy(tokenizer.encode(text, unknown="replace").astype("int64"))
              for name, text in (("train", corpus.train), ("val", corpus.val))}

    torch.manual_seed(s["seed"])
    config = ModelConfig(vocab_size=tokenizer.vocab_size, **{k: s[k] for k in ARCH_KEYS})
    model = TransformerLM(config).to(device)
    optimizer = make_optimizer(model, s, device)
    batch_rng = torch.Generator().manual_seed(s["seed"])
    start, history = 0, []
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        batch_rng.set_state(checkpoint["rng"]["batch"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if device.type == "cuda" and "cuda" in checkpoint["rng"]:
            torch.cuda.set_rng_state(checkpoint["rng"]["cuda"])
        start, history = checkpoint["iter"], list(checkpoint.get("history", []))
    step_model = torch.compile(model) if s["compile"] else model

    def save(it: int) -> None:
        rng = {"batch": batch_rng.get_state(), "torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        save_checkpoint({"model_config": config.to_dict(), "model": model.state_dict(), "tokenizer": tokenizer.to_dict(),
                         "corpus": corpus.identity, "iter": it, "train_args": s, "optimizer": optimizer.state_dict(),
                         "rng": rng, "history": history}, out)
        write_log_and_plot(history, out)

    interrupted = []
    previous_handler = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    print(f"{corpus.name}: {', '.join(f'{k} {v:,}' for k, v in corpus.sizes().items())} characters, vocabulary "
          f"{tokenizer.vocab_size}; model {model.num_params() / 1e6:.2f}M parameters on {device} ({dtype}); "
          f"steps {start}..{s['max_iters']}", flush=True)
    from tqdm import tqdm
    bar = tqdm(range(start, s["max_iters"]), initial=start, total=s["max_iters"], unit="it", dynamic_ncols=True)
    chars_per_step = s["batch_size"] * s["block_size"]
    try:
        for it in bar:
            step, t0 = it + 1, time.perf_counter()
            lr = lr_at(it, s)
            x, y = get_batch(splits["train"], s["block_size"], s["batch_size"], batch_rng, device)
            loss_value = train_step(model, step_model, optimizer, x, y, lr, s["grad_clip"], autocast, step)
            dt = time.perf_counter() - t0
            if it % 10 == 0:
                history.append({"kind": "step", "iter": step, "loss": loss_value, "lr": lr, "ms": dt * 1e3})
            bar.set_postfix(loss=f"{loss_value:.3f}", chars_s=f"{chars_per_step / dt:,.0f}", refresh=False)
            if step % s["eval_interval"] == 0 or step == s["max_iters"]:
                losses = estimate_loss(model, splits, s, device, autocast)
                require_finite(losses["train"] + losses["val"], f"evaluation loss at step {step}")
                history.append({"kind": "eval", "iter": step, "train_loss": losses["train"], "val_loss": losses["val"]})
                bar.write(f"step {step}: train {losses['train']:.4f}, val {losses['val']:.4f}")
                if step < s["max_iters"]:  # the last step is saved below, with the final validation loss
                    save(step)
            if step < s["max_iters"] and (interrupted or step == stop_at):
                bar.close()
                save(step)
                print(f"interrupted after step {step}; checkpoint saved to {out}; continue with --resume {out}",
                      file=sys.stderr)
                return INTERRUPTED
        bar.close()
        final = {"kind": "final", "iter": s["max_iters"], "val_loss": full_loss(model, splits["val"], s, device, autocast)}
        final["val_bits_per_char"] = final["val_loss"] / math.log(2)
        history.append(final)
        save(s["max_iters"])
    except NonFiniteLoss as e:
        bar.close()
        print(f"error: {e} (try a lower --lr); kept the last good checkpoint: "
              f"{out if out.exists() else 'none was written yet'}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    print(f"done: validation loss {final['val_loss']:.4f} nats/char = {final['val_bits_per_char']:.4f} bits/char "
          f"(whole validation split); checkpoint {out}")
    if s["sample_chars"]:
        prompt = torch.from_numpy(tokenizer.encode(corpus.val[:1], unknown="replace").astype("int64"))[None].to(device)
        sample = model.eval().generate(prompt, s["sample_chars"], temperature=0.8,
                                       generator=torch.Generator(device).manual_seed(s["seed"]), banned_tokens=(UNKNOWN_ID,))
        print("sample:\n" + tokenizer.decode(sample[0].tolist()))
    return 0


def main(argv: Optional[list[str]] = None, stop_at: Optional[int] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        s, corpus, tokenizer, checkpoint = prepare(args)
    except (UsageError, CorpusError, CheckpointError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while reading the corpus or checkpoint
        print("interrupted before training; nothing was written", file=sys.stderr)
        return INTERRUPTED
    try:
        return train(s, corpus, tokenizer, checkpoint, stop_at)
    except KeyboardInterrupt:  # Ctrl-C outside the training steps (set-up, final evaluation, sample)
        saved = Path(s["out"]).is_file()
        print(f"interrupted; {'the last checkpoint is ' + s['out'] if saved else 'no checkpoint was written'}", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
