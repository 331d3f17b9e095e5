"""Query-key joint map of one head (AttentionViz, Yeh et al. 2023).

Queries and keys from many positions are placed in one 2-D picture so that a query lies near
the keys it attends to. Two exact, score-preserving changes make distance a proxy for
attention: the keys are translated so their centroid is the queries' centroid (this adds
q . c to all of one query's scores, which softmax ignores), and queries and keys are scaled by
c and 1/c so their mean norms are equal (q . k is unchanged). Then ||q - k||^2 =
||q||^2 + ||k||^2 - 2 q . k, so for queries and keys of similar norm, near means high score.
How well the 2-D picture keeps that is measured, not assumed: the Spearman correlation
between 2-D distance and the true attention weight over all (query, visible key) pairs.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.stats import spearmanr

Projection = Literal["pca", "tsne", "umap"]


def normalize_qk(q: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AttentionViz's key translation and norm scaling: q (N, d), k (M, d) -> (q', k') with
    q' . k' = q . k + (a constant per query)."""
    k = k - k.mean(axis=0) + q.mean(axis=0)
    c = np.sqrt(np.linalg.norm(k, axis=1).mean() / max(np.linalg.norm(q, axis=1).mean(), 1e-12))
    return q * c, k / c


def project_2d(points: np.ndarray, method: Projection = "pca", seed: int = 0) -> np.ndarray:
    """(N, d) -> (N, 2). PCA is plain numpy SVD; t-SNE (scikit-learn) and UMAP (umap-learn)
    are used only when installed."""
    if method == "pca":
        centred = points - points.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        return centred @ vt[:2].T
    try:
        if method == "tsne":
            from sklearn.manifold import TSNE
            return TSNE(n_components=2, random_state=seed, init="pca").fit_transform(points)
        if method == "umap":
            import umap
            return umap.UMAP(n_components=2, random_state=seed).fit_transform(points)
    except ImportError:
        package = {"tsne": "scikit-learn", "umap": "umap-learn"}[method]
        raise ValueError(f"projection {method!r} needs {package} (pip install {package}); the default 'pca' needs nothing") from None
    raise ValueError(f"unknown projection {method!r}; use pca, tsne or umap")


def qk_map(q: np.ndarray, k: np.ndarray, attention: np.ndarray, method: Projection = "pca", normalize: bool = True,
           seed: int = 0) -> dict:
    """One head over W windows: q, k (W, T, d), attention (W, T, T). Returns the 2-D points
    `queries` and `keys` (W*T, 2, window-major), and the Spearman correlations between
    distance and attention over all causal pairs within a window: `spearman_2d` (the
    picture) and `spearman_full` (the d-dimensional normalized vectors, the best a picture
    could do). Negative = nearer pairs get more attention."""
    W, T, d = q.shape
    qf, kf = q.reshape(-1, d).astype(np.float64), k.reshape(-1, d).astype(np.float64)
    if normalize:
        qf, kf = normalize_qk(qf, kf)
    xy = project_2d(np.concatenate([qf, kf]), method, seed)
    q2, k2 = xy[: W * T], xy[W * T :]
    rows, cols = np.tril_indices(T)
    weights = attention[:, rows, cols].ravel()

    def pair_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = a.reshape(W, T, -1), b.reshape(W, T, -1)
        return np.linalg.norm(a[:, rows] - b[:, cols], axis=-1).ravel()

    return {
        "queries": q2, "keys": k2, "method": method, "normalized": normalize, "n_pairs": int(weights.size),
        "spearman_2d": float(spearmanr(pair_distance(q2, k2), weights).statistic),
        "spearman_full": float(spearmanr(pair_distance(qf, kf), weights).statistic),
    }
