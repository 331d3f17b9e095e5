import torch

from charlens.analysis.measures import detectors as det
from charlens.data.charclasses import LANGUAGE_DETECTORS
from detector_helpers import batch


def targets(name: str, text: str, lang: str = "en") -> set[tuple[int, int]]:
    m = det.REGISTRY[name].targets(batch(text, lang))[0]
    return {(int(i), int(j)) for i, j in m.nonzero()}


def rows(name: str, text: str, lang: str = "en") -> dict[int, list[int]]:
    """Query -> its target keys, for rows that have targets."""
    out: dict[int, list[int]] = {}
    for i, j in sorted(targets(name, text, lang)):
        out.setdefault(i, []).append(j)
    return out


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


def test_duplicate_and_prefix_matches():
    #        012345
    text = "abcabx"
    assert targets("duplicate", text) == {(3, 0), (4, 1)}
    # one character: text[j-1] == text[i], j < i: at i=3 ('a') -> j=1 ('b' after the first 'a'); at i=4 ('b') -> j=2
    assert targets("prefix_match_1", text) == {(3, 1), (4, 2)}
    #       01234567
    text = "abcabcab"
    assert rows("prefix_match_1", text) == {3: [1], 4: [2], 5: [3], 6: [1, 4], 7: [2, 5]}
    # two characters: at i=6 ('a' after 'c') only the 'a' after the earlier "ca" (j=4), not j=1 (after "a" alone)
    assert rows("prefix_match_2", text) == {4: [2], 5: [3], 6: [4], 7: [2, 5]}
    assert rows("prefix_match_3", text) == {5: [3], 6: [4], 7: [5]}
    assert det.REGISTRY["prefix_match_1"].control == "uniform"
    assert {det.REGISTRY[f"prefix_match_{k}"].control for k in (2, 3)} == {"prefix"}


def test_local_window():
    assert rows("local", "abcde") == {0: [0], 1: [0, 1], 2: [0, 1, 2], 3: [1, 2, 3], 4: [2, 3, 4]}


def test_word_and_line_structure():
    #       0123456789 123
    text = "xy ab, cd\nEf g"
    # "xy" began before the window (no known start): its rows have no word targets; separators have none either
    assert rows("word_start", text) == {3: [3], 4: [3], 7: [7], 8: [7], 10: [10], 11: [10], 13: [13]}
    assert rows("same_word", text) == {3: [3], 4: [3, 4], 7: [7], 8: [7, 8], 10: [10], 11: [10, 11], 13: [13]}
    # inside a word: the word before it; on a separator: the word just ended ("xy" is cut, so "ab" has no previous word)
    assert rows("previous_word", text) == {5: [3, 4], 6: [3, 4], 7: [3, 4], 8: [3, 4], 9: [7, 8], 10: [7, 8],
                                           11: [7, 8], 12: [10, 11], 13: [10, 11]}
    assert rows("line_start", text) == {10: [10], 11: [10], 12: [10], 13: [10]}
    assert rows("capital", text) == {10: [10], 11: [10], 12: [10], 13: [10]}


def test_hebrew_prefix_letters_and_final_forms():
    text = "ולך בם ש"  # vav-lamed-final kaf, bet-final mem, shin
    # the vav at position 0 may be inside a word cut by the window: not a known word start
    assert rows("prefix_letter", text, "he") == {4: [4], 5: [4], 6: [4], 7: [4, 7]}
    assert rows("final_form", text, "he") == {2: [2], 3: [2], 4: [2], 5: [2, 5], 6: [2, 5], 7: [2, 5]}
    assert targets("prefix_letter", "ולך בם", "en") == set()  # no features in the English table


def test_detectors_for_each_language():
    en, he = det.detectors_for("en"), det.detectors_for("he")
    assert "capital" in en and "capital" not in he
    assert {"prefix_letter", "final_form"} <= set(he) and not {"prefix_letter", "final_form"} & set(en)
    assert set(en) & set(he) == {n for n, d in det.REGISTRY.items() if not d.language_specific}
    for lang, names in LANGUAGE_DETECTORS.items():
        assert all(det.REGISTRY[n].language_specific for n in names), lang


def test_class_detectors():
    assert targets("punctuation", "a,b") == {(1, 1), (2, 1)}
    assert targets("vowel", "ba") == {(1, 1)}


def test_all_targets_are_causal():
    for text, lang in (("The cat, the hat; the bat.\nAnd then a cat again", "en"), ("ולך בם ש׃\nהמלך", "he")):
        b = batch(text, lang)
        T = b.ids.shape[1]
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        for name, d in det.REGISTRY.items():
            assert not (d.targets(b)[0] & future).any(), name
