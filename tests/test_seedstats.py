"""Seeds as the unit: the exact permutation test, its smallest attainable p, intervals, and the
replication rule's verdicts on hand-made groups."""
import math

import numpy as np
import pytest
from scipy import stats

from charlens.analysis.measures.seedstats import (compare_groups, difference_interval, mean_interval, permutation_p, separation,
                                         seeds_needed, smallest_p)


def test_smallest_p_depends_only_on_group_sizes():
    assert smallest_p(3, 3) == pytest.approx(0.1)  # 2 of 20 splits are as extreme
    assert smallest_p(4, 4) == pytest.approx(2 / 70)
    assert smallest_p(1, 1) == 1.0 and smallest_p(0, 3) == 1.0
    assert seeds_needed(0.05) == 4 and seeds_needed(0.01) == 5  # 2/252 = 0.0079


def test_permutation_p_known_answers():
    assert permutation_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)  # complete separation: the smallest p
    assert permutation_p([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx(2 / 70)
    assert permutation_p([1, 1, 1], [1, 1, 1]) == 1.0
    # [1, 2, 4] vs [3, 5, 6]: |diff| = |2 S - 21| / 3 for a first group summing to S, so the splits at least
    # as extreme have S <= 7 ({1,2,3}, {1,2,4}) or S >= 14 ({3,5,6}, {4,5,6}): 4 of 20
    assert permutation_p([1, 2, 4], [3, 5, 6]) == pytest.approx(4 / 20)


def test_intervals_match_student_and_welch():
    a, b = [1.0, 2.0, 4.0, 7.0], [3.0, 5.0, 9.0]
    lo, hi = mean_interval(a)
    ref = stats.t.interval(0.95, 3, loc=np.mean(a), scale=stats.sem(a))
    assert (lo, hi) == pytest.approx(ref)
    want = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert difference_interval(a, b) == pytest.approx((want.low, want.high))
    assert mean_interval([1.0]) is None and difference_interval([1.0], [2.0, 3.0]) is None


def test_separation_is_the_sign_in_every_pair():
    assert separation([5, 6], [1, 2, 4]) == 1 and separation([1], [2, 3]) == -1
    assert separation([1, 3], [2, 4]) == 0 and separation([2, 3], [1, 2]) == 0  # a tie is not a sign


@pytest.mark.parametrize("a, b, verdict", [
    ([3.0], [1.0, 1.0, 1.0], "single_seed"),
    ([3.0, 3.1, 3.2], [1.0, 1.1, 1.2], "too_few_seeds"),
    ([3.0, 3.1, 3.2, 3.3], [1.0, 1.1, 1.2, 1.3], "replicated"),
    ([1.05, 1.06, 1.07, 1.08], [1.0, 1.01, 1.02, 1.03], "below_min_effect"),
    ([3.0, 1.0, 3.2, 3.3], [1.1, 1.1, 1.2, 1.3], "not_replicated"),
])
def test_replication_verdicts(a, b, verdict):
    d = compare_groups(a, b, alpha=0.05, min_effect=0.5)
    assert d.verdict == verdict
    assert d.difference == pytest.approx(np.mean(a) - np.mean(b))
    assert d.smallest_p == pytest.approx(2 / math.comb(len(a) + len(b), len(a)))
