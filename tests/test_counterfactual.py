import numpy as np
import pytest
import torch

from charlens.analysis.measures.counterfactual import align_positions, compare_patterns, rowwise_correlation, run_counterfactual
from beyond_helpers import previous_char_pattern, tiny_model
from charlens.data.tokenizer import CharTokenizer
from charlens.model.hooks import add_hook

TEXT_A = "the cat sat on the mat"
TEXT_B = "the big bat sat on the mat"  # different length; the only 'c' is gone


def hand_set(model, tok, watched: str):
    """Layer 0: head 0 attends to the previous character; head 1 attends to every earlier
    `watched` character (itself if there is none). The hook reads the tokens of the current
    run through a forward pre-hook on the model."""
    current = {}
    model.register_forward_pre_hook(lambda mod, args: current.__setitem__("idx", args[0]))
    target = int(tok.encode(watched)[0])

    def hook(att):
        idx = current["idx"]
        B, _, T, _ = att.shape
        att = att.clone()
        att[:, 0] = previous_char_pattern(T)
        hit = (idx == target).float().unsqueeze(1).expand(B, T, T).tril()  # (B, T, T): earlier watched chars
        none = hit.sum(-1, keepdim=True) == 0
        att[:, 1] = torch.where(none, torch.eye(T).expand(B, T, T), hit / hit.sum(-1, keepdim=True).clamp_min(1))
        return att

    add_hook(model, "blocks.0.attn.hook_pattern", hook)


def setup():
    tok = CharTokenizer.from_text(TEXT_A + TEXT_B)
    model = tiny_model(vocab_size=tok.vocab_size, n_layer=2, n_head=2)
    hand_set(model, tok, "c")
    return tok, model


def test_alignment_keeps_shared_characters_in_order():
    pos_a, pos_b = align_positions("abcd", "abXcd")
    assert pos_a.tolist() == [0, 1, 2, 3] and pos_b.tolist() == [0, 1, 3, 4]
    pos_a, pos_b = align_positions(TEXT_A, TEXT_B)
    assert all(TEXT_A[i] == TEXT_B[j] for i, j in zip(pos_a, pos_b))
    assert 4 not in pos_a  # the 'c' has no partner


def test_identical_texts_give_zero_difference_and_correlation_one():
    tok, model = setup()
    ids = tok.encode(TEXT_A)
    cf = run_counterfactual(model, ids, ids, TEXT_A, TEXT_A)
    assert np.all(cf.metrics["max_abs_diff"] == 0)
    assert np.allclose(cf.metrics["correlation"], 1.0) and np.allclose(cf.metrics["value_weighted_correlation"], 1.0)
    assert cf.metrics["n_aligned"] == len(TEXT_A)


def test_head_watching_the_edited_character_changes_and_previous_char_head_does_not():
    tok, model = setup()
    cf = run_counterfactual(model, tok.encode(TEXT_A), tok.encode(TEXT_B), TEXT_A, TEXT_B)
    m = cf.metrics
    assert m["max_abs_diff"][0, 0] == 0.0 and m["correlation"][0, 0] == pytest.approx(1.0)
    assert m["max_abs_diff"][0, 1] == pytest.approx(1.0)  # in A every later query sits on the 'c'
    assert m["correlation"][0, 1] < 0.5
    assert (m["ranking"][0]["layer"], m["ranking"][0]["head"]) == (0, 1)
    assert cf.difference(0, 0).shape == (m["n_aligned"], m["n_aligned"])
    assert np.all(cf.difference(0, 0) == 0)
    summary = cf.summary(top=2)
    assert len(summary["ranking"]) == 2 and summary["max_abs_diff"][0][0] == 0.0


def test_compare_patterns_by_hand():
    a = np.array([[[[1.0, 0.0], [0.5, 0.5]]]])
    b = np.array([[[[1.0, 0.0], [0.2, 0.8]]]])
    m = compare_patterns(a, b, np.arange(2), np.arange(2))
    assert m["max_abs_diff"][0, 0] == pytest.approx(0.3)
    assert m["mean_abs_diff"][0, 0] == pytest.approx(0.2)  # entries (0,0), (1,0), (1,1): 0, .3, .3


def test_correlation_edge_cases_and_errors():
    assert rowwise_correlation(np.ones(3), np.ones(3)) == 1.0
    assert np.isnan(rowwise_correlation(np.ones(3), np.array([1.0, 2.0, 3.0])))
    tok, model = setup()
    with pytest.raises(ValueError, match="block size"):
        run_counterfactual(model, np.zeros(40, dtype=np.int64), np.zeros(3, dtype=np.int64), "x" * 40, "xxx")
