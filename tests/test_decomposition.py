import numpy as np
import pytest
import torch

from charlens.analysis.measures.decomposition import UNIFORM, MixtureFit, basis_names, target_distributions, unexplained
from charlens.analysis.measures.detectors import detectors_for
from charlens.analysis.measures.scoring import uniform_attention
from detector_helpers import batch, one_hot_attention

TEXTS = [" the cat sat on the mat and the dog sat on the log", " a bird in the hand is worth two in the bushes, he said"]


def recent_space(text: str, i: int) -> int:
    return max(j for j in range(i) if text[j] == " ") if i else 0


def mixture(texts: list[str], parts: list[tuple[float, callable]]) -> torch.Tensor:
    """(B, 1, 1, T, T): every row a fixed mixture of one-key rules (text, i) -> j."""
    return torch.cat([sum(w * one_hot_attention(len(t), lambda i, f=f, t=t: f(t, i)) for w, f in parts) for t in texts])


def fit(texts, A, names):
    basis = basis_names(names)
    m = MixtureFit(basis)
    b = batch(texts)
    m.add(A, target_distributions(b, basis))
    w = m.weights()
    return basis, w, unexplained(A, target_distributions(b, basis), w)


def test_golden_half_previous_half_recent_space():
    """Exactly 0.5 previous character + 0.5 most recent space (every row i >= 1 has a space before it)."""
    texts = [t[:48] for t in TEXTS]
    A = mixture(texts, [(0.5, lambda t, i: max(i - 1, 0)), (0.5, recent_space)])
    basis, w, u = fit(texts, A, detectors_for("en"))
    weights = dict(zip(basis, w[0, 0]))
    assert weights["previous_char"] == pytest.approx(0.5, abs=1e-4)
    assert weights["recent_space"] == pytest.approx(0.5, abs=1e-4)
    assert sum(v for k, v in weights.items() if k not in ("previous_char", "recent_space")) < 1e-3
    assert u.max().item() < 1e-3  # unexplained: 0


def test_uniform_head_is_the_uniform_term_and_a_random_head_is_mostly_unexplained():
    texts = [t[:48] for t in TEXTS]
    T = 48
    torch.manual_seed(0)
    uniform = uniform_attention(T).expand(2, 1, 1, T, T)
    basis, w, u = fit(texts, uniform, detectors_for("en"))
    assert dict(zip(basis, w[0, 0]))[UNIFORM] == pytest.approx(1.0, abs=1e-3) and u.max().item() < 1e-3
    # a head that attends to one random earlier key per row: no pattern explains it, on text it was not fitted to
    rnd = torch.zeros(2, 1, 1, T, T)
    for b in range(2):
        for i in range(T):
            rnd[b, 0, 0, i, torch.randint(i + 1, ()).item()] = 1.0
    basis, w, _ = fit(texts, rnd, detectors_for("en"))
    held = [t[:48] for t in (" so it goes and so it went, on and on and on it went", " we few, we happy few, we band of brothers, all of us")]
    u = unexplained(rnd.flip(0), target_distributions(batch(held), basis), w)
    assert u.mean().item() > 0.6


def test_heads_are_fitted_separately_and_weights_are_non_negative():
    texts = [t[:48] for t in TEXTS]
    prev = mixture(texts, [(1.0, lambda t, i: max(i - 1, 0))])
    self_ = mixture(texts, [(1.0, lambda t, i: i)])
    A = torch.cat([prev, self_], dim=2)  # (B, 1, 2, T, T)
    basis, w, u = fit(texts, A, detectors_for("en"))
    assert np.all(w >= 0) and w.shape == (1, 2, len(basis))
    assert basis[int(np.argmax(w[0, 0]))] == "previous_char" and basis[int(np.argmax(w[0, 1]))] == "self"
    assert w[0, 0].max() == pytest.approx(1.0, abs=1e-3) and u.max().item() < 1e-3
