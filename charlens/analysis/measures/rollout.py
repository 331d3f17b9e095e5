"""Attention rollout (Abnar & Zuidema 2020): how much each input position flows into each
output position when attention is followed through all layers.

Per layer the residual connection is modelled as identity: A_hat = 0.5 I + 0.5 mean_heads(A),
rows renormalized; the rollout after layer l is A_hat_l @ ... @ A_hat_1.
"""
from __future__ import annotations

import torch


def layer_mixing(attention: torch.Tensor, residual_weight: float = 0.5) -> torch.Tensor:
    """Per-layer mixing matrices: attention (..., nh, T, T) -> w·I + (1 − w)·mean_heads(A) (..., T, T),
    rows renormalized, with w = `residual_weight` standing for the residual stream."""
    if not 0.0 <= residual_weight <= 1.0:
        raise ValueError(f"residual_weight must be in [0, 1], got {residual_weight}")
    eye = torch.eye(attention.size(-1), dtype=attention.dtype, device=attention.device)
    mixed = residual_weight * eye + (1.0 - residual_weight) * attention.mean(dim=-3)
    return mixed / mixed.sum(dim=-1, keepdim=True)


def attention_rollout(attention: torch.Tensor, residual_weight: float = 0.5, per_layer: bool = False) -> torch.Tensor:
    """attention (..., L, nh, T, T) -> rollout (..., T, T): row i is how position i's output
    draws on every input position. With `per_layer`, the rollout after every layer (..., L, T, T)."""
    mixed = layer_mixing(attention, residual_weight)  # (..., L, T, T)
    rolled = mixed[..., 0, :, :]
    steps = [rolled]
    for l in range(1, mixed.size(-3)):
        rolled = mixed[..., l, :, :] @ rolled
        steps.append(rolled)
    return torch.stack(steps, dim=-3) if per_layer else rolled
