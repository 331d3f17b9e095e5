"""Training settings: the typed settings of a run (TrainSettings), presets, the flags a resumed run may
change, and every check on them, made before any work starts."""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, Optional

import torch

from charlens.data.errors import UsageError
from charlens.data.tokenizer import ids_dtype
from charlens.model.checkpoint import CheckpointError
from charlens.model.limits import ARCH_RANGES, Range, available_memory, gib, training_bytes
from charlens.model.transformer import PRESETS, ModelConfig
from charlens.training.timeline import check_resumable

# Training settings for each architecture preset in model.transformer.PRESETS.
TRAIN_PRESETS: dict[str, dict] = {
    "tiny": dict(batch_size=8, max_iters=60, lr=1e-3, min_lr=1e-4, warmup_iters=10, eval_interval=20, eval_iters=4),
    "small": dict(batch_size=32, max_iters=2000, lr=1e-3, min_lr=1e-4, warmup_iters=100, eval_interval=250, eval_iters=10),
    "base": dict(batch_size=32, max_iters=5000, lr=6e-4, min_lr=6e-5, warmup_iters=200, eval_interval=500, eval_iters=50,
                 dropout=0.1),
    # constant learning rate, no warm-up (the recipe); evaluations every 100 steps follow the phase change
    "induction": dict(batch_size=64, max_iters=3000, lr=1e-3, min_lr=1e-3, warmup_iters=0, eval_interval=100, eval_iters=4),
}
COMMON = dict(dropout=0.0, weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0, seed=1337)
ARCH_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "dropout")
MODEL_FLAGS = ("attn_only",)  # model_config booleans that are settings too
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
ENCODING_BYTES = 32 << 20  # encoding one piece of text (a million characters) into ids, at its peak
# Settings that may differ when resuming (they do not change what the model learns per step,
# except max_iters, which extends the run and its cosine schedule).
RESUMABLE_OVERRIDES = ("max_iters", "eval_interval", "eval_iters", "device", "compile", "dtype", "threads", "out",
                       "sample_chars", "timeline", "snapshots")


def flag(key: str) -> str:
    return f"--{key.replace('_', '-')}"


@dataclass(frozen=True)
class TrainSettings:
    """Every setting of one training run, read by attribute (a misspelt name fails in mypy, not after an
    hour of training). A checkpoint stores it flat as `train_args` (`to_dict`); `from_dict` reads it back,
    also from the checkpoints of older versions. Build one with `settings_from_flags` or `for_preset`, which
    check every value first."""

    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    dropout: float
    batch_size: int
    max_iters: int
    lr: float
    min_lr: float
    warmup_iters: int
    eval_interval: int
    eval_iters: int
    weight_decay: float
    beta1: float
    beta2: float
    grad_clip: float
    seed: int
    attn_only: bool = False  # blocks without MLP (model.transformer.ModelConfig.attn_only)
    out: Optional[str] = None  # the checkpoint; None until the corpus names it (checkpoints/<name>.pt)
    device: str = "auto"
    dtype: str = "auto"
    compile: Optional[bool] = None  # None: chosen from the device (training.runtime)
    threads: Optional[int] = None  # None: torch's choice
    sample_chars: int = 300
    timeline: bool = True  # record the timeline (training/timeline.py)
    snapshots: int = 0  # snapshots to keep (training/snapshots.py)
    preset: Optional[str] = None  # where the defaults came from (provenance only)

    def to_dict(self) -> dict[str, Any]:
        """The flat dict a checkpoint stores as train_args."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainSettings":
        """Settings from a dict such as a checkpoint's train_args, checked (UsageError naming the flag);
        the flags older versions stored beside the settings (LEGACY_KEYS) are dropped."""
        kept = {**DEFAULTS, **{k: v for k, v in d.items() if k not in LEGACY_KEYS}}
        unknown = sorted(kept.keys() - FIELDS)
        if unknown:
            raise UsageError(f"unknown setting {unknown[0]!r}")
        check_settings(kept)
        return cls(**kept)

    @classmethod
    def for_preset(cls, preset: str, **changes: Any) -> "TrainSettings":
        """A preset's settings with `changes` (e.g. max_iters=100), checked."""
        return cls.from_dict({**COMMON, **PRESETS[preset], **TRAIN_PRESETS[preset], "preset": preset, **changes})

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, **{k: getattr(self, k) for k in ARCH_KEYS + MODEL_FLAGS})


FIELDS = {f.name for f in fields(TrainSettings)}
# The settings that have a default: also the values of a resumed checkpoint written before they existed.
DEFAULTS = {f.name: f.default for f in fields(TrainSettings) if f.default is not MISSING}
# What older versions stored in train_args beside the settings: the flags that choose a corpus or how
# to write, not what the run learns (now only in the checkpoint's corpus identity, or nowhere).
LEGACY_KEYS = ("lang", "text", "keep_niqqud", "overwrite", "resume")


def settings_from_flags(given: dict[str, Any], preset: str, checkpoint: Optional[dict], resume_path: Optional[str]) -> TrainSettings:
    """Preset, then (on resume) the checkpoint's settings, then the flags given (`given` holds only the flags
    the user set; those that are not settings, such as --lang, are left out, and a resumed run keeps its
    checkpoint's preset and corpus)."""
    given = {k: v for k, v in given.items() if k in FIELDS and k != "preset"}
    if checkpoint is None:
        return TrainSettings.for_preset(preset, **given)
    s = {**DEFAULTS, **{k: v for k, v in checkpoint["train_args"].items() if k not in LEGACY_KEYS}}
    found = setting_problem(s) or next(((k, "is not a setting of this version") for k in sorted(s.keys() - FIELDS)), None)
    if found:
        raise CheckpointError(f"{resume_path} holds no usable train_args.{found[0]}: {found[1]}")
    fixed = [k for k in given if k in s and k not in RESUMABLE_OVERRIDES and given[k] != s[k]]
    if fixed:
        raise UsageError("--resume continues a run with its own settings; these differ: "
                         + ", ".join(f"{flag(k)} {given[k]} (checkpoint: {s[k]})" for k in fixed))
    s.update({k: given[k] for k in RESUMABLE_OVERRIDES if k in given})
    s["out"] = given.get("out", resume_path)
    if checkpoint["iter"] >= s["max_iters"]:
        raise UsageError(f"{resume_path} already finished {checkpoint['iter']} steps; raise --max-iters to train further")
    if s["timeline"] and "probe" in checkpoint:
        check_resumable(checkpoint["probe"])
    return TrainSettings.from_dict(s)


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
    for key in ("timeline", *MODEL_FLAGS):
        if not isinstance(s.get(key), bool):
            return key, f"must be true or false, got {s.get(key)!r}"
    if s.get("dtype") not in DTYPES:
        return "dtype", f"must be one of {', '.join(DTYPES)}, got {s.get('dtype')!r}"
    if not isinstance(s.get("device"), str):
        return "device", f"must be a str, got {s.get('device')!r}"
    if s.get("compile") not in (True, False, None):  # None: chosen from the device (training.runtime)
        return "compile", f"must be true, false or null (auto), got {s.get('compile')!r}"
    for key in ("out", "preset"):
        if not isinstance(s.get(key), (str, type(None))):
            return key, f"must be a str, got {s.get(key)!r}"
    return None


def check_settings(s: dict) -> None:
    """Refuse values no run can use (one line naming the flag and its allowed range)."""
    found = setting_problem(s)
    if found:
        raise UsageError(f"{flag(found[0])} {found[1]}")


def check_vocabulary(vocab_size: int) -> None:
    """A text with more distinct characters than a model's vocabulary may hold is refused before anything is built."""
    problem = ARCH_RANGES["vocab_size"].problem(vocab_size)
    if problem:
        raise UsageError(f"the text has {vocab_size - 1:,} distinct characters: a character model's vocabulary {problem}")


def check_memory(s: TrainSettings, vocab_size: int, n_chars: int) -> None:
    """Refuse a run whose model, optimizer state, one step's activations and token ids (1 or 2 bytes a
    character, training.batches) would not fit in the memory available (on CPU, where they all live)."""
    ids = ids_dtype(vocab_size).itemsize * n_chars + ENCODING_BYTES
    need, free = training_bytes(s.model_config(vocab_size), s.batch_size) + ids, available_memory()
    if free is not None and need > free:
        raise UsageError(f"this run needs about {gib(need)} of memory (model, AdamW state, activations of --batch-size "
                         f"{s.batch_size} x --block-size {s.block_size}, corpus as token ids), more than the "
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


def lr_at(it: int, s: TrainSettings) -> float:
    """Linear warm-up to lr, then cosine decay to min_lr at max_iters."""
    if it < s.warmup_iters:
        return s.lr * (it + 1) / (s.warmup_iters + 1)
    progress = min(1.0, (it - s.warmup_iters) / max(1, s.max_iters - s.warmup_iters))
    return s.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (s.lr - s.min_lr)
