"""Head similarity: JS distance matrix against scipy's, and clustering of a model whose
heads are set by hand (two previous-character heads must be each other's nearest)."""
import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster
from scipy.spatial.distance import jensenshannon

from charlens.analysis.measures.similarity import cluster_heads, head_rows, js_distance_matrix
from charlens.data.tokenizer import CharTokenizer
from charlens.model.transformer import ModelConfig, TransformerLM
from summary_fixture import hand_attention
from charlens.model.hooks import add_hook, attention_patterns

TEXTS = [t[:44] for t in ("the cat sat on the mat and the dog ran after it", "in the beginning god made the heavens and the sea")]
# layer-major (L0H0, L0H1, L0H2, L1H0, L1H1, L1H2): previous-char heads at L0H0 and L1H2
KINDS = [["prev", "space", "offset3"], ["uniform", "self", "prev"]]


def hand_set_attention(texts: list[str], kinds: list[list[str]]) -> np.ndarray:
    """Run a model whose hook_pattern points set each head's attention by rule; (N, L, H, T, T)."""
    T = len(texts[0])
    tok = CharTokenizer.from_text("".join(texts))
    L, H = len(kinds), len(kinds[0])
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=tok.vocab_size, block_size=T, n_layer=L, n_head=H, n_embd=8 * H)).eval()
    patterns = torch.tensor(np.stack([hand_attention(t, kinds) for t in texts]), dtype=torch.float32)  # (N, L, H, T, T)
    for l in range(L):
        add_hook(model, f"blocks.{l}.attn.hook_pattern", lambda att, l=l: patterns[:, l])
    idx = torch.tensor(np.stack([tok.encode(t).astype(np.int64) for t in texts]))
    return attention_patterns(model, idx).numpy()


def test_distance_matches_scipy_on_random_rows():
    rng = np.random.default_rng(1)
    N, L, H, T = 2, 2, 2, 6
    att = np.tril(rng.uniform(0.0, 1.0, (N, L, H, T, T)))
    att /= att.sum(-1, keepdims=True)
    D = js_distance_matrix(att)
    rows = head_rows(att)
    expected = np.array([[np.mean([jensenshannon(rows[a, r], rows[b, r], base=2) for r in range(rows.shape[1])])
                          for b in range(L * H)] for a in range(L * H)])
    np.testing.assert_allclose(D, expected, atol=1e-12)
    assert np.all(np.diag(D) == 0) and np.allclose(D, D.T)


def test_known_distances_of_hand_set_heads():
    att = hand_set_attention(TEXTS, KINDS)
    D = js_distance_matrix(att)
    labels = [f"L{l}H{h}" for l in range(2) for h in range(3)]
    prev_a, prev_b, offset3, self_ = labels.index("L0H0"), labels.index("L1H2"), labels.index("L0H2"), labels.index("L1H1")
    assert D[prev_a, prev_b] == pytest.approx(0.0, abs=1e-9)
    # previous-char and self never share a key (except on row 0, which is skipped): disjoint rows, distance 1
    assert D[prev_a, self_] == pytest.approx(1.0, abs=1e-9)
    # previous-char vs offset 3 overlap only on rows 1 and 2 (both fall back to position 0 there)
    T = len(TEXTS[0])
    assert D[prev_a, offset3] == pytest.approx((T - 1 - 1) / (T - 1), abs=1e-9)


def test_clustering_puts_the_two_previous_char_heads_together_first():
    att = hand_set_attention(TEXTS, KINDS)
    Z = cluster_heads(js_distance_matrix(att))
    labels = [f"L{l}H{h}" for l in range(2) for h in range(3)]
    first = {labels[int(Z[0, 0])], labels[int(Z[0, 1])]}
    assert first == {"L0H0", "L1H2"}
    assert Z[0, 2] == pytest.approx(0.0, abs=1e-9) and Z[1, 2] > 0.3  # the next merge is far away
    clusters = fcluster(Z, t=0.1, criterion="distance")
    assert clusters[labels.index("L0H0")] == clusters[labels.index("L1H2")]
    assert len(set(clusters)) == 5


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(N, L, H, T, T\)"):
        js_distance_matrix(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="two heads"):
        cluster_heads(np.zeros((1, 1)))
