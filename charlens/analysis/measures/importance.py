"""Token importance (attention received per character) and attention entropy.

Attention received is averaged over the queries that can see a key (i >= j), not summed:
a causal summed column favours early positions only because more queries can reach them.
"""
from __future__ import annotations

import math

import torch

from charlens.analysis.measures.rollout import attention_rollout


def attention_received(weights: torch.Tensor) -> torch.Tensor:
    """Mean weight each key j receives from the queries i >= j: (..., T, T) -> (..., T)."""
    T = weights.size(-1)
    n_queries = torch.arange(T, 0, -1, dtype=weights.dtype, device=weights.device)  # T - j
    return weights.tril().sum(dim=-2) / n_queries


def token_importance(attention: torch.Tensor, residual_weight: float = 0.5) -> dict[str, torch.Tensor]:
    """Per character importance for windows (B, L, nh, T, T): "raw" is attention received
    averaged over every layer and head, "rollout" is what each input gives the last layer's
    outputs through attention rollout. Both (B, T)."""
    return {
        "raw": attention_received(attention).mean(dim=(1, 2)),
        "rollout": attention_received(attention_rollout(attention, residual_weight)),
    }


def attention_entropy(attention: torch.Tensor, normalized: bool = True) -> torch.Tensor:
    """Entropy (nats) of every attention row: (..., T, T) -> (..., T). With `normalized`, divided
    by log(i+1), the entropy of uniform causal attention, so 0 = one key and 1 = uniform;
    row 0 (a single key) is NaN then, since it has no choice to measure."""
    a_log_a = attention.clamp_min(1e-30).log_().mul_(attention)  # A log A, 0 where A = 0; one temporary
    ent = -a_log_a.sum(dim=-1)
    if not normalized:
        return ent
    T = attention.size(-1)
    max_ent = torch.log(torch.arange(1, T + 1, dtype=ent.dtype, device=ent.device))
    return ent / max_ent.masked_fill(max_ent == 0, math.nan)


class EntropyAccumulator:
    """Streams normalized entropy over batches of windows (B, L, nh, T, T) and keeps, per head,
    the sum by query position (so memory does not grow with the amount of text) and a capped
    sample of row entropies for distributions."""

    def __init__(self, n_layer: int, n_head: int, T: int, max_samples: int = 20000):
        self.total = torch.zeros(n_layer, n_head, T, dtype=torch.float64)
        self.count = 0
        self.samples: list[torch.Tensor] = []
        self.n_samples = 0
        self.max_samples = max_samples

    def add(self, attention: torch.Tensor) -> None:
        ent = attention_entropy(attention.float())[..., 1:]  # (B, L, nh, T-1); row 0 has no choice
        self.total[..., 1:] += ent.sum(dim=0).double()
        self.count += ent.size(0)
        if self.n_samples < self.max_samples:
            rows = ent.permute(1, 2, 0, 3).flatten(2)  # (L, nh, B*(T-1))
            self.samples.append(rows)
            self.n_samples += rows.size(-1)

    def result(self) -> dict[str, torch.Tensor]:
        """by_position (L, nh, T) with NaN at position 0, per_head (L, nh), per_layer (L,),
        samples (L, nh, S): row entropies for histograms."""
        by_position = self.total / max(self.count, 1)
        by_position[..., 0] = math.nan
        per_head = by_position[..., 1:].mean(dim=-1)
        return {"by_position": by_position.float(), "per_head": per_head.float(),
                "per_layer": per_head.mean(dim=-1).float(),
                "samples": torch.cat(self.samples, dim=-1)[..., : self.max_samples]}
