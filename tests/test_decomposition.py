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


def bible_batch(n: int = 16, T: int = 64):
    from charlens.analysis.runs.extract import char_batch
    from charlens.analysis.runs.inputs import sample_windows
    from charlens.data.corpora import bible_corpus
    from charlens.data.tokenizer import CharTokenizer

    corpus = bible_corpus("en")
    tok = CharTokenizer.from_text(corpus.train + corpus.heldout)
    return tok, char_batch(tok, sample_windows(corpus.train, T, n, np.random.default_rng(0)), "en")


def test_pure_heads_are_all_of_themselves_and_mixtures_their_shares():
    """Shares sum to one. A pure offset head (offsets 1..8, itself where the offset does not exist yet) is ~1.0
    of its offset, unexplained <= 0.05 (rows without a target are explained by what applies there); exact
    mixtures, built as the model defines them (where a part has no key the others share the row), are recovered
    to 0.05; half the head planted as attention the basis cannot express is half unexplained."""
    from handmade import as_head, ids_of, latest_of, mixture, offset

    torch.set_num_threads(1)
    tok, b = bible_batch()
    space = latest_of(ids_of(tok, " \n"))
    heads = [as_head(offset(k)) for k in range(1, 9)]
    wants = [{"previous_char" if k == 1 else f"offset_{k}": 1.0} for k in range(1, 9)]
    heads += [mixture((0.5, offset(2)), (0.5, space)), mixture((0.5, offset(0)), (0.5, offset(5))),
              mixture((0.2, offset(1)), (0.3, offset(6)), (0.5, space))]
    wants += [{"offset_2": 0.5, "recent_space": 0.5}, {"self": 0.5, "offset_5": 0.5},
              {"previous_char": 0.2, "offset_6": 0.3, "recent_space": 0.5}]
    A = torch.stack([h(b) for h in heads], 1)[:, None]  # (B, 1, N, T, T)
    basis, w, u = fit_batches(A, b)
    assert np.allclose(w.sum(-1), 1.0) and (w >= 0).all()
    for n, want in enumerate(wants):
        got = dict(zip(basis, w[0, n]))
        assert all(got[k] == pytest.approx(v, abs=0.05) for k, v in want.items()), (want, sorted(got.items(), key=lambda x: -x[1])[:3])
        assert u[:, 0, n].mean().item() <= 0.05
    e = latest_of(ids_of(tok, "e"))  # one letter: no pattern of the basis is it
    half = mixture((0.5, offset(1)), (0.5, e))(b)[:, None, None]
    _, w, u = fit_batches(half, b)
    assert 0.2 < u.mean().item() < 0.55 and ((u >= 0) & (u <= 1)).all()


def fit_batches(A: torch.Tensor, b) -> tuple[list[str], np.ndarray, torch.Tensor]:
    """Fit on the batch and measure what is left out on the same batch."""
    basis = basis_names(detectors_for("en"))
    m = MixtureFit(basis)
    P = target_distributions(b, basis)
    m.add(A, P)
    w = m.weights()
    return basis, w, unexplained(A, P, w)


def test_unexplained_is_a_share_in_zero_one():
    """All of a row's mass unexplained is 1, never more: weights on a pattern without targets leave every row empty."""
    texts = [t[:48] for t in TEXTS]
    b = batch(texts)
    basis = basis_names(["self", "punctuation"])  # TEXTS[0] has no punctuation mark
    P = target_distributions(b, basis)
    A = uniform_attention(48).expand(2, 1, 1, 48, 48)
    u = unexplained(A, P, np.array([[[0.0, 1.0, 0.0]]]))
    assert u[0, 0, 0].item() == pytest.approx(1.0) and ((u >= 0) & (u <= 1)).all()
    assert unexplained(A, P, np.array([[[0.0, 0.0, 1.0]]])).max().item() < 1e-6
