"""Training settings: presets, the flags a resumed run may change, and every check on them,
made before any work starts."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional

import torch

from charlens.data.errors import UsageError
from charlens.model.checkpoint import CheckpointError, load_checkpoint
from charlens.model.limits import ARCH_RANGES, Range, available_memory, gib, training_bytes
from charlens.model.transformer import PRESETS, ModelConfig
from charlens.training.log import log_paths
from charlens.training.timeline import check_resumable

# Training settings for each architecture preset in model.transformer.PRESETS.
TRAIN_PRESETS: dict[str, dict] = {
    "tiny": dict(batch_size=8, max_iters=60, lr=1e-3, min_lr=1e-4, warmup_iters=10, eval_interval=20, eval_iters=4),
    "small": dict(batch_size=32, max_iters=2000, lr=1e-3, min_lr=1e-4, warmup_iters=100, eval_interval=250, eval_iters=20),
    "base": dict(batch_size=32, max_iters=5000, lr=6e-4, min_lr=6e-5, warmup_iters=200, eval_interval=500, eval_iters=50,
                 dropout=0.1),
}
COMMON = dict(dropout=0.0, weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0, seed=1337)
# What a run records beside its checkpoint (training/timeline.py, training/snapshots.py); also the values
# for a resumed checkpoint written before these settings existed.
RECORDING = dict(timeline=True, snapshots=0)
ARCH_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "dropout")
# Allowed values of every numeric setting, checked before any work (train.py --help shows them).
# Seeds are non-negative 64-bit integers (torch's seed type), leaving room for seed + 1 (evaluation batches).
SETTING_RANGES: dict[str, Range] = {
    **{k: ARCH_RANGES[k] for k in ARCH_KEYS},
    "batch_size": Range(1, 65_536), "max_iters": Range(1, 10**9), "warmup_iters": Range(0, 10**9),
    "eval_interval": Range(1, 10**9), "eval_iters": Range(1, 100_000),
    "lr": Range(0, 10, float, lo_open=True), "min_lr": Range(0, 10, float), "weight_decay": Range(0, 100, float),
    "beta1": Range(0, 1, float, hi_open=True), "beta2": Range(0, 1, float, hi_open=True),
    "grad_clip": Range(0, 1e6, float), "seed": Range(0, 2**63 - 2),
    "threads": Range(1, 1024), "sample_chars": Range(0, 100_000), "snapshots": Range(0, 10**9),
}
OPTIONAL_SETTINGS = ("threads",)  # None = torch's choice
DTYPES = ("auto", "float32", "bfloat16")
# Settings that may differ when resuming (they do not change what the model learns per step,
# except max_iters, which extends the run and its cosine schedule).
RESUMABLE_OVERRIDES = ("max_iters", "eval_interval", "eval_iters", "device", "compile", "dtype", "threads", "out",
                       "sample_chars", "timeline", "snapshots")
NOT_SETTINGS = ("resume", "preset", "lang", "text", "keep_niqqud", "drop_vowels", "overwrite")  # flags a resumed run takes from the checkpoint


def flag(key: str) -> str:
    return f"--{key.replace('_', '-')}"


def settings_from_flags(given: dict[str, Any], preset: str, checkpoint: Optional[dict], resume_path: Optional[str]) -> dict:
    """Preset, then (on resume) the checkpoint's settings, then the flags given (`given` holds only
    the flags the user set)."""
    if checkpoint is not None:
        s = {**RECORDING, **checkpoint["train_args"]}
        found = setting_problem(s)
        if found:
            raise CheckpointError(f"{resume_path} holds no usable train_args.{found[0]}: {found[1]}")
        fixed = [k for k in given if k in s and k not in RESUMABLE_OVERRIDES + NOT_SETTINGS and given[k] != s[k]]
        if fixed:
            raise UsageError("--resume continues a run with its own settings; these differ: "
                             + ", ".join(f"{flag(k)} {given[k]} (checkpoint: {s[k]})" for k in fixed))
        s.update({k: given[k] for k in RESUMABLE_OVERRIDES if k in given})
        s["out"] = given.get("out", resume_path)
        if checkpoint["iter"] >= s["max_iters"]:
            raise UsageError(f"{resume_path} already finished {checkpoint['iter']} steps; raise --max-iters to train further")
        if s["timeline"] and "probe" in checkpoint:
            check_resumable(checkpoint["probe"])
    else:
        s = {**COMMON, **RECORDING, "dtype": "auto", **PRESETS[preset], **TRAIN_PRESETS[preset], **given}
    s.pop("resume", None)
    check_settings(s)
    return s


def setting_problem(s: dict) -> Optional[tuple[str, str]]:
    """The first setting that no run can use, as (name, what is wrong); None when all are usable."""
    for key, allowed in SETTING_RANGES.items():
        if key in OPTIONAL_SETTINGS and s.get(key) is None:
            continue
        problem = allowed.problem(s.get(key))
        if problem:
            return key, problem
    if s["n_embd"] % s["n_head"]:
        return "n_embd", f"({s['n_embd']}) must be divisible by --n-head ({s['n_head']})"
    if s["snapshots"] > s["max_iters"]:
        return "snapshots", f"{s['snapshots']} is more than --max-iters {s['max_iters']} (at most one snapshot per step)"
    if not isinstance(s.get("timeline"), bool):
        return "timeline", f"must be true or false, got {s.get('timeline')!r}"
    if s.get("dtype") not in DTYPES:
        return "dtype", f"must be one of {', '.join(DTYPES)}, got {s.get('dtype')!r}"
    if not isinstance(s.get("device"), str):
        return "device", f"must be a str, got {s.get('device')!r}"
    if s.get("compile") not in (True, False, None):  # None: chosen from the device (training.runtime)
        return "compile", f"must be true, false or null (auto), got {s.get('compile')!r}"
    return None


def check_settings(s: dict) -> None:
    """Refuse values no run can use (one line naming the flag and its allowed range)."""
    found = setting_problem(s)
    if found:
        raise UsageError(f"{flag(found[0])} {found[1]}")


def check_memory(s: dict, vocab_size: int, n_chars: int) -> None:
    """Refuse a run whose model, optimizer state, one step's activations and token ids (10 bytes a
    character while encoding) would not fit in the memory available (on CPU, where they all live)."""
    config = ModelConfig(vocab_size=vocab_size, **{k: s[k] for k in ARCH_KEYS})
    need, free = training_bytes(config, s["batch_size"]) + 10 * n_chars, available_memory()
    if free is not None and need > free:
        raise UsageError(f"this run needs about {gib(need)} of memory (model, AdamW state, activations of --batch-size "
                         f"{s['batch_size']} x --block-size {s['block_size']}, corpus as token ids), more than the "
                         f"{gib(free)} available; lower --batch-size, --block-size, --n-embd or --n-layer")


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


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (resolved links, hard links: same device and inode)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(out: Path, inputs: list[Path], resume: Optional[Path], overwrite: bool) -> None:
    """Refuse, before any work, to write the checkpoint (or the log and plot beside it) over a file that
    must survive: a corpus file in `inputs`, any existing file that is not a charlens checkpoint, and,
    without --overwrite, a checkpoint other than the --resume file (or a log/plot with no checkpoint)."""
    check_writable(out)
    for target in (out, *log_paths(out)):
        for source in inputs:
            if same_file(target, source):
                raise UsageError(f"refusing to write {target}: it is the corpus file {source}; choose another --out")
    if out.exists():
        if resume is not None and same_file(out, resume):
            return  # continuing the run in place
        try:
            existing = load_checkpoint(out)
        except CheckpointError:
            raise UsageError(f"refusing to overwrite {out}: it exists and is not a loadable charlens checkpoint; "
                             "choose another --out") from None
        if not overwrite:
            raise UsageError(f"{out} already holds a checkpoint (step {existing['iter']}); continue it with --resume {out}, "
                             "or add --overwrite to replace it")
    elif not overwrite:
        for other in log_paths(out):
            if other.exists():
                raise UsageError(f"refusing to overwrite {other}: no checkpoint {out} is beside it, so charlens may not "
                                 "have written it; add --overwrite to replace it")


def lr_at(it: int, s: dict) -> float:
    """Linear warm-up to lr, then cosine decay to min_lr at max_iters."""
    if it < s["warmup_iters"]:
        return s["lr"] * (it + 1) / (s["warmup_iters"] + 1)
    progress = min(1.0, (it - s["warmup_iters"]) / max(1, s["max_iters"] - s["warmup_iters"]))
    return s["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * progress)) * (s["lr"] - s["min_lr"])
