"""Value-weighted attention (Kobayashi et al. 2020, "Attention is not only a weight").

Head h writes sum_j alpha_ij * f_h(x_j) into the residual stream at position i, where
f_h(x_j) = v_j W_O^h and W_O^h is the head's slice of the output projection c_proj. A large
weight on a position whose transformed value is tiny contributes little, so the norm
||alpha_ij * f_h(x_j)|| = alpha_ij * ||f_h(x_j)|| says what position j really gives position i.
(The output bias is added once per position, not per key, and is left out as in the paper.)
"""
from __future__ import annotations

import torch

from charlens.model.hooks import ActivationCache
from charlens.model.transformer import TransformerLM


def output_weights_per_head(model: TransformerLM) -> torch.Tensor:
    """W_O^h for every layer and head, (L, nh, hs, C): y_h @ W_O^h is head h's output."""
    c = model.config
    hs = c.n_embd // c.n_head
    # c_proj computes y @ W.T with W (C, C); the columns h*hs:(h+1)*hs of W belong to head h.
    W = torch.stack([block.attn.c_proj.weight for block in model.blocks])  # (L, C, C)
    return W.view(c.n_layer, c.n_embd, c.n_head, hs).permute(0, 2, 3, 1).detach()


def transformed_values(v: torch.Tensor, w_o: torch.Tensor) -> torch.Tensor:
    """f_h(x_j) = v_j W_O^h: v (B, L, nh, T, hs), w_o (L, nh, hs, C) -> (B, L, nh, T, C)."""
    return torch.einsum("blhtd,lhdc->blhtc", v, w_o)


def value_weighted_norms(pattern: torch.Tensor, v: torch.Tensor, w_o: torch.Tensor) -> torch.Tensor:
    """||alpha_ij f_h(x_j)|| for all heads: pattern (B, L, nh, T, T) -> same shape."""
    value_norms = transformed_values(v, w_o).norm(dim=-1)  # (B, L, nh, T)
    return pattern * value_norms.unsqueeze(-2)


def value_weighted_attention(model: TransformerLM, cache: ActivationCache) -> torch.Tensor:
    """Value-weighted norms (B, L, nh, T, T) for every head of a cached run."""
    return value_weighted_norms(cache.stack("pattern"), cache.stack("v"), output_weights_per_head(model))


def row_normalize(weights: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rescale every row to sum to 1, so value-weighted norms can be scored like attention."""
    return weights / weights.sum(dim=-1, keepdim=True).clamp_min(eps)


def row_disagreement(raw: torch.Tensor, weighted: torch.Tensor) -> torch.Tensor:
    """Total-variation distance between raw attention rows and row-normalized value-weighted
    rows, averaged over windows and query positions: (B, L, nh, T, T) -> (L, nh), in [0, 1].
    0 means the head's values are all equally large, so its weights tell the whole story."""
    tv = 0.5 * (raw - row_normalize(weighted)).abs().sum(dim=-1)  # (B, L, nh, T)
    return tv.mean(dim=(0, 3))
