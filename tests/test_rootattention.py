"""Root attention (consonant -> same-word consonant at distances 2-3) against its within-word shuffled-letter
control: known answers counted by hand, the control as the exact mean over shuffles, and heads that seek or
avoid consonants."""
from __future__ import annotations

import itertools

import pytest
import torch

from charlens.analysis.measures.rootattention import root_entry, root_sums
from detector_helpers import batch, one_hot_attention


def test_a_content_blind_offset_2_head_counted_by_hand():
    text = " strand ab"  # word 1 "strand" (5 consonants, 1 vowel) at 1..6; word 2 "ab" at 8..9
    A = one_hot_attention(len(text), lambda i: max(i - 2, 0))
    observed, control, mass, counts = root_sums(A, batch(text))
    # Consonant queries with a same-word key 2 back: r(3) -> s, n(5) -> r, d(6) -> a (t(2) and b(9) look at a space).
    # Keys s, r are consonants, a a vowel: observed 2 of the 3 rows.
    assert observed.item() == pytest.approx(2.0)
    # Each of the 3 rows: (5 - 1) / (6 - 1) of the word's other letters are consonants.
    assert control.item() == pytest.approx(3 * 4 / 5)
    entry = root_entry((observed, control, mass, counts))
    assert entry["shuffled_letters"]["pooled_ratio"] == pytest.approx(2 / 2.4) and entry["offsets"] == [2, 3]
    # Same-distance rate: at offset 2, 2 of the 3 rows have a consonant key; at offset 3 (n(5) -> t, d(6) -> r) 2 of 2.
    # The head's mass is all at offset 2: control 3 x 2/3 = 2 = observed.
    assert counts.tolist() == [[3.0, 2.0], [2.0, 2.0]]
    assert entry["same_offset_rate"]["pooled_ratio"] == pytest.approx(1.0)  # a content-blind head: exactly 1


def test_the_control_is_the_mean_over_every_shuffle_of_the_words_other_letters():
    letters = "abcde"  # the query keeps "t" at the word's end; the others take every order
    texts = [" " + "".join(p) + "t " for p in itertools.permutations(letters)]
    T, q = len(texts[0]), len(texts[0]) - 2
    A = torch.zeros(len(texts), 1, 1, T, T)
    A[:, 0, 0, torch.arange(T), 0] = 1.0  # every other row on position 0, outside any word
    A[:, 0, 0, q, 0] = 0.0
    A[:, 0, 0, q, q - 2] = 0.7  # the query's row: content blind, 0.7 two back and 0.3 three back
    A[:, 0, 0, q, q - 3] = 0.3
    observed, control, _, _ = root_sums(A, batch(texts))
    # word "?????t": 6 letters, 4 consonants (b c d t) -> chance (4 - 1) / (6 - 1) per row
    assert control.item() == pytest.approx(len(texts) * 3 / 5)
    assert observed.item() / len(texts) == pytest.approx(3 / 5)  # the mean over shuffles equals the control


def test_heads_that_seek_or_avoid_consonants_two_or_three_back():
    text = " ktb hakatab wayiktob mlk hamelek "
    b = batch(text)
    T = len(text)

    def nearest(wanted):
        def key(i):
            for o in (2, 3):
                j = i - o
                if j >= 0 and text[j] != " " and " " not in text[j:i] and (text[j] in "aeiou") != wanted:
                    return j
            return 0
        return key
    entries = [root_entry(root_sums(one_hot_attention(T, nearest(w)), b)) for w in (True, False)]
    for control in ("shuffled_letters", "same_offset_rate"):
        seek, avoid = (e[control]["pooled_ratio"] for e in entries)
        assert seek > 1.1 and avoid < 0.5, control  # (most letters here are consonants: the most a head can reach is 1.16)


def test_words_cut_by_the_window_start_and_other_words_do_not_count():
    text = "ktb a"  # the first word may have begun before the window: unknown letters
    A = one_hot_attention(len(text), lambda i: max(i - 2, 0))
    sums = root_sums(A, batch(text))
    assert sums[0].item() == sums[1].item() == 0.0 and not sums[3].any()
    entry = root_entry(sums)
    assert all(entry[c]["pooled_ratio"] != entry[c]["pooled_ratio"] for c in ("shuffled_letters", "same_offset_rate"))  # NaN
