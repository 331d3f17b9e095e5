"""Attention flow from one query back to the input characters, layer by layer.

Each layer mixes positions by 0.5·I + 0.5·mean-over-heads(A) (the identity stands
for the residual stream), rows renormalized, as in attention rollout (Abnar &
Zuidema 2020, `analysis.measures.rollout`). The flow graph follows one query down through
the layers: the mass arriving at a position of layer l is split over the positions
it attends to in layer l-1, so every level's node weights sum to 1 and the bottom
level equals the query's row of `analysis.measures.rollout.attention_rollout`. (This is rollout
split along its paths, not the max-flow "attention flow" of the same paper.)
"""
from __future__ import annotations

import numpy as np
import torch

from charlens.analysis.measures import rollout


def layer_mixing(attention: np.ndarray) -> np.ndarray:
    """Attention (L, H, T, T) -> per-layer mixing matrices (L, T, T), float64: 0.5·I + 0.5·mean_h A,
    rows renormalized (`analysis.measures.rollout.layer_mixing`)."""
    return rollout.layer_mixing(torch.from_numpy(np.asarray(attention, dtype=np.float64))).numpy()


def query_flow(attention: np.ndarray, query: int) -> tuple[np.ndarray, np.ndarray]:
    """Flow of one query position back to the inputs.
    Returns node weights (L+1, T) — level L is the query alone, level 0 the inputs —
    and edge flows (L, T, T): edges[l, i, j] is the mass passing from position i of
    level l+1 to position j of level l."""
    mix = layer_mixing(attention)
    L, T, _ = mix.shape
    nodes = np.zeros((L + 1, T))
    nodes[L, query] = 1.0
    edges = np.zeros((L, T, T))
    for l in range(L - 1, -1, -1):
        edges[l] = nodes[l + 1][:, None] * mix[l]
        nodes[l] = edges[l].sum(0)
    return nodes, edges
