import numpy as np
import pytest
import torch

from analysis.measures import detectors as det
from data.charclasses import CLASS_INDEX, classify
from data.tokenizer import CharTokenizer


def batch(text: str) -> det.CharBatch:
    tok = CharTokenizer.from_text(text)
    ids = torch.from_numpy(tok.encode(text).astype(np.int64))[None]
    return det.CharBatch(ids, torch.from_numpy(classify(text, "en").astype(np.int64))[None])


def targets(name: str, text: str) -> set[tuple[int, int]]:
    m = det.REGISTRY[name].targets(batch(text))[0]
    return {(int(i), int(j)) for i, j in m.nonzero()}


def test_offsets_and_first_position():
    assert targets("previous_char", "abcd") == {(1, 0), (2, 1), (3, 2)}
    assert targets("offset_3", "abcde") == {(3, 0), (4, 1)}
    assert targets("self", "ab") == {(0, 0), (1, 1)}
    assert targets("first_position", "abc") == {(0, 0), (1, 0), (2, 0)}


def test_recent_space_is_the_last_boundary_strictly_before_the_query():
    #        0123456
    text = "ab c\nde"
    assert targets("recent_space", text) == {(3, 2), (4, 2), (5, 4), (6, 4)}
    assert targets("space", text) == {(i, j) for j in (2, 4) for i in range(j, 7)}


def test_duplicate_and_induction():
    #        012345
    text = "abcabx"
    assert targets("duplicate", text) == {(3, 0), (4, 1)}
    # induction: text[j-1] == text[i], j < i: at i=3 ('a') -> j=1 ('b' after the first 'a'); at i=4 ('b') -> j=2
    assert targets("induction", text) == {(3, 1), (4, 2)}


def test_class_detectors():
    assert targets("punctuation", "a,b") == {(1, 1), (2, 1)}
    assert targets("vowel", "ba") == {(1, 1)}


def test_all_targets_are_causal():
    b = batch("The cat, the hat; the bat.\nAnd then a cat again")
    T = b.ids.shape[1]
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    for name, d in det.REGISTRY.items():
        assert not (d.targets(b)[0] & future).any(), name


def one_hot_attention(T: int, key_of_row) -> torch.Tensor:
    A = torch.zeros(1, 1, 1, T, T)
    for i in range(T):
        A[0, 0, 0, i, key_of_row(i)] = 1.0
    return A


def test_perfect_head_scores_one_and_uniform_scores_its_baseline():
    text = "ab cd ef gh"
    b = batch(text)
    T = len(text)
    names = ["previous_char", "recent_space", "offset_3"]
    masks = det.target_masks(b, names)
    prev = det.score_masks(one_hot_attention(T, lambda i: max(i - 1, 0)), masks)
    assert prev.score[0, 0, 0, 0].item() == pytest.approx(1.0)
    # recent_space has no target in rows 1-2; they are not counted, so a perfect head still scores 1
    last_space = lambda i: max([j for j in range(i) if text[j] == " "], default=0)
    assert det.score_masks(one_hot_attention(T, last_space), masks).score[0, 1, 0, 0].item() == pytest.approx(1.0)
    uniform = det.uniform_attention(T)[None, None, None]
    u = det.score_masks(uniform, masks)
    assert torch.allclose(u.score[0, :, 0, 0], u.baseline[0])
    # previous_char baseline: rows 1..T-1 give 1/(i+1) each
    assert u.baseline[0, 0].item() == pytest.approx(np.mean([1 / (i + 1) for i in range(1, T)]))


def test_detector_without_targets_gives_nan_not_zero():
    b = batch("abcdef")  # no space, no punctuation
    s = det.score_masks(det.uniform_attention(6)[None, None, None], det.target_masks(b, ["punctuation", "self"]))
    assert torch.isnan(s.score[0, 0]).all() and torch.isnan(s.baseline[0, 0])
    assert not torch.isnan(s.score[0, 1]).any()


def test_scoring_is_vectorized_over_layers_and_heads():
    T = 6
    A = torch.cat([one_hot_attention(T, lambda i: i), one_hot_attention(T, lambda i: max(i - 1, 0))], dim=2)  # 2 heads
    s = det.score_masks(A.expand(3, 2, 2, T, T), det.target_masks(batch("abcdef"), ["self", "previous_char"]).expand(3, -1, -1, -1))
    assert s.score.shape == (3, 2, 2, 2)
    assert torch.allclose(s.score[:, 0, :, 0], torch.ones(3, 2)) and torch.allclose(s.score[:, 1, :, 1], torch.ones(3, 2))
    assert torch.allclose(s.score[:, 0, :, 1], torch.zeros(3, 2))


def test_class_attention_rows_and_head_metrics():
    text = "ab ab"
    b = batch(text)
    A = one_hot_attention(5, lambda i: max(i - 1, 0))
    heads, base, counts = det.class_attention_sums(A, b.classes)
    assert torch.allclose(heads.sum(-1)[0, 0], counts)  # every query row's mass lands somewhere
    c = {name: CLASS_INDEX[name] for name in ("vowel", "consonant", "space")}
    expected = torch.zeros_like(heads[0, 0])  # rows 1..4: b->a, ' '->b, a->' ', b->a
    expected[c["consonant"], c["vowel"]], expected[c["space"], c["consonant"]], expected[c["vowel"], c["space"]] = 2, 1, 1
    assert torch.equal(heads[0, 0], expected)
    assert torch.allclose(base.sum(-1), counts)
    m = det.head_metric_sums(A)
    assert m["mean_distance"].item() == pytest.approx(1.0)
    assert m["normalized_entropy"].item() == pytest.approx(0.0, abs=1e-6)
    u = det.head_metric_sums(det.uniform_attention(5)[None, None, None])
    assert u["normalized_entropy"].item() == pytest.approx(1.0, abs=1e-5)
    assert u["first_position"].item() == pytest.approx(np.mean([1 / (i + 1) for i in range(1, 5)]))
