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
from pathlib import Path
from typing import Callable, Optional

import torch

from charlens.data.corpora import Corpus
from charlens.data.tokenizer import UNKNOWN_ID, Tokenizer
from charlens.model.checkpoint import save_checkpoint
from charlens.model.transformer import ModelConfig, TransformerLM
from charlens.training import ddp
from charlens.training.config import ARCH_KEYS, lr_at, resolve_device
from charlens.training.log import write_log_and_plot
from charlens.training.runtime import autocast_for, resolve_compile, resolve_dtype
from charlens.training.snapshots import snapshot_path, snapshot_steps
from charlens.training.timeline import record_steps, recorder_for

INTERRUPTED = 130  # exit status after Ctrl-C, as a shell reports it
LOG_EVERY = 10  # steps between loss checks (the only host synchronization in the loop) and log records
EVAL_CHARS_PER_BATCH = 8192  # characters per batch of the whole-split evaluation


class NonFiniteLoss(Exception):
    """The loss became inf or nan: training stops without saving the damaged weights."""


def require_finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise NonFiniteLoss(f"the {what} is {value}")
    return value


def get_batch(data: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator,
              device: torch.device, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows (B, T) and the same windows shifted by one character, gathered in one
    indexing operation. The generator always draws the whole batch; `rows` keeps this process's
    share of it (DDP), so every process count sees the same global batches."""
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)[rows]
    windows = data[starts[:, None] + torch.arange(block_size + 1)]  # (B, T+1)
    if device.type == "cuda":  # copy while the GPU is busy with the previous step
        windows = windows.pin_memory().to(device, non_blocking=True)
    elif device.type != "cpu":
        windows = windows.to(device)
    return windows[:, :-1], windows[:, 1:]


def make_optimizer(model: TransformerLM, s: dict, device: torch.device, fused: Optional[bool] = None) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on LayerNorm weights or biases); by default the
    fused kernel (one pass over all parameters) on CPU and CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": s["weight_decay"]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    fused = device.type in ("cpu", "cuda") if fused is None else fused
    return torch.optim.AdamW(groups, lr=s["lr"], betas=(s["beta1"], s["beta2"]), fused=fused)


def train_step(model: TransformerLM, forward: Callable, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, lr: float, grad_clip: float, autocast) -> torch.Tensor:
    """One optimizer step at learning rate `lr` on the batch (x, y); returns its loss as a tensor, not
    a number, so that the step needs no host synchronization (the caller checks it every few steps).
    `forward` is the model or its torch.compile / DDP wrapper."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast:
        _, loss = forward(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


@torch.inference_mode()
def estimate_loss(model: TransformerLM, splits: dict[str, torch.Tensor], s: dict, device: torch.device, autocast,
                  d: ddp.Dist = ddp.Dist()) -> dict[str, float]:
    """Mean loss over eval_iters batches per split, drawn from a fixed generator so every
    evaluation sees the same windows and the training RNG is not touched. Under DDP each
    process evaluates every world-th batch and the sums are added up."""
    model.eval()
    sums = torch.zeros(len(splits), dtype=torch.float64, device=device)
    for k, data in enumerate(splits.values()):
        g = torch.Generator().manual_seed(s["seed"] + 1)
        for i in range(s["eval_iters"]):
            x, y = get_batch(data, s["block_size"], s["batch_size"], g, device)
            if i % d.world == d.rank:
                with autocast:
                    sums[k] += model(x, y)[1].double()
    model.train()
    means = (ddp.all_sum(d, sums) / s["eval_iters"]).tolist()  # the one host synchronization
    return dict(zip(splits, means))


@torch.inference_mode()
def full_loss(model: TransformerLM, data: torch.Tensor, s: dict, device: torch.device, autocast,
              d: ddp.Dist = ddp.Dist(), chars_per_batch: int = EVAL_CHARS_PER_BATCH) -> float:
    """Mean loss per character over the whole split, in consecutive non-overlapping windows, in
    batches of about `chars_per_batch` characters (no gradients, no attention weights kept; under
    DDP each process takes every world-th batch). 8k by default rather than more: on a CPU larger
    batches' activations leave the cache (`python bench/train_speed.py --eval-batches`)."""
    model.eval()
    T = s["block_size"]
    n = (len(data) - 1) // T
    x_all, y_all = data[: n * T].view(n, T), data[1: n * T + 1].view(n, T)
    rows = max(1, chars_per_batch // T)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for k, i in enumerate(range(0, n, rows)):
        if k % d.world == d.rank:
            x, y = x_all[i:i + rows].to(device), y_all[i:i + rows].to(device)
            with autocast:
                total += model(x, y)[1].double() * len(x)
    model.train()
    return ddp.all_sum(d, total).item() / n


def train(s: dict, corpus: Corpus, tokenizer: Tokenizer, checkpoint: Optional[dict] = None,
          stop_at: Optional[int] = None, label: str = "", position: int = 0) -> int:
    """The training loop. `stop_at` behaves like a Ctrl-C after that many steps (for tests); `label`
    names the run in its output and `position` is its progress bar's line (seeds trained side by side).
    Under torchrun every process runs this."""
    d = ddp.from_env()
    device = ddp.start(d, resolve_device(s["device"]))
    try:
        return _train(s, corpus, tokenizer, checkpoint, stop_at, label, position, d, device)
    finally:
        ddp.stop(d)


def _train(s: dict, corpus: Corpus, tokenizer: Tokenizer, checkpoint: Optional[dict], stop_at: Optional[int],
           label: str, position: int, d: ddp.Dist, device: torch.device) -> int:
    if s.get("threads"):
        torch.set_num_threads(s["threads"])
    dtype = resolve_dtype(s["dtype"], device)
    compiled = resolve_compile(s.get("compile"), device, s["max_iters"])
    autocast = autocast_for(dtype, device)
    out = Path(s["out"])
    splits = {name: torch.from_numpy(tokenizer.encode(text, unknown="replace").astype("int64"))
              for name, text in (("train", corpus.train), ("val", corpus.val))}

    torch.manual_seed(s["seed"])
    config = ModelConfig(vocab_size=tokenizer.vocab_size, **{k: s[k] for k in ARCH_KEYS})
    model = TransformerLM(config).to(device)
    optimizer = make_optimizer(model, s, device)
    batch_rng = torch.Generator().manual_seed(s["seed"])
    if d.active:  # dropout masks differ between processes (rank 0 keeps the single-process stream)
        torch.manual_seed(s["seed"] + d.rank)
    start, history, probe = 0, [], None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        batch_rng.set_state(checkpoint["rng"]["batch"])
        restore_rng(checkpoint["rng"], device, d)
        start, history, probe = checkpoint["iter"], list(checkpoint.get("history", [])), checkpoint.get("probe")
    # Timeline (rank 0 alone records: the others wait for it at the next step's gradient all-reduce).
    recorder = None
    if s["timeline"] and d.main:
        probe, recorder = recorder_for(probe, corpus, tokenizer, s, device)
    to_record = record_steps(s["max_iters"], s["eval_interval"]) if recorder else set()
    to_snapshot = snapshot_steps(s["snapshots"], s["max_iters"])
    step_model = ddp.wrap(d, torch.compile(model) if compiled else model, device)  # type: ignore[arg-type]
    my_rows = ddp.local_rows(d, s["batch_size"])

    saved: list[int] = []  # steps this run saved to `out`, for the messages below

    def save(it: int, path: Path = out) -> None:
        """Collective under DDP (every process's RNG state is gathered); rank 0 writes the checkpoint to
        `path`, and beside `out` also the log and the plot."""
        rng = {"batch": batch_rng.get_state(), "torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        ranks = ddp.gather_objects(d, {k: v for k, v in rng.items() if k != "batch"})
        if d.active:
            rng["ranks"] = ranks  # type: ignore[assignment]  # per-rank states, under DDP only
        if d.main:
            state = {"model_config": config.to_dict(), "model": model.state_dict(), "tokenizer": tokenizer.to_dict(),
                     "corpus": corpus.identity, "iter": it, "train_args": s, "optimizer": optimizer.state_dict(),
                     "rng": rng, "history": history}
            save_checkpoint({**state, "probe": probe} if probe is not None else state, path)
            if path == out:
                write_log_and_plot(history, out)
        if path == out:
            saved.append(it)

    # Ctrl-C and SIGTERM finish the current step, then save and exit with status 128 + the signal number.
    interrupted: list[int] = []
    previous_handlers = {sig: signal.signal(sig, lambda signum, _: interrupted.append(signum))
                         for sig in (signal.SIGINT, signal.SIGTERM)}
    say = print if d.main else lambda *a, **k: None
    say(f"{label + ': ' if label else ''}{corpus.name}: {', '.join(f'{k} {v:,}' for k, v in corpus.sizes().items())} characters, vocabulary "
        f"{tokenizer.vocab_size}; model {model.num_params() / 1e6:.2f}M parameters on {device} ({dtype}"
        f"{', compiled' if compiled else ''}{f', {d.world} processes' if d.active else ''}); "
        f"steps {start}..{s['max_iters']}", flush=True)
    if recorder and start and not any(r["kind"] == "probe" for r in history):
        say(f"{label + ': ' if label else ''}the checkpoint has no timeline; recording starts at step {start}", flush=True)
    from tqdm import tqdm
    bar = tqdm(range(start, s["max_iters"]), initial=start, total=s["max_iters"], unit="it", dynamic_ncols=True,
               desc=label or None, position=position, disable=not d.main)
    pending: list[tuple[int, float, torch.Tensor]] = []  # (step, lr, loss) not yet checked
    recorded: list[dict] = []  # timeline records not yet in the history (they join it in step order at a check)
    window = [time.perf_counter(), start]  # when the unchecked steps began, and at which step

    def record(step: int) -> None:
        """The timeline record of `step`; its time is not counted as training time."""
        began = time.perf_counter()
        recorded.append(recorder.record(model, step))  # type: ignore[union-attr]  # only called with a recorder
        window[0] += time.perf_counter() - began

    def check_losses() -> bool:
        """Check the pending losses (one host synchronization, and under DDP one all-reduce, averaging
        the losses over the processes); log every LOG_EVERY-th step; returns whether any process was
        interrupted."""
        flag = torch.tensor([1.0 if interrupted else 0.0], device=device)
        summed = ddp.all_sum(d, torch.cat([torch.stack([p[2] for p in pending]).float(), flag]) if pending else flag)
        values: list[float] = summed.tolist()
        stop = values.pop() > 0
        if not pending:
            return stop
        values = [v / d.world for v in values]
        for (step, lr, _), v in zip(pending, values):
            require_finite(v, f"training loss at step {step}")
        now, last = time.perf_counter(), pending[-1][0]
        ms = (now - window[0]) * 1e3 / (last - window[1])
        steps = [{"kind": "step", "iter": step, "loss": v, "lr": lr, "ms": ms}
                 for (step, lr, _), v in zip(pending, values) if (step - 1) % LOG_EVERY == 0]
        # in step order, so that where the checks fell (an interruption adds one) never changes the history
        history.extend(sorted(steps + recorded, key=lambda r: r["iter"]))
        recorded.clear()
        bar.set_postfix(loss=f"{values[-1]:.3f}", chars_s=f"{s['batch_size'] * s['block_size'] / ms * 1e3:,.0f}",
                        refresh=False)
        pending.clear()
        window[:] = [now, last]
        return stop

    try:
        if start == 0 and 0 in to_record:
            record(0)
        for it in bar:
            step = it + 1
            lr = lr_at(it, s)
            x, y = get_batch(splits["train"], s["block_size"], s["batch_size"], batch_rng, device, my_rows)
            try:
                loss = train_step(model, step_model, optimizer, x, y, lr, s["grad_clip"], autocast)
            except torch._dynamo.exc.BackendCompilerFailed as e:  # no working C++ compiler, or Ctrl-C killed it
                if not compiled:
                    raise
                compiled, step_model = False, ddp.wrap(d, model, device)  # the failed forward changed nothing
                if d.main and not interrupted:
                    bar.write(f"warning: torch.compile failed ({str(e).strip().splitlines()[0][:160]}); "
                              "training without it (--no-compile skips the attempt)")
                loss = train_step(model, step_model, optimizer, x, y, lr, s["grad_clip"], autocast)
            pending.append((step, lr, loss))
            if step in to_record:
                record(step)
            evaluate = step % s["eval_interval"] == 0 or step == s["max_iters"]
            snapshot = step in to_snapshot and step < s["max_iters"]  # the last one is written with the final state
            stop = False
            if step % LOG_EVERY == 0 or evaluate or snapshot or step == stop_at or (interrupted and not d.active):
                stop = check_losses()
            if evaluate:
                began = time.perf_counter()
                losses = estimate_loss(model, splits, s, device, autocast, d)
                require_finite(losses["train"] + losses["val"], f"evaluation loss at step {step}")
                history.append({"kind": "eval", "iter": step, "train_loss": losses["train"], "val_loss": losses["val"],
                                "ms": round((time.perf_counter() - began) * 1e3, 1)})
                if d.main:
                    bar.write(f"{label + ': ' if label else ''}step {step}: train {losses['train']:.4f}, val {losses['val']:.4f}")
                if step < s["max_iters"]:  # the last step is saved below, with the final validation loss
                    save(step)
                window[0] = time.perf_counter()  # steps/s counts training steps only
            if snapshot:
                save(step, snapshot_path(out, step))
                window[0] = time.perf_counter()
            if step < s["max_iters"] and (stop or step == stop_at):
                bar.close()
                save(step)
                how = "terminated (SIGTERM)" if interrupted[:1] == [signal.SIGTERM] else "interrupted"
                if d.main:
                    print(f"{label + ': ' if label else ''}{how} after step {step}; checkpoint saved to {out}; "
                          f"continue with --resume {out}", file=sys.stderr)
                return 128 + interrupted[0] if interrupted else INTERRUPTED
        bar.close()
        began = time.perf_counter()
        final = {"kind": "final", "iter": s["max_iters"],
                 "val_loss": full_loss(model, splits["val"], s, device, autocast, d)}
        final.update(val_bits_per_char=final["val_loss"] / math.log(2), ms=round((time.perf_counter() - began) * 1e3, 1))
        history.append(final)
        save(s["max_iters"])
        if s["max_iters"] in to_snapshot:
            save(s["max_iters"], snapshot_path(out, s["max_iters"]))
    except NonFiniteLoss as e:
        bar.close()
        if d.main:
            kept = (f"kept the last good checkpoint this run wrote: {out} (step {saved[-1]})" if saved
                    else f"this run wrote no checkpoint{f' ({out} is as it was)' if out.exists() else ''}")
            print(f"error: {e} (try a lower --lr); {kept}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    if not d.main:
        return 0
    print(f"{label + ': ' if label else ''}done: validation loss {final['val_loss']:.4f} nats/char = {final['val_bits_per_char']:.4f} bits/char "
          f"(whole validation split); checkpoint {out}")
    if s["sample_chars"]:
        prompt = torch.from_numpy(tokenizer.encode(corpus.val[:1], unknown="replace").astype("int64"))[None].to(device)
        sample = model.eval().generate(prompt, s["sample_chars"], temperature=0.8,
                                       generator=torch.Generator(device).manual_seed(s["seed"]), banned_tokens=(UNKNOWN_ID,))
        print("sample:\n" + tokenizer.decode(sample[0].tolist()))
    return 0


def restore_rng(rng: dict, device: torch.device, d: ddp.Dist) -> None:
    """Global RNG state (dropout) from a checkpoint: this process's own state when the checkpoint was
    written by as many processes; otherwise rank 0 takes the stored main state and the others restart
    their streams from seed + rank (with dropout 0 nothing depends on it)."""
    states = rng.get("ranks", [rng])
    if len(states) == d.world:
        own = states[d.rank]
    elif d.main:
        own = rng
    else:
        return
    torch.set_rng_state(own["torch"])
    if device.type == "cuda" and "cuda" in own:
        torch.cuda.set_rng_state(own["cuda"], device)
