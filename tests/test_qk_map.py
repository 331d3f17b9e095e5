import numpy as np
import pytest
import torch

from charlens.model.hooks import run_with_cache
from charlens.analysis.measures.qk_map import normalize_qk, project_2d, qk_map
from beyond_helpers import tiny_model

W, T, D = 4, 16, 8


def circle_head(sign: float = 1.0):
    """Queries (norm 3) and keys (norm 1) at random angles in dims 0-1; the keys also sit 10
    units off along dim 2, which no query reads (so scores ignore it). Attention is causal
    softmax(sign * q . k): sign +1 attends to keys at a query's own angle, -1 to the opposite."""
    rng = np.random.default_rng(0)
    phi, theta = rng.uniform(0, 2 * np.pi, (2, W, T))
    q, k = np.zeros((W, T, D)), np.zeros((W, T, D))
    q[..., 0], q[..., 1] = 3 * np.cos(phi), 3 * np.sin(phi)
    k[..., 0], k[..., 1], k[..., 2] = np.cos(theta), np.sin(theta), 10.0
    k[..., 3:] = rng.normal(0, 0.01, (W, T, D - 3))
    s = sign * np.einsum("wid,wjd->wij", q, k)
    s = np.where(np.tril(np.ones((T, T), dtype=bool)), s, -np.inf)
    a = np.exp(s - s.max(-1, keepdims=True))
    return q, k, a / a.sum(-1, keepdims=True)


def test_distance_ranks_attention_after_translation_and_scaling():
    q, k, a = circle_head()
    m = qk_map(q, k, a)
    assert m["spearman_2d"] < -0.8 and m["spearman_full"] < -0.8
    assert m["queries"].shape == m["keys"].shape == (W * T, 2) and m["n_pairs"] == W * T * (T + 1) // 2
    # without the key translation, PCA spends an axis on the query/key offset and the picture is worse
    raw = qk_map(q, k, a, normalize=False)
    assert raw["spearman_2d"] > m["spearman_2d"] + 0.2


def test_a_head_attending_away_gives_positive_correlation():
    q, k, a = circle_head(sign=-1.0)
    assert qk_map(q, k, a)["spearman_2d"] > 0.5


def test_normalization_preserves_softmax():
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(5, 4)), rng.normal(3.0, 1.0, size=(7, 4))
    qn, kn = normalize_qk(q, k)
    shift = qn @ kn.T - q @ k.T
    assert np.allclose(shift, shift[:, :1])  # a constant per query: softmax unchanged
    assert np.isclose(np.linalg.norm(qn, axis=1).mean(), np.linalg.norm(kn, axis=1).mean())
    c = np.linalg.norm(qn, axis=1).mean() / np.linalg.norm(q, axis=1).mean()
    assert np.allclose(qn.mean(0) / c, kn.mean(0) * c)  # keys were moved onto the queries' centroid


def test_pca_and_missing_projections():
    pts = np.array([[0.0, 0, 0], [2, 0, 0], [0, 1, 0], [2, 1, 0]])
    xy = project_2d(pts)
    assert np.allclose(np.abs(xy[:, 0]), 1.0) and np.allclose(np.abs(xy[:, 1]), 0.5)
    try:
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="scikit-learn"):
            project_2d(pts, "tsne")
    with pytest.raises(ValueError, match="unknown projection"):
        project_2d(pts, "mds")


def test_runs_on_a_model_head():
    model = tiny_model()
    idx = torch.randint(0, 12, (3, 20), generator=torch.Generator().manual_seed(0))
    cache = run_with_cache(model, idx)
    m = qk_map(cache.layer(1, "q")[:, 0].numpy(), cache.layer(1, "k")[:, 0].numpy(), cache.layer(1, "pattern")[:, 0].numpy())
    assert np.isfinite(m["spearman_2d"]) and m["queries"].shape == (60, 2)
