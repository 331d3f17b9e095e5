"""Allowed ranges of model sizes, and memory estimates, checked before anything is allocated.

The same ranges bound train.py's flags and the `model_config` of a checkpoint, so a flag can never
make a checkpoint that refuses to load, and a damaged checkpoint can never ask for gigabytes.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from charlens.model.transformer import ModelConfig


@dataclass(frozen=True)
class Range:
    """A closed or half-open interval of ints (kind=int) or finite numbers (kind=float)."""

    lo: float
    hi: float
    kind: type = int
    lo_open: bool = False
    hi_open: bool = False

    def __str__(self) -> str:
        fmt = lambda v: f"{int(v):,}" if float(v).is_integer() else f"{v:g}"
        return f"{'(' if self.lo_open else '['}{fmt(self.lo)}, {fmt(self.hi)}{')' if self.hi_open else ']'}"

    def problem(self, value: Any) -> Optional[str]:
        """None when `value` is allowed, else what is wrong, e.g. 'must be an integer in [1, 8,192], got 30000'."""
        what = "an integer" if self.kind is int else "a number"
        numeric = isinstance(value, int) or (self.kind is float and isinstance(value, float))
        ok = (numeric and not isinstance(value, bool) and math.isfinite(value)
              and (value > self.lo if self.lo_open else value >= self.lo)
              and (value < self.hi if self.hi_open else value <= self.hi))
        return None if ok else f"must be {what} in {self}, got {value!r}"


# Token ids are stored as uint16, hence the vocabulary bound; the others keep a model (and its
# causal masks, n_layer x block_size^2 bytes) within what a laptop could ever hold.
ARCH_RANGES: dict[str, Range] = {
    "vocab_size": Range(1, 65_536),
    "block_size": Range(1, 8_192),
    "n_layer": Range(1, 256),
    "n_head": Range(1, 256),
    "n_embd": Range(1, 8_192),
    "dropout": Range(0, 1, float, hi_open=True),
}
# Activations of one training step per token and layer, in float32 values: about 24 x n_embd, plus
# about 4 x n_head x block_size when dropout makes attention materialize its weights (measured on
# CPU, torch 2.13: within 30% for the presets and for block sizes up to 1024).
ACTIVATION_PER_EMBD = 24
ACTIVATION_PER_HEAD_KEY = 4


def state_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of TransformerLM(config).state_dict() (all float32), in its order, without
    building the model: a model on the 'meta' device would cost seconds of torch start-up per load.
    tests/test_limits.py checks this against the real model."""
    C, V, T = config.n_embd, config.vocab_size, config.block_size
    layer: dict[str, tuple[int, ...]] = {"ln_1.weight": (C,), "ln_1.bias": (C,), "attn.c_attn.weight": (3 * C, C), "attn.c_attn.bias": (3 * C,),
             "attn.c_proj.weight": (C, C), "attn.c_proj.bias": (C,), "ln_2.weight": (C,), "ln_2.bias": (C,),
             "mlp.c_fc.weight": (4 * C, C), "mlp.c_fc.bias": (4 * C,), "mlp.c_proj.weight": (C, 4 * C),
             "mlp.c_proj.bias": (C,)}
    if config.attn_only:
        layer = {k: v for k, v in layer.items() if not k.startswith(("ln_2.", "mlp."))}
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (V, C), "wpe.weight": (T, C)}
    for i in range(config.n_layer):
        shapes.update({f"blocks.{i}.{k}": v for k, v in layer.items()})
    shapes.update({"ln_f.weight": (C,), "ln_f.bias": (C,), "lm_head.weight": (V, C)})
    return {k: v for k, v in shapes.items() if config.bias or not k.endswith(".bias")}


def parameter_shapes(config: ModelConfig) -> list[tuple[int, ...]]:
    """Shapes of TransformerLM(config).parameters() in order (lm_head.weight is tied to wte.weight)."""
    return [v for k, v in state_shapes(config).items() if k != "lm_head.weight"]


def model_bytes(config: ModelConfig) -> int:
    """Memory of a model's parameters (float32) and causal masks (n_layer x block_size^2 bools)."""
    return 4 * sum(math.prod(s) for s in parameter_shapes(config)) + config.n_layer * config.block_size**2


def training_bytes(config: ModelConfig, batch_size: int) -> int:
    """Rough memory of training: weights, gradients and AdamW's two moments (16 bytes a parameter),
    the causal masks, and the activations of one step of `batch_size` x block_size tokens."""
    n_params = sum(math.prod(s) for s in parameter_shapes(config))
    per_layer = ACTIVATION_PER_EMBD * config.n_embd
    if config.dropout > 0:
        per_layer += ACTIVATION_PER_HEAD_KEY * config.n_head * config.block_size
    per_token = config.n_layer * per_layer + 3 * config.vocab_size  # logits, their softmax and gradient
    masks = config.n_layer * config.block_size**2
    return 16 * n_params + masks + 4 * batch_size * config.block_size * per_token


def available_memory() -> Optional[int]:
    """Bytes this process could still allocate: MemAvailable, lowered by a cgroup (container) limit;
    None where neither can be read."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system says, else all)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"
