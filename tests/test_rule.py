import numpy as np

from analysis.measures.rule import INDUCTION, gate_induction, head_label, primary

NAMES = ["self", "previous_char", "local", "prefix_match_1", "prefix_match_2", "prefix_match_3"]
UNIFORM = np.array([0.035, 0.035, 0.1, 0.085, 0.025, 0.019])


def test_primary_prefers_the_more_specific_of_equally_selective_detectors():
    # a pure previous-character head: as selective for the local window (0..2), which holds three times the keys
    g = np.array([1.0, 0.99, 0.2])
    uniform = np.array([0.035, 0.1, 0.5])
    assert primary(g, np.array([True, True, False]), uniform) == 0
    # a local head: clearly more selective for the window than for any one offset
    assert primary(np.array([0.4, 0.95, 0.2]), np.array([True, True, False]), uniform) == 1
    # nothing validated: the best candidate, same rule (the tolerance is relative: 0.1 is not a tie with 0.12)
    assert primary(np.array([0.1, 0.12, np.nan]), np.zeros(3, bool), uniform) == 1
    assert primary(np.array([0.5, 0.52, np.nan]), np.zeros(3, bool), uniform) == 0


def test_induction_needs_the_repeated_sequence_test_and_outranks_the_fallback():
    valid = np.zeros((6, 1, 2), bool)
    valid[[0, 2, 5], 0, :] = True  # both heads: self, local and three-character prefix matches hold on text
    gated = gate_induction(valid, NAMES, np.array([[True, False]]))
    assert gated[5, 0].tolist() == [True, False] and gated[0, 0].tolist() == [True, True]
    g = np.array([0.89, 0.1, 0.88, 0.2, 0.19, 0.48])  # the planted four-character head: self otherwise
    assert head_label(NAMES, g, gated[:, 0, 0], UNIFORM) == (INDUCTION, 5)
    assert head_label(NAMES, g, gated[:, 0, 1], UNIFORM) == ("self", 0)  # no repeated-sequence evidence: not induction


def test_a_one_character_copier_is_not_induction_and_nothing_is_none():
    ok = np.array([False, False, False, True, False, False])
    assert head_label(NAMES, np.array([0.18, 0.0, 0.2, 1.0, -0.07, -0.09]), ok, UNIFORM) == ("prefix_match_1", 3)
    assert head_label(NAMES, np.array([0.01, 0.02, 0.0, 0.0, 0.0, 0.0]), np.zeros(6, bool), UNIFORM) == ("none", 1)
