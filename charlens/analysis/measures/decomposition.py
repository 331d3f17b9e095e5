"""Attention explained: each head as a non-negative mixture of detector target patterns.

Every detector d defines, for each query row i with targets, a distribution over keys: uniform on
its targets, P_d[i, j] = M_d[i, j] / |M_d[i]| (rows without targets are 0). With uniform causal
attention U as one more pattern, a head's rows are fitted as A[i] ~ sum_d w_d P_d[i], w >= 0, by
least squares over all rows i >= 1 of the discovery windows. The normal equations need only the
Gram matrix G = sum P_d . P_e (shared by every head) and the cross terms c = sum A . P_d (per
head), both accumulated batch by batch, so nothing grows with the text; each head is then one
non-negative least-squares problem of K unknowns (scipy's nnls on a Cholesky factor of G).

The weights read as mass shares ("0.5 previous_char + 0.5 recent_space"). What the mixture leaves
out is measured on held-out text, per row as half the L1 distance between the row and its fit,
counting a missing (or excess) total as distance: 0 for a perfect mixture, 1 for a row the fit
misses entirely. `local` is left out of the basis: it is the sum of the offsets 0..2 (collinear).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import nnls

from charlens.analysis.measures.detectors import CharBatch, target_masks
from charlens.analysis.measures.scoring import masked_mass, uniform_attention

UNIFORM = "uniform"
NOT_IN_BASIS = ("local",)
RIDGE = 1e-9  # relative to the Gram matrix's mean diagonal: keeps the factorization defined when patterns coincide


def basis_names(names: list[str]) -> list[str]:
    """The mixture's patterns: the detectors among `names` (minus unions of others) and the uniform term."""
    return [n for n in names if n not in NOT_IN_BASIS] + [UNIFORM]


def target_distributions(b: CharBatch, basis: list[str]) -> torch.Tensor:
    """(B, K, T, T): each basis pattern's rows as distributions over keys; row 0 and rows without targets are 0."""
    detectors = [n for n in basis if n != UNIFORM]
    P = torch.empty(b.shape[0], len(basis), b.shape[1], b.shape[1])
    P[:, :len(detectors)] = target_masks(b, detectors, torch.float32)
    P[:, :len(detectors)] /= P[:, :len(detectors)].sum(-1, keepdim=True).clamp_min(1.0)
    if UNIFORM in basis:
        P[:, -1] = uniform_attention(b.shape[1])
        P[:, -1, 0] = 0
    return P


class MixtureFit:
    """Streams G (K, K) and c (K, L, H) over discovery batches; `weights()` solves every head."""

    def __init__(self, basis: list[str]) -> None:
        self.basis = basis
        self.gram = torch.zeros(len(basis), len(basis), dtype=torch.float64)
        self.cross: torch.Tensor | None = None

    def add(self, attention: torch.Tensor, P: torch.Tensor) -> None:
        """attention (B, L, H, T, T), P (B, K, T, T) the batch's target_distributions of the basis."""
        flat = P.flatten(2)  # (B, K, T*T)
        self.gram += torch.bmm(flat, flat.transpose(1, 2)).sum(0).double()
        c = masked_mass(attention, P).sum(0).double()  # (K, L, H)
        self.cross = c if self.cross is None else self.cross + c

    def weights(self) -> np.ndarray:
        """(L, H, K) non-negative weights, in the order of `basis`."""
        if self.cross is None:
            raise ValueError("no batches added")
        G = self.gram.numpy()
        G = G + RIDGE * max(float(np.mean(np.diag(G))), 1e-12) * np.eye(len(G))
        R = np.linalg.cholesky(G).T  # G = R^T R: |R w - R^-T c|^2 = w'Gw - 2c'w + const
        K, L, H = self.cross.shape
        rhs = np.linalg.solve(R.T, self.cross.numpy().reshape(K, -1))  # (K, L*H)
        return np.stack([nnls(R, rhs[:, n])[0] for n in range(L * H)]).reshape(L, H, K)


def unexplained(attention: torch.Tensor, distributions: torch.Tensor, weights: np.ndarray) -> torch.Tensor:
    """Per window and head, the mean over rows i >= 1 of what the fitted mixture leaves out:
    0.5 * sum_j |A[i, j] - fit[i, j]| + 0.5 * |1 - sum_j fit[i, j]|. attention (B, L, H, T, T),
    distributions (B, K, T, T) (target_distributions), weights (L, H, K) -> (B, L, H)."""
    B, L, H, T, _ = attention.shape
    w = torch.as_tensor(weights, dtype=attention.dtype).reshape(L * H, -1)
    fit = torch.matmul(w, distributions.flatten(2)).view(B, L, H, T, T)  # (B, L*H, T*T)
    missing = (1.0 - fit.sum(-1)).abs()  # (B, L, H, T)
    rows = 0.5 * fit.sub_(attention).abs_().sum(-1) + 0.5 * missing  # in place: one (B, L, H, T, T) temporary
    return rows[..., 1:].mean(-1)
