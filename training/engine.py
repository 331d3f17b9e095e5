"""The training loop: batches, one optimizer step, evaluation, checkpointing, Ctrl-C.

Batches are drawn from a torch.Generator whose state (with torch's global RNG for dropout) is
stored in the checkpoint, so on CPU an interrupted and resumed run ends with exactly the weights
of an uninterrupted one.
"""
from __future__ import annotations

import math
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Optional

import torch

from data.corpora import Corpus
from data.tokenizer import UNKNOWN_ID, CharTokenizer
from model.checkpoint import save_checkpoint
from model.transformer import ModelConfig, TransformerLM
from training.config import ARCH_KEYS, lr_at, resolve_device
from training.log import write_log_and_plot

INTERRUPTED = 130  # exit status after Ctrl-C, as a shell reports it


class NonFiniteLoss(Exception):
    """The loss became inf or nan: training stops without saving the damaged weights."""


def require_finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise NonFiniteLoss(f"the {what} is {value}")
    return value


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

    saved: list[int] = []  # steps this run saved, for the messages below

    def save(it: int) -> None:
        rng = {"batch": batch_rng.get_state(), "torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        save_checkpoint({"model_config": config.to_dict(), "model": model.state_dict(), "tokenizer": tokenizer.to_dict(),
                         "corpus": corpus.identity, "iter": it, "train_args": s, "optimizer": optimizer.state_dict(),
                         "rng": rng, "history": history}, out)
        write_log_and_plot(history, out)
        saved.append(it)

    # Ctrl-C and SIGTERM finish the current step, then save and exit with status 128 + the signal number.
    interrupted: list[int] = []
    previous_handlers = {sig: signal.signal(sig, lambda signum, _: interrupted.append(signum))
                         for sig in (signal.SIGINT, signal.SIGTERM)}
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
                how = "terminated (SIGTERM)" if interrupted[:1] == [signal.SIGTERM] else "interrupted"
                print(f"{how} after step {step}; checkpoint saved to {out}; continue with --resume {out}", file=sys.stderr)
                return 128 + interrupted[0] if interrupted else INTERRUPTED
        bar.close()
        final = {"kind": "final", "iter": s["max_iters"], "val_loss": full_loss(model, splits["val"], s, device, autocast)}
        final["val_bits_per_char"] = final["val_loss"] / math.log(2)
        history.append(final)
        save(s["max_iters"])
    except NonFiniteLoss as e:
        bar.close()
        kept = (f"kept the last good checkpoint this run wrote: {out} (step {saved[-1]})" if saved
                else f"this run wrote no checkpoint{f' ({out} is as it was)' if out.exists() else ''}")
        print(f"error: {e} (try a lower --lr); {kept}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    print(f"done: validation loss {final['val_loss']:.4f} nats/char = {final['val_bits_per_char']:.4f} bits/char "
          f"(whole validation split); checkpoint {out}")
    if s["sample_chars"]:
        prompt = torch.from_numpy(tokenizer.encode(corpus.val[:1], unknown="replace").astype("int64"))[None].to(device)
        sample = model.eval().generate(prompt, s["sample_chars"], temperature=0.8,
                                       generator=torch.Generator(device).manual_seed(s["seed"]), banned_tokens=(UNKNOWN_ID,))
        print("sample:\n" + tokenizer.decode(sample[0].tolist()))
    return 0
