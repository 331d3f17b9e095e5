"""Weight-level circuit scores (analysis.measures.circuits): known answers on hand-set weights for every
score, the factored composition formula against the dense one, and the folded factors against the
model's own forward pass."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from charlens.analysis.measures import circuits as cs
from charlens.model.hooks import run_with_cache
from charlens.model.transformer import ModelConfig, TransformerLM

C = 6


def e(*idx: int, n: int = C) -> torch.Tensor:
    """A column (n, 1): the sum of the given unit vectors."""
    v = torch.zeros(n, 1, dtype=torch.float64)
    v[list(idx)] = 1.0
    return v


def two_heads(early: dict, late: dict, n: int = C, T: int = C) -> cs.HeadWeights:
    """Layer 0 holds head `early`, layer 1 head `late` (one head each): dicts of W_Q, W_K, W_V (C, d) and
    W_O (d, C); unset factors are zero. Embeddings, positions and unembedding are identities (n = T = C)."""
    given = {**early, **late}
    d = given["W_O"].shape[0] if "W_O" in given else next(iter(given.values())).shape[-1]
    def stack(name: str, shape: tuple) -> torch.Tensor:
        return torch.stack([h.get(name, torch.zeros(shape, dtype=torch.float64)) for h in (early, late)])[:, None]
    eye = torch.eye(C, dtype=torch.float64)
    return cs.HeadWeights(stack("W_Q", (C, d)), stack("W_K", (C, d)), stack("W_V", (C, d)), stack("W_O", (d, C)),
                          eye[:n], eye[:T], eye[:, :n])


def test_composition_known_answers():
    # the early head reads direction 0 and writes direction 1; the late head's keys read 1 and 3 equally
    w = two_heads({"W_V": e(0), "W_O": e(1).T}, {"W_Q": e(2), "W_K": (e(1) + e(3)) / math.sqrt(2), "W_V": e(1), "W_O": e(4).T})
    k, q, v = (cs.composition(w, m) for m in ("k", "q", "v"))
    assert k[0, 0, 1, 0].item() == pytest.approx(1 / math.sqrt(2))  # half the key's reading is the early head's output
    assert q[0, 0, 1, 0].item() == pytest.approx(0.0)  # its queries read direction 2, which nothing writes
    assert v[0, 0, 1, 0].item() == pytest.approx(1.0)  # its values read exactly what the early head writes
    for s in (k, q, v):  # only earlier -> later pairs are defined
        assert torch.isnan(s[1, 0, 0, 0]) and torch.isnan(s[0, 0, 0, 0]) and torch.isnan(s[1, 0, 1, 0])


def test_factored_composition_equals_the_dense_formula():
    torch.manual_seed(0)
    L, H, d = 3, 2, 4
    g = lambda *s: torch.randn(*s, dtype=torch.float64)
    w = cs.HeadWeights(g(L, H, 16, d), g(L, H, 16, d), g(L, H, 16, d), g(L, H, d, 16), g(5, 16), g(7, 16), g(16, 5))
    OV, QK = w.W_V @ w.W_O, w.W_Q @ w.W_K.transpose(-1, -2)
    right = {"q": QK, "k": QK.transpose(-1, -2), "v": OV}
    for mode, R in right.items():
        got = cs.composition(w, mode)
        for le, he, lh, hh in [(0, 1, 1, 0), (0, 0, 2, 1), (1, 1, 2, 1)]:
            A, B = OV[le, he], R[lh, hh]
            dense = torch.linalg.norm(A @ B) / (torch.linalg.norm(A) * torch.linalg.norm(B))
            assert got[le, he, lh, hh].item() == pytest.approx(dense.item(), rel=1e-10)


def test_ov_copying_and_diagonal_known_answers():
    cycle = torch.roll(torch.eye(3, dtype=torch.float64), 1, dims=1)  # reading a, raises the next letter's logit
    maps = torch.stack([torch.eye(3, dtype=torch.float64), -torch.eye(3, dtype=torch.float64), cycle,
                        torch.diag(torch.tensor([3.0, 1.0, -1.0], dtype=torch.float64))])
    np.testing.assert_allclose(cs.ov_copying(maps).numpy(), [1.0, -1.0, 0.0, 3 / 5], atol=1e-12)
    np.testing.assert_allclose(cs.diagonal_share(maps).numpy(), [1.0, 0.0, 0.0, 2 / 3])


def test_ov_maps_are_embedding_ov_unembedding():
    ov = torch.roll(torch.eye(C, dtype=torch.float64), 1, dims=1)  # a head whose OV circuit shifts every letter by one
    w = two_heads({"W_V": torch.eye(C, dtype=torch.float64), "W_O": ov}, {"W_V": torch.eye(C, dtype=torch.float64),
                                                                           "W_O": torch.eye(C, dtype=torch.float64)})
    s = cs.circuit_scores(w)
    assert s.ov_copying[1, 0] == pytest.approx(1.0) and s.ov_diagonal[1, 0] == 1.0  # the identity copies
    assert abs(s.ov_copying[0, 0]) < 1e-12 and s.ov_diagonal[0, 0] == 0.0  # the shift does not


def test_qk_previous_known_answers():
    shift = torch.diag(torch.ones(C - 1, dtype=torch.float64), -1)  # W_QK[i, i - 1] = 1: position i looks at i - 1
    eye = torch.eye(C, dtype=torch.float64)
    w = two_heads({"W_Q": eye, "W_K": shift.T}, {"W_Q": eye, "W_K": eye})
    got = cs.qk_previous(w)
    assert got[0, 0].item() == 1.0  # the previous position, for every query
    assert got[1, 0].item() == 0.0  # itself: never the previous one
    flat = two_heads({"W_Q": 0 * eye, "W_K": eye}, {"W_Q": eye, "W_K": eye})
    assert cs.qk_previous(flat)[0, 0].item() == pytest.approx(1 / (C - 1))  # all ties: key 0, previous only for i = 1


def test_qk_match_known_answers():
    eye = torch.eye(C, dtype=torch.float64)
    late = {"W_Q": eye, "W_K": eye}
    moves = two_heads({"W_V": eye, "W_O": eye}, late)  # the early head moves the letter it reads unchanged
    assert cs.qk_match(moves)[0, 0, 1, 0].item() == 1.0
    shifted = two_heads({"W_V": eye, "W_O": torch.roll(eye, 1, dims=1)}, late)  # it moves the next letter instead
    assert cs.qk_match(shifted)[0, 0, 1, 0].item() == 0.0
    assert torch.isnan(cs.qk_match(moves)[1, 0, 0, 0])


def test_baselines_sit_near_chance_and_below_a_planted_circuit():
    eye = torch.eye(C, dtype=torch.float64)
    w = two_heads({"W_V": eye, "W_O": eye}, {"W_Q": eye, "W_K": eye, "W_V": eye, "W_O": eye}, n=C, T=C)
    base = cs.baselines(w, seed=0)
    assert set(base) == {"ov_copying", "ov_diagonal", "qk_previous", "q_composition", "k_composition", "v_composition",
                         "qk_match"}
    assert abs(base["ov_copying"][0]) < 0.1 and base["ov_copying"][1] < 1.0  # a random map copies nothing on average
    assert base["ov_diagonal"][0] == pytest.approx(1 / C, abs=0.1) and base["qk_match"][0] == pytest.approx(1 / C, abs=0.1)
    assert cs.baselines(w, seed=0) == base  # seeded
    s = cs.circuit_scores(w)
    assert s.ov_copying[0, 0] > base["ov_copying"][1] and s.qk_match[0, 0, 1, 0] > base["qk_match"][1]


def test_head_weights_fold_layer_norm_and_read_the_model_as_it_runs():
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, attn_only=True)).double()
    with torch.no_grad():
        for block in model.blocks:
            block.ln_1.weight.uniform_(0.5, 2.0)
    ids = torch.randint(1, 11, (3, 8))
    cache = run_with_cache(model, ids)
    w = cs.head_weights(model)
    x = model.wte(ids) + model.wpe(torch.arange(8))
    normed = torch.nn.functional.layer_norm(x, (8,))  # LayerNorm without its scale: the scale is folded into W_Q etc.
    for name, W in (("q", w.W_Q), ("k", w.W_K), ("v", w.W_V)):
        got = torch.einsum("btc,hcd->bhtd", normed, W[0])
        torch.testing.assert_close(got, cache.layer(0, name).double())  # type: ignore[arg-type]
    z = cache.layer(0, "z")  # (B, H, T, d)
    for h in range(2):
        alone = torch.zeros_like(z)
        alone[:, h] = z[:, h]
        out = model.blocks[0].attn.c_proj(alone.transpose(1, 2).reshape(3, 8, 8))
        torch.testing.assert_close(z[:, h] @ w.W_O[0, h], out - out.mean(-1, keepdim=True))  # centred writing weights
    assert w.W_E.shape == (10, 8) and w.W_U.shape == (8, 10)  # every token but the unknown one
    torch.testing.assert_close(w.W_U, (model.ln_f.weight[:, None] * model.wte.weight[1:].T)
                               - (model.ln_f.weight[:, None] * model.wte.weight[1:].T).mean(0))


def test_a_handset_induction_circuit_stands_out_in_its_weights():
    from charlens.data.tokenizer import CharTokenizer
    from live_helpers import handset_model

    tok = CharTokenizer(list("abcdefghij"))
    w = cs.head_weights(handset_model(tok, block_size=16, n_embd=64))
    s, base = cs.circuit_scores(w), cs.baselines(w, seed=0)
    k = s.composition["k"]
    assert np.nanargmax(k) == np.ravel_multi_index((0, 0, 1, 0), k.shape)  # previous-character head -> induction head
    assert k[0, 0, 1, 0] > base["k_composition"][1]
    assert s.qk_match[0, 0, 1, 0] == 1.0  # its query reads the character that L0H0 moved to the key
    assert s.ov_copying[1, 0] > 0.9 and s.ov_diagonal[1, 0] == 1.0  # the induction head writes the character it reads
    assert s.qk_previous[0, 0] == 1.0  # and L0H0 looks at the previous position


def test_the_circuit_result_names_the_pair_and_fills_the_head_table():
    from charlens.analysis.runs.circuits import circuit_result
    from charlens.data.tokenizer import CharTokenizer
    from live_helpers import handset_model

    result = circuit_result(handset_model(CharTokenizer(list("abcdefghij")), block_size=16, n_embd=64))
    top = result.strongest("k_composition")[0]
    assert (top["from"], top["to"], top["stands_out"]) == ([0, 0], [1, 0], True) and top["excess"] > 0
    row = result.head_columns(1, 0)
    assert row["k_composition_from"] == "L0H0" and row["qk_match_from"] == "L0H0" and row["qk_match"] == 1.0
    assert result.head_columns(0, 0)["k_composition_from"] == "" and result.head_columns(0, 0)["k_composition"] is None
    d = result.to_dict()
    assert d["pairs"]["k_composition"][1][0][0][0] is None  # later -> earlier: undefined, null in JSON
    assert d["pairs"]["k_composition"][0][0][1][0] == top["score"] and d["n_chars"] == 10


def test_a_one_layer_model_has_no_pairs_and_its_figure_says_so_without_warnings():
    import warnings

    from charlens.analysis.report.figures.circuits import PAIR_PANELS, circuits_figure
    from charlens.analysis.runs.circuits import circuit_result

    torch.manual_seed(0)
    result = circuit_result(TransformerLM(ModelConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=16,
                                                      attn_only=True)))
    assert result.strongest("k_composition") == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "identical low and high xlims" on an empty map was one
        fig = circuits_figure(result.to_dict())
    texts = [t.get_text() for ax in fig.get_axes() for t in ax.texts]
    assert texts.count("no pairs: one layer") == len(PAIR_PANELS)
