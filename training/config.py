"""Training settings: presets, the flags a resumed run may change, and every check on them,
made before any work starts."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional

import torch

from data.errors import UsageError
from model.transformer import PRESETS, ModelConfig

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


def settings_from_flags(given: dict[str, Any], preset: str, checkpoint: Optional[dict], resume_path: Optional[str]) -> dict:
    """Preset, then (on resume) the checkpoint's settings, then the flags given (`given` holds only
    the flags the user set)."""
    if checkpoint is not None:
        s = dict(checkpoint["train_args"])
        fixed = [k for k in given if k in s and k not in RESUMABLE_OVERRIDES + NOT_SETTINGS and given[k] != s[k]]
        if fixed:
            raise UsageError("--resume continues a run with its own settings; these differ: "
                             + ", ".join(f"--{k.replace('_', '-')} {given[k]} (checkpoint: {s[k]})" for k in fixed))
        s.update({k: given[k] for k in RESUMABLE_OVERRIDES if k in given})
        s["out"] = given.get("out", resume_path)
        if checkpoint["iter"] >= s["max_iters"]:
            raise UsageError(f"{resume_path} already finished {checkpoint['iter']} steps; raise --max-iters to train further")
    else:
        s = {**COMMON, **PRESETS[preset], **TRAIN_PRESETS[preset], **given}
    s.pop("resume", None)
    check_settings(s)
    return s


def check_settings(s: dict) -> None:
    """Refuse values no run can use (one line naming the flag)."""
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
