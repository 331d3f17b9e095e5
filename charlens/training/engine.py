"""The training loop and its parts: `Trainer` (set-up, the step part and the checkpoint part), `LossLog`
(the record part: losses, log records, timeline records), training/evaluation.py (the evaluate part), and
`run_loop`, which only orders them and handles Ctrl-C. Batches come from a BatchSource
(training/batches.py), so a synthetic task plugs in without touching the loop.

Batches are drawn from a torch.Generator whose state (with torch's global RNG for dropout) is
stored in the checkpoint, so on CPU an interrupted and resumed run ends with exactly the weights
of an uninterrupted one.
"""
from __future__ import annotations

import math
import signal
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable, Optional

import torch

from charlens.data.tokenizer import UNKNOWN_ID, Tokenizer
from charlens.model.checkpoint import save_checkpoint
from charlens.model.transformer import TransformerLM
from charlens.training import ddp
from charlens.training.batches import BatchSource, to_device
from charlens.training.config import TrainSettings, lr_at, resolve_device
from charlens.training.evaluation import NonFiniteLoss, estimate_loss, full_loss, require_finite
from charlens.training.log import write_log_and_plot
from charlens.training.runtime import autocast_for, resolve_compile, resolve_dtype
from charlens.training.snapshots import snapshot_path, snapshot_steps
from charlens.training.timeline import record_steps, recorder_for

INTERRUPTED = 130  # exit status after Ctrl-C, as a shell reports it
LOG_EVERY = 10  # steps between loss checks (the only host synchronization in the loop) and log records


def make_optimizer(model: TransformerLM, s: TrainSettings, device: torch.device, fused: Optional[bool] = None) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on LayerNorm weights or biases); by default the
    fused kernel (one pass over all parameters) on CPU and CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": s.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    fused = device.type in ("cpu", "cuda") if fused is None else fused
    return torch.optim.AdamW(groups, lr=s.lr, betas=(s.beta1, s.beta2), fused=fused)


def train_step(model: TransformerLM, forward: Callable, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, lr: float, grad_clip: float, autocast: AbstractContextManager) -> torch.Tensor:
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


class Trainer:
    """One run: its model, optimizer, generators and history (restored from `checkpoint` when resuming),
    with the parts of a step: `step` (one optimizer step), `evaluate`, `final_loss` and `save`."""

    def __init__(self, s: TrainSettings, source: BatchSource, tokenizer: Tokenizer, checkpoint: Optional[dict],
                 d: ddp.Dist, device: torch.device) -> None:
        assert s.out is not None, "the settings name no checkpoint"
        self.s, self.source, self.tokenizer, self.d, self.device, self.out = s, source, tokenizer, d, device, Path(s.out)
        if s.threads:
            torch.set_num_threads(s.threads)
        self.dtype = resolve_dtype(s.dtype, device)
        self.compiled = resolve_compile(s.compile, device, s.max_iters)
        self.autocast = autocast_for(self.dtype, device)
        torch.manual_seed(s.seed)
        self.config = s.model_config(tokenizer.vocab_size)
        self.model = TransformerLM(self.config).to(device)
        self.optimizer = make_optimizer(self.model, s, device)
        self.batch_rng = torch.Generator().manual_seed(s.seed)
        if d.active:  # dropout masks differ between processes (rank 0 keeps the single-process stream)
            torch.manual_seed(s.seed + d.rank)
        self.start, self.history, self.probe = 0, [], None
        if checkpoint is not None:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.batch_rng.set_state(checkpoint["rng"]["batch"])
            restore_rng(checkpoint["rng"], device, d)
            self.start, self.history, self.probe = checkpoint["iter"], list(checkpoint.get("history", [])), checkpoint.get("probe")
        # Timeline (rank 0 alone records: the others wait for it at the next step's gradient all-reduce).
        self.recorder = None
        if s.timeline and d.main:
            self.probe, self.recorder = recorder_for(self.probe, source.heldout, source.lang, tokenizer, self.config, s.seed,
                                                     device)
        self.to_record = record_steps(s.max_iters, s.eval_interval) if self.recorder else set()
        self.to_snapshot = snapshot_steps(s.snapshots, s.max_iters)
        self.step_model = ddp.wrap(d, torch.compile(self.model) if self.compiled else self.model, device)  # type: ignore[arg-type]
        self.rows = ddp.local_rows(d, s.batch_size)
        self.saved: list[int] = []  # steps this run saved to `out`

    def describe(self) -> str:
        return (f"{self.source.describe()}, vocabulary {self.tokenizer.vocab_size}; model {self.model.num_params() / 1e6:.2f}M "
                f"parameters on {self.device} ({self.dtype}{', compiled' if self.compiled else ''}"
                f"{f', {self.d.world} processes' if self.d.active else ''}); steps {self.start}..{self.s.max_iters}")

    def step(self, it: int, warn: Callable[[str], None]) -> tuple[float, torch.Tensor]:
        """Step `it` + 1: its learning rate and its loss (a tensor). A torch.compile that fails (no working
        C++ compiler, or a Ctrl-C killed it) falls back to eager with one `warn`ing; the failed forward
        changed nothing, so the step is taken again."""
        lr = lr_at(it, self.s)
        x, y = to_device(*self.source.batch("train", self.batch_rng, self.rows), self.device)
        take = lambda: train_step(self.model, self.step_model, self.optimizer, x, y, lr, self.s.grad_clip, self.autocast)
        try:
            return lr, take()
        except torch._dynamo.exc.BackendCompilerFailed as e:
            if not self.compiled:
                raise
            self.compiled, self.step_model = False, ddp.wrap(self.d, self.model, self.device)
            warn(f"warning: torch.compile failed ({str(e).strip().splitlines()[0][:160]}); "
                 "training without it (--no-compile skips the attempt)")
            return lr, take()

    def evaluate(self, step: int) -> dict:
        """The evaluation record of `step` (appended to the history)."""
        began = time.perf_counter()
        losses = estimate_loss(self.model, self.source, self.s.eval_iters, self.s.seed + 1, self.device, self.autocast, self.d)
        require_finite(losses["train"] + losses["val"], f"evaluation loss at step {step}")
        record = {"kind": "eval", "iter": step, "train_loss": losses["train"], "val_loss": losses["val"],
                  "ms": round((time.perf_counter() - began) * 1e3, 1)}
        self.history.append(record)
        return record

    def final_loss(self) -> dict:
        """The final record: the loss over the whole validation split (appended to the history)."""
        began = time.perf_counter()
        loss = full_loss(self.model, self.source.whole("val"), self.device, self.autocast, self.d)
        record = {"kind": "final", "iter": self.s.max_iters, "val_loss": loss, "val_bits_per_char": loss / math.log(2),
                  "ms": round((time.perf_counter() - began) * 1e3, 1)}
        self.history.append(record)
        return record

    def save(self, it: int, path: Optional[Path] = None) -> None:
        """The checkpoint part. Collective under DDP (every process's RNG state is gathered); rank 0 writes
        the checkpoint to `path` (default `out`), and beside `out` also the log and the plot."""
        rng = {"batch": self.batch_rng.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        ranks = ddp.gather_objects(self.d, {k: v for k, v in rng.items() if k != "batch"})
        if self.d.active:
            rng["ranks"] = ranks  # type: ignore[assignment]  # per-rank states, under DDP only
        path = path or self.out
        if self.d.main:
            state = {"model_config": self.config.to_dict(), "model": self.model.state_dict(),
                     "tokenizer": self.tokenizer.to_dict(), "corpus": self.source.identity, "iter": it,
                     "train_args": self.s.to_dict(), "optimizer": self.optimizer.state_dict(), "rng": rng,
                     "history": self.history}
            save_checkpoint({**state, "probe": self.probe} if self.probe is not None else state, path)
            if path == self.out:
                write_log_and_plot(self.history, self.out)
        if path == self.out:
            self.saved.append(it)

    def sample(self) -> str:
        """`sample_chars` characters generated from the source's prompt (seeded: the same text every time)."""
        ids = self.tokenizer.encode(self.source.prompt, unknown="replace").astype("int64")
        prompt = torch.from_numpy(ids)[None].to(self.device)
        out = self.model.eval().generate(prompt, self.s.sample_chars, temperature=0.8, banned_tokens=(UNKNOWN_ID,),
                                         generator=torch.Generator(self.device).manual_seed(self.s.seed))
        return self.tokenizer.decode(out[0].tolist())


class LossLog:
    """The record part: the losses of the steps since the last check, kept as tensors (checking them is the
    loop's only host synchronization, and under DDP its one all-reduce), the timeline records taken since,
    and the clock of the training steps (evaluation, saving and recording are not counted)."""

    def __init__(self, t: Trainer) -> None:
        self.t = t
        self.pending: list[tuple[int, float, torch.Tensor]] = []  # (step, lr, loss) not yet checked
        self.recorded: list[dict] = []  # timeline records not yet in the history (they join it in step order)
        self.began, self.first = time.perf_counter(), t.start  # when the unchecked steps began, and after which step

    def add(self, step: int, lr: float, loss: torch.Tensor) -> None:
        self.pending.append((step, lr, loss))

    def record(self, step: int) -> None:
        """The timeline record of `step`; its time is not counted as training time."""
        began = time.perf_counter()
        self.recorded.append(self.t.recorder.record(self.t.model, step))  # type: ignore[union-attr]  # only with a recorder
        self.began += time.perf_counter() - began

    def restart_clock(self) -> None:
        self.began = time.perf_counter()

    def check(self, interrupted: bool) -> tuple[bool, Optional[str]]:
        """Check the pending losses (averaged over the processes); log every LOG_EVERY-th step. Returns
        whether any process was interrupted, and the progress bar's note (last loss, characters a second)."""
        t = self.t
        flag = torch.tensor([1.0 if interrupted else 0.0], device=t.device)
        summed = ddp.all_sum(t.d, torch.cat([torch.stack([p[2] for p in self.pending]).float(), flag]) if self.pending else flag)
        values: list[float] = summed.tolist()
        stop = values.pop() > 0
        if not self.pending:
            return stop, None
        values = [v / t.d.world for v in values]
        for (step, _, _), v in zip(self.pending, values):
            require_finite(v, f"training loss at step {step}")
        now, last = time.perf_counter(), self.pending[-1][0]
        ms = (now - self.began) * 1e3 / (last - self.first)
        steps = [{"kind": "step", "iter": step, "loss": v, "lr": lr, "ms": ms}
                 for (step, lr, _), v in zip(self.pending, values) if (step - 1) % LOG_EVERY == 0]
        # in step order, so that where the checks fell (an interruption adds one) never changes the history
        t.history.extend(sorted(steps + self.recorded, key=lambda r: r["iter"]))
        self.recorded.clear()
        self.pending.clear()
        self.began, self.first = now, last
        return stop, f"loss={values[-1]:.3f}, chars_s={t.s.batch_size * t.s.block_size / ms * 1e3:,.0f}"


def train(s: TrainSettings, source: BatchSource, tokenizer: Tokenizer, checkpoint: Optional[dict] = None,
          stop_at: Optional[int] = None, label: str = "", position: int = 0) -> int:
    """Train (or resume, from `checkpoint`) a run. `stop_at` behaves like a Ctrl-C after that many steps
    (for tests); `label` names the run in its output and `position` is its progress bar's line (seeds
    trained side by side). Under torchrun every process runs this."""
    d = ddp.from_env()
    device = ddp.start(d, resolve_device(s.device))
    try:
        return run_loop(Trainer(s, source, tokenizer, checkpoint, d, device), stop_at, label, position)
    finally:
        ddp.stop(d)


def run_loop(t: Trainer, stop_at: Optional[int], label: str, position: int) -> int:
    """The loop: steps, with a loss check every LOG_EVERY steps, evaluations, snapshots, and the final
    loss. Ctrl-C and SIGTERM finish the current step, then save and exit with status 128 + the signal."""
    s, d, out, prefix = t.s, t.d, t.out, f"{label}: " if label else ""
    interrupted: list[int] = []
    previous_handlers = {sig: signal.signal(sig, lambda signum, _: interrupted.append(signum))
                         for sig in (signal.SIGINT, signal.SIGTERM)}
    say = print if d.main else lambda *a, **k: None
    say(prefix + t.describe(), flush=True)
    if t.recorder and t.start and not any(r["kind"] == "probe" for r in t.history):
        say(f"{prefix}the checkpoint has no timeline; recording starts at step {t.start}", flush=True)
    from tqdm import tqdm
    bar = tqdm(range(t.start, s.max_iters), initial=t.start, total=s.max_iters, unit="it", dynamic_ncols=True,
               desc=label or None, position=position, disable=not d.main)
    log, final = LossLog(t), None
    warn = lambda message: bar.write(message) if d.main and not interrupted else None
    try:
        if t.start == 0 and 0 in t.to_record:
            log.record(0)
        for it in bar:
            step = it + 1
            log.add(step, *t.step(it, warn))
            if step in t.to_record:
                log.record(step)
            evaluate = step % s.eval_interval == 0 or step == s.max_iters
            snapshot = step in t.to_snapshot and step < s.max_iters  # the last one is written with the final state
            stop = False
            if step % LOG_EVERY == 0 or evaluate or snapshot or step == stop_at or (interrupted and not d.active):
                stop, note = log.check(bool(interrupted))
                if note:
                    bar.set_postfix_str(note, refresh=False)
            if evaluate:
                losses = t.evaluate(step)
                if d.main:
                    bar.write(f"{prefix}step {step}: train {losses['train_loss']:.4f}, val {losses['val_loss']:.4f}")
                if step < s.max_iters:  # the last step is saved below, with the final validation loss
                    t.save(step)
                log.restart_clock()  # steps/s counts training steps only
            if snapshot:
                t.save(step, snapshot_path(out, step))
                log.restart_clock()
            if step < s.max_iters and (stop or step == stop_at):
                bar.close()
                t.save(step)
                how = "terminated (SIGTERM)" if interrupted[:1] == [signal.SIGTERM] else "interrupted"
                say(f"{prefix}{how} after step {step}; checkpoint saved to {out}; continue with --resume {out}", file=sys.stderr)
                return 128 + interrupted[0] if interrupted else INTERRUPTED
        bar.close()
        final = t.final_loss()
        t.save(s.max_iters)
        if s.max_iters in t.to_snapshot:
            t.save(s.max_iters, snapshot_path(out, s.max_iters))
    except NonFiniteLoss as e:
        bar.close()
        kept = (f"kept the last good checkpoint this run wrote: {out} (step {t.saved[-1]})" if t.saved
                else f"this run wrote no checkpoint{f' ({out} is as it was)' if out.exists() else ''}")
        say(f"error: {e} (try a lower --lr); {kept}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    say(f"{prefix}done: validation loss {final['val_loss']:.4f} nats/char = {final['val_bits_per_char']:.4f} bits/char "
        f"(whole validation split); checkpoint {out}")
    if s.sample_chars and d.main:
        print("sample:\n" + t.sample())
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
