"""Key characters: mass on each character's keys against a character-blind head with the head's positional profile."""
import numpy as np
import pytest
import torch

from charlens.analysis.measures.keychars import KeyCharCounts, KeyCharSums
from charlens.analysis.measures.positional import BatchSums
from detector_helpers import batch, one_hot_attention

TEXTS = ["The cat sat. A dog ran\nBy the way, I", "so it goes on and on; Et tu?\nNow the"]


def key_chars(A: torch.Tensor, b):
    V = int(b.ids.max()) + 1
    counts, sums = KeyCharCounts(V), KeyCharSums(V)
    counts.add(b)
    sums.add(BatchSums(A, b))
    return sums.result(counts.frequencies())


def test_offset_heads_have_no_excess_and_masses_are_shares():
    """A head that looks k back is blind to characters: on the text its frequencies come from, its control for every
    character is exactly its mass there (offsets 0..8 are strata of their own). Masses and controls sum to 1."""
    b = batch(TEXTS)
    T = b.shape[1]
    for k in (0, 1):
        r = key_chars(one_hot_attention(T, lambda i: max(i - k, 0)).expand(2, -1, -1, -1, -1), b)
        np.testing.assert_allclose(r.mass.sum(-1), 1.0, atol=1e-9)
        np.testing.assert_allclose(r.control.sum(-1), 1.0, atol=1e-9)
        np.testing.assert_allclose(r.excess, 0.0, atol=1e-9)


def test_a_head_on_the_latest_e_has_its_excess_on_e():
    """All mass on the latest earlier 'e' (itself where there is none): the mass on 'e' is the share of rows i >= 1
    with an 'e' before them, counted by hand, and 'e' carries the largest excess."""
    text = TEXTS[0]
    b = batch(text)
    T = len(text)
    latest = lambda i: max((j for j in range(i) if text[j] == "e"), default=i)
    r = key_chars(one_hot_attention(T, latest), b)
    e = int(b.ids[0, text.index("e")])
    on_e = sum(text[latest(i)] == "e" for i in range(1, T)) / (T - 1)
    assert r.mass[0, 0, e] == pytest.approx(on_e)
    assert int(np.argmax(r.excess[0, 0])) == e and r.excess[0, 0, e] > 0.5
