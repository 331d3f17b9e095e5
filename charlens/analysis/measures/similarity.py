"""Which heads behave alike: Jensen–Shannon distance between heads' attention
distributions on the same query rows, and hierarchical clustering of that matrix.

Two heads that send every query to the same keys have distance 0; two heads whose
rows never overlap have distance 1 (base-2 JS distance, i.e. the square root of the
JS divergence, which is a metric). A head's distance to another is the mean over all
query rows of all windows, so the comparison is made on identical inputs.
"""
from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform


def head_rows(attention: np.ndarray, max_rows: int = 4096, seed: int = 0) -> np.ndarray:
    """Attention (N, L, H, T, T) -> query rows per head (L*H, R, T), float64.
    Row 0 of each window is skipped (causal attention there is forced to position 0 in
    every head), so are all-zero rows (padding of texts shorter than the window); at
    most `max_rows` rows are kept, the same ones for every head."""
    attention = np.asarray(attention)
    if attention.ndim != 5 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"attention must be (N, L, H, T, T), got {attention.shape}")
    N, L, H, T, _ = attention.shape
    rows = attention[..., 1:, :].transpose(1, 2, 0, 3, 4).reshape(L * H, N * (T - 1), T)
    rows = rows[:, (rows.sum(-1) > 0).all(0)]
    if rows.shape[1] > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(rows.shape[1], max_rows, replace=False))
        rows = rows[:, keep]
    rows = rows.astype(np.float64)
    return rows / rows.sum(-1, keepdims=True)


def _plogp_over_m(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """p * log2(p / m), 0 where p is 0 (m > 0 wherever p > 0)."""
    out = np.zeros(np.broadcast_shapes(p.shape, m.shape))
    mask = np.broadcast_to(p > 0, out.shape)
    pb = np.broadcast_to(p, out.shape)
    out[mask] = pb[mask] * np.log2(pb[mask] / np.broadcast_to(m, out.shape)[mask])
    return out


def js_distance_matrix(attention: np.ndarray, max_rows: int = 4096) -> np.ndarray:
    """(L*H, L*H) mean Jensen–Shannon distance between every pair of heads."""
    rows = head_rows(attention, max_rows)  # (K, R, T)
    K = rows.shape[0]
    D = np.zeros((K, K))
    for a in range(K - 1):
        p, q = rows[a][None], rows[a + 1:]  # (1, R, T), (K-a-1, R, T)
        m = 0.5 * (p + q)
        js = 0.5 * _plogp_over_m(p, m).sum(-1) + 0.5 * _plogp_over_m(q, m).sum(-1)  # (K-a-1, R)
        D[a, a + 1:] = np.sqrt(np.clip(js, 0.0, 1.0)).mean(-1)
    return D + D.T


def cluster_heads(distances: np.ndarray, method: str = "average") -> np.ndarray:
    """scipy linkage matrix (K-1, 4) of the heads from their distance matrix."""
    if distances.shape[0] < 2:
        raise ValueError("clustering needs at least two heads")
    return linkage(squareform(distances, checks=False), method=method)
