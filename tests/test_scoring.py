import numpy as np
import pytest
import torch

from charlens.analysis.measures import scoring
from charlens.analysis.measures.detectors import REGISTRY, prefix_match, target_masks
from charlens.analysis.measures.positional import StratumCounts
from charlens.analysis.measures.structural import NEAR
from detector_helpers import batch, one_hot_attention


def test_perfect_head_scores_one_and_uniform_scores_its_baseline():
    text = "ab cd ef gh"
    b = batch(text)
    T = len(text)
    names = ["previous_char", "recent_space", "offset_3"]
    masks = target_masks(b, names)
    prev = scoring.score_masks(one_hot_attention(T, lambda i: max(i - 1, 0)), masks)
    assert prev.score[0, 0, 0, 0].item() == pytest.approx(1.0)
    # recent_space has no target in rows 1-2; they are not counted, so a perfect head still scores 1
    last_space = lambda i: max([j for j in range(i) if text[j] == " "], default=0)
    assert scoring.score_masks(one_hot_attention(T, last_space), masks).score[0, 1, 0, 0].item() == pytest.approx(1.0)
    uniform = scoring.uniform_attention(T)[None, None, None]
    u = scoring.score_masks(uniform, masks)
    assert torch.allclose(u.score[0, :, 0, 0], u.baseline[0])
    assert torch.equal(u.control[0, :, 0, 0], u.baseline[0])  # bare masks: the control is the uniform baseline
    # previous_char baseline: rows 1..T-1 give 1/(i+1) each
    assert u.baseline[0, 0].item() == pytest.approx(np.mean([1 / (i + 1) for i in range(1, T)]))


def test_detector_without_targets_gives_nan_not_zero():
    b = batch("abcdef")  # no space, no punctuation
    s = scoring.score_masks(scoring.uniform_attention(6)[None, None, None], target_masks(b, ["punctuation", "self"]))
    assert torch.isnan(s.score[0, 0]).all() and torch.isnan(s.baseline[0, 0])
    assert not torch.isnan(s.score[0, 1]).any()


def test_scoring_is_vectorized_over_layers_and_heads():
    T = 6
    A = torch.cat([one_hot_attention(T, lambda i: i), one_hot_attention(T, lambda i: max(i - 1, 0))], dim=2)  # 2 heads
    s = scoring.score_masks(A.expand(3, 2, 2, T, T), target_masks(batch("abcdef"), ["self", "previous_char"]).expand(3, -1, -1, -1))
    assert s.score.shape == (3, 2, 2, 2)
    assert torch.allclose(s.score[:, 0, :, 0], torch.ones(3, 2)) and torch.allclose(s.score[:, 1, :, 1], torch.ones(3, 2))
    assert torch.allclose(s.score[:, 0, :, 1], torch.zeros(3, 2))


def test_prefix_control_is_a_one_character_matcher_with_the_heads_mass():
    #       01234567
    text = "abxaayaa"  # at i=7 ('a' after 'a'): one-character matches j=1, 4, 5; the two-character match ("aa") j=5
    b = batch(text)
    assert prefix_match(b, 1)[0, 7].nonzero().flatten().tolist() == [1, 4, 5]
    assert prefix_match(b, 2)[0].nonzero().tolist() == [[7, 5]]  # the only row with a two-character match
    right = one_hot_attention(8, lambda i: 5 if i == 7 else i)  # row 7 picks the two-character match
    wrong = one_hot_attention(8, lambda i: 4 if i == 7 else i)  # row 7 picks a one-character-only match
    self_ = one_hot_attention(8, lambda i: i)  # no mass on any match
    for A, score, control in ((right, 1.0, 1 / 3), (wrong, 0.0, 1 / 3), (self_, 0.0, 0.0)):
        s = scoring.score_windows(A, b, ["prefix_match_2"])
        # control: the head's one-character mass on row 7 times the two-character share of those matches (1 of 3)
        assert (s.score.item(), s.control.item()) == pytest.approx((score, control))
        assert s.baseline.item() == pytest.approx(1 / 8)  # uniform: one target among 8 keys


def test_positional_control_equals_the_score_of_any_offset_head():
    """A head that always looks k back is class-blind: with the frequencies of the same text its positional
    baseline for every class detector is exactly its score, over the windows (rows weigh 1 / their window's rows)."""
    b = batch(TEXTS)
    names = ["vowel", "consonant", "capital", "duplicate"]
    counts = StratumCounts(names)
    counts.add(b)
    T = b.shape[1]
    offset = lambda k: one_hot_attention(T, lambda i: max(i - k, 0)).expand(2, -1, -1, -1, -1)
    for A in (offset(0), offset(1), 0.5 * offset(0) + 0.5 * offset(1)):
        s = scoring.score_windows(A, b, names, counts.frequencies())
        # per window the two may differ (the frequencies are the batch's); summed over the windows they agree
        torch.testing.assert_close(s.control.sum(0), s.score.sum(0))


def test_offset_gathered_and_key_set_detectors_score_as_their_masks_do():
    """Offset detectors are summed along diagonals, one-target detectors gathered and key-set detectors summed
    from the attention each key receives: the numbers must be those of the one masked routine."""
    b = batch(["Ab cd\nef, gh ijk", "xy z, w\nvu Ts rq"])
    torch.manual_seed(0)
    A = torch.softmax(torch.randn(2, 2, 3, 16, 16).masked_fill(~torch.ones(16, 16, dtype=torch.bool).tril(), -1e9), -1)
    assert b.shape == (2, 16)
    for kind in ("offsets", "key", "key_set"):
        names = [n for n, d in REGISTRY.items() if getattr(d, kind) and (not d.language_specific or n == "capital")]
        assert len(names) >= 4
        counts = StratumCounts(names)
        counts.add(b)
        fast = scoring.score_windows(A, b, names, counts.frequencies())
        slow = scoring.score_masks(A, target_masks(b, names))
        torch.testing.assert_close(fast.score, slow.score, equal_nan=True)
        torch.testing.assert_close(fast.baseline, slow.baseline, equal_nan=True)
        uniform = [k for k, n in enumerate(names) if REGISTRY[n].control == "uniform"]
        torch.testing.assert_close(fast.control[:, uniform], slow.control[:, uniform], equal_nan=True)


TEXTS = ["The cat sat. A dog ran\nBy the way, I", "so it goes on and on; Et tu?\nNow the"]
STRUCTURAL = ["same_word", "previous_word", "word_start", "line_start", "recent_space", "space", "punctuation"]


def test_structural_control_by_hand():
    """The structural control recomputed pair by pair in plain Python: f(c, o) = the share of (query, key = query - o)
    pairs with a target among rows with targets of query class c, each row weighing 1 / its window's rows with
    targets, offsets beyond NEAR pooled; control = mean over a window's rows with targets of sum_j A[i, j] f(c_i, i - j)."""
    b = batch([t * 3 for t in TEXTS])  # 108 characters: offsets beyond NEAR = 32 too
    B, T = b.shape
    torch.manual_seed(1)
    A = torch.softmax(torch.randn(B, 1, 1, T, T).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), -1e9), -1)
    counts = StratumCounts(STRUCTURAL)
    counts.add(b)
    got = scoring.score_windows(A, b, STRUCTURAL, counts.frequencies()).control[:, :, 0, 0]
    M = target_masks(b, STRUCTURAL).tolist()
    cls = b.classes.tolist()
    for d, name in enumerate(STRUCTURAL):
        rows = [[i for i in range(T) if any(M[w][d][i])] for w in range(B)]
        hits, pairs = {}, {}
        for w in range(B):
            for i in rows[w]:
                for o in range(i + 1):
                    key = (cls[w][i], min(o, NEAR + 1))
                    hits[key] = hits.get(key, 0.0) + M[w][d][i][i - o] / len(rows[w])
                    pairs[key] = pairs.get(key, 0.0) + 1 / len(rows[w])
        for w in range(B):
            want = sum(A[w, 0, 0, i, j].item() * hits[(cls[w][i], min(i - j, NEAR + 1))] / pairs[(cls[w][i], min(i - j, NEAR + 1))]
                       for i in rows[w] for j in range(i + 1)) / len(rows[w])
            assert got[w, d].item() == pytest.approx(want, abs=1e-5), (name, w)


def test_structural_control_equals_the_score_of_any_offset_head():
    """A head that picks keys by offset alone knows nothing of words: over the windows its structural control for
    every word, line and separator detector is exactly its score (selectivity 0), whatever the text. The plain
    function `structural_control` gives the same numbers from any target masks."""
    b = batch(TEXTS)
    counts = StratumCounts(STRUCTURAL)
    counts.add(b)
    T = b.shape[1]
    offset = lambda k: one_hot_attention(T, lambda i: max(i - k, 0)).expand(2, -1, -1, -1, -1)
    for A in (offset(0), offset(1), 0.5 * offset(0) + 0.5 * offset(1), 0.2 * offset(0) + 0.8 * offset(1)):
        s = scoring.score_windows(A, b, STRUCTURAL, counts.frequencies())
        torch.testing.assert_close(s.control.sum(0), s.score.sum(0))
        plain = scoring.structural_control(A, target_masks(b, STRUCTURAL), b.classes)
        torch.testing.assert_close(plain, s.control)
    # a head that knows words does not: all of its mass on the query's word start, far above what its offsets predict
    start = one_hot_attention(T, lambda i: max((j for j in range(1, i + 1) if TEXTS[0][j - 1] in " \n.,;?"
                                                and TEXTS[0][j] not in " \n.,;?"), default=i))
    s = scoring.score_windows(start, batch(TEXTS[0]), ["word_start"], counts.frequencies())
    assert s.score.item() > 0.9 and s.control.item() < 0.5
