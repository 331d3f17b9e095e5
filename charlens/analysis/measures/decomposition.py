"""Attention explained: each head as a mixture of detector target patterns, with shares that sum to one.

Every detector d defines, for each query row i with targets, a distribution over keys: uniform on its
targets, P_d[i, j] = M_d[i, j] / |M_d[i]|; uniform causal attention U is one more pattern (it applies to every
row i >= 1). A head is modelled as a mixture with weights w >= 0, sum w = 1: on a row where every pattern
applies, component d takes the share w_d of the mass, spread as P_d[i]; where some have no target (offset 5
before position 5, the query's word when the query is a space), the components that apply share the row in
proportion to their weights:

    fit[i] = sum_d w_d P_d[i] / sum_{d applies to i} w_d

So a pure offset-5 head is 1.0 offset_5, whatever it does on rows 1-4 (those rows are explained by the
components that apply there, however small their weights), and a 50/50 mixture is 0.5 + 0.5 of its two patterns.
The weights are fitted by least squares over the rows i >= 1 of the discovery windows. Rows with the same set of
applicable patterns (a "signature") share the denominator, so the loss needs only, per signature sigma, the Gram
matrix G_sigma = sum P_d[i] . P_e[i] (shared by every head), the cross terms c_sigma = sum A[i] . P_d[i] and
a_sigma = sum |A[i]|^2 (per head), accumulated batch by batch: nothing grows with the text. All heads are then
fitted at once (weights as a softmax, L-BFGS in float64).

What the mixture leaves out is measured on held-out text, per row as half the L1 distance between the row and
its fit (plus half of any missing total, which only a row without any applicable weighted pattern has): the share
of the attention mass no component accounts for, in [0, 1]. `local` is left out of the basis: it is the sum of
the offsets 0..2 (collinear).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

from charlens.analysis.measures.detectors import CharBatch, target_masks
from charlens.analysis.measures.scoring import uniform_attention

UNIFORM = "uniform"
NOT_IN_BASIS = ("local",)
MAX_ITER = 1000  # L-BFGS-B iterations (at most) per head
FLOOR = 1e-6  # every weight's lower bound: a pattern left at it still explains rows where no larger one applies


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


def _signatures(P: torch.Tensor) -> torch.Tensor:
    """(B, T) int64: each row's set of applicable patterns as bits (pattern k applies: its row sums to 1)."""
    applies = (P.sum(-1) > 0.5).long()  # (B, K, T)
    bits = 2 ** torch.arange(P.shape[1], dtype=torch.long)
    return (applies * bits[None, :, None]).sum(1)


class MixtureFit:
    """Streams, per signature, G (K, K), c (K, L, H) and a (L, H) over discovery batches; `weights()` fits every head."""

    def __init__(self, basis: list[str]) -> None:
        if len(basis) > 62:
            raise ValueError("at most 62 basis patterns (signatures are int64 bit sets)")
        self.basis = basis
        self.stats: dict[int, list[torch.Tensor]] = {}  # signature -> [G, c, a]

    def add(self, attention: torch.Tensor, P: torch.Tensor) -> None:
        """attention (B, L, H, T, T), P (B, K, T, T) the batch's target_distributions of the basis."""
        B, L, H, T, _ = attention.shape
        K = P.shape[1]
        # per row (B * T of them): each row's sums are short, so float32, accumulated in float64
        rows = P.float().transpose(1, 2).contiguous().view(B * T, K, T)
        A = attention.float().reshape(B, L * H, T, T).transpose(1, 2).contiguous().view(B * T, L * H, T)
        gram = torch.bmm(rows, rows.transpose(1, 2)).double().view(B, T, K, K)
        cross = torch.bmm(rows, A.transpose(1, 2)).double().view(B, T, K, L * H)
        square = (A * A).sum(-1).double().view(B, T, L * H)
        sig = _signatures(P)[:, 1:].flatten()  # row 0 is never fitted
        found, at = sig.unique(return_inverse=True)
        parts = [torch.zeros(len(found), *x.shape[2:], dtype=torch.float64).index_add_(0, at, x[:, 1:].flatten(0, 1))
                 for x in (gram, cross, square)]
        for k, s in enumerate(found.tolist()):
            new = [parts[0][k], parts[1][k].view(K, L, H), parts[2][k].view(L, H)]
            if s in self.stats:
                for acc, p in zip(self.stats[s], new):
                    acc += p
            else:
                self.stats[s] = new

    def weights(self) -> np.ndarray:
        """(L, H, K) weights >= 0 summing to 1 per head, in the order of `basis`."""
        if not self.stats:
            raise ValueError("no batches added")
        sigs = list(self.stats)
        K = len(self.basis)
        applies = np.array([[(s >> k) & 1 for k in range(K)] for s in sigs], dtype=np.float64)  # (S, K)
        G = np.stack([self.stats[s][0].numpy() for s in sigs])  # (S, K, K)
        c = np.stack([self.stats[s][1].numpy() for s in sigs])  # (S, K, L, H)
        a = np.stack([self.stats[s][2].numpy() for s in sigs])  # (S, L, H)
        L, H = c.shape[-2:]
        out = np.empty((L, H, K))
        for l in range(L):
            for h in range(H):
                out[l, h] = _fit_head(G, c[:, :, l, h], max(float(a[:, l, h].sum()), 1e-12), applies)
        return out


def _fit_head(G: np.ndarray, c: np.ndarray, total: float, applies: np.ndarray) -> np.ndarray:
    """One head's weights: minimize sum over signatures of |A - fit|^2 (below, less its constant sum of |A|^2),
    fit = P w / s with s = the weight of the patterns that apply, over w >= FLOOR (L-BFGS-B); the loss does not
    change with the scale of w, which (sum w - 1)^2 fixes. G (S, K, K), c (S, K), applies (S, K)."""
    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = applies @ w  # (S,)
        Gw = G @ w  # (S, K)
        q, cw = Gw @ w, c @ w
        value = float(np.sum(q / s ** 2 - 2 * cw / s)) / total + (w.sum() - 1) ** 2
        grad = (2 * (Gw / s[:, None] ** 2).sum(0) - 2 * ((q / s ** 3)[:, None] * applies).sum(0)
                - 2 * (c / s[:, None]).sum(0) + 2 * ((cw / s ** 2)[:, None] * applies).sum(0)) / total + 2 * (w.sum() - 1)
        return value, grad

    used = applies.any(0)  # a pattern that applies to no fitted row would take an arbitrary weight: it gets none
    G, c, applies = G[:, used][:, :, used], c[:, used], applies[:, used]
    K = int(used.sum())
    res = minimize(loss, np.full(K, 1.0 / K), jac=True, method="L-BFGS-B", bounds=[(FLOOR, None)] * K,
                   options={"maxiter": MAX_ITER, "ftol": 1e-13, "gtol": 1e-10})
    w = np.zeros(used.shape[0])
    w[used] = res.x / res.x.sum()
    return w


def mixture(distributions: torch.Tensor, weights: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The fitted rows (B, L, H, T, T) of a batch: distributions (B, K, T, T) (target_distributions), weights
    (L, H, K); on each row, the applicable patterns share it in proportion to their weights (0 where none applies)."""
    B, K, T, _ = distributions.shape
    L, H = weights.shape[:2]
    w = torch.as_tensor(weights, dtype=dtype).reshape(L * H, K)
    P = distributions.to(dtype)
    share = torch.einsum("nk,bkt->bnt", w, (P.sum(-1) > 0.5).to(dtype))  # (B, L*H, T)
    fit = torch.matmul(w, P.flatten(2)).view(B, L * H, T, T)
    return (fit / torch.where(share > 0, share, torch.ones_like(share))[..., None]).view(B, L, H, T, T)


def unexplained(attention: torch.Tensor, distributions: torch.Tensor, weights: np.ndarray) -> torch.Tensor:
    """Per window and head, the mean over rows i >= 1 of what the fitted mixture leaves out:
    0.5 * sum_j |A[i, j] - fit[i, j]| + 0.5 * |1 - sum_j fit[i, j]|. attention (B, L, H, T, T),
    distributions (B, K, T, T) (target_distributions), weights (L, H, K) -> (B, L, H), in [0, 1]."""
    fit = mixture(distributions, weights, attention.dtype)
    missing = (1.0 - fit.sum(-1)).abs()  # (B, L, H, T)
    rows = 0.5 * fit.sub_(attention).abs_().sum(-1) + 0.5 * missing  # in place: one (B, L, H, T, T) temporary
    return rows[..., 1:].mean(-1)
