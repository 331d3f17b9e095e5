"""The evaluate part of the training loop: the periodic loss estimate on a fixed set of batches, and the
whole-split validation loss at the end. Neither draws from the training generators, so evaluating never
changes what training does."""
from __future__ import annotations

import math
from contextlib import AbstractContextManager

import torch

from charlens.model.transformer import TransformerLM
from charlens.training import ddp
from charlens.training.batches import SPLITS, BatchSource, Windows, to_device

EVAL_CHARS_PER_BATCH = 8192  # characters per batch of the whole-split evaluation


class NonFiniteLoss(Exception):
    """The loss became inf or nan: training stops without saving the damaged weights."""


def require_finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise NonFiniteLoss(f"the {what} is {value}")
    return value


@torch.inference_mode()
def estimate_loss(model: TransformerLM, source: BatchSource, eval_iters: int, seed: int, device: torch.device,
                  autocast: AbstractContextManager, d: ddp.Dist = ddp.Dist()) -> dict[str, float]:
    """Mean loss over `eval_iters` batches per split, drawn from a generator seeded with `seed`, so every
    evaluation sees the same windows and the training RNG is not touched. Under DDP each process
    evaluates every world-th batch and the sums are added up."""
    model.eval()
    sums = torch.zeros(len(SPLITS), dtype=torch.float64, device=device)
    for k, split in enumerate(SPLITS):
        g = torch.Generator().manual_seed(seed)
        for i in range(eval_iters):
            x, y = source.batch(split, g)
            if i % d.world == d.rank:
                x, y = to_device(x, y, device)
                with autocast:
                    sums[k] += model(x, y)[1].double()
    model.train()
    means = (ddp.all_sum(d, sums) / eval_iters).tolist()  # the one host synchronization
    return dict(zip(SPLITS, means))


@torch.inference_mode()
def full_loss(model: TransformerLM, windows: Windows, device: torch.device, autocast: AbstractContextManager,
              d: ddp.Dist = ddp.Dist(), chars_per_batch: int = EVAL_CHARS_PER_BATCH) -> float:
    """Mean loss per character over every window of a split, in batches of about `chars_per_batch`
    characters (no gradients, no attention weights kept; under DDP each process takes every world-th
    batch). 8k by default rather than more: on a CPU larger batches' activations leave the cache
    (`python bench/train_speed.py --eval-batches`)."""
    model.eval()
    n, rows = len(windows), max(1, chars_per_batch // windows.width)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for k, i in enumerate(range(0, n, rows)):
        if k % d.world == d.rank:
            x, y = to_device(*windows.rows(i, i + rows), device)
            with autocast:
                total += model(x, y)[1].double() * len(x)
    model.train()
    return ddp.all_sum(d, total).item() / n
