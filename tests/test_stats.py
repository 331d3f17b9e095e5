import numpy as np
import pytest

from analysis.measures.stats import ScoreAccumulator, bootstrap_mean_se, per_test_alpha, split_stats, validated


def test_bootstrap_se_matches_the_standard_error_of_the_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 0.2, size=(400, 1))
    se = bootstrap_mean_se(x, 2000, np.random.default_rng(1))[0]
    assert se == pytest.approx(x.std() / np.sqrt(len(x)), rel=0.1)


def test_bootstrap_ignores_windows_without_targets():
    x = np.array([[0.5], [np.nan], [0.5], [0.5]])
    assert bootstrap_mean_se(x, 200, np.random.default_rng(0))[0] == pytest.approx(0.0, abs=1e-12)
    # 1 resample in 16 draws neither scored window: it has no mean, and counting it as 0 would invent spread
    x = np.array([[0.5], [np.nan], [0.5], [np.nan]])
    assert bootstrap_mean_se(x, 400, np.random.default_rng(0))[0] == pytest.approx(0.0, abs=1e-12)


def make(scores, base):
    scores = np.asarray(scores, dtype=float)[:, None, None, None]
    return scores, np.full((len(scores), 1), base)


def test_clear_effect_passes_and_chance_does_not():
    rng = np.random.default_rng(0)
    alpha = per_test_alpha(0.05, 100)
    strong = split_stats(*make(0.8 + 0.05 * rng.standard_normal(50), 0.1), 0.4, alpha, 500, rng)
    chance = split_stats(*make(0.45 + 0.05 * rng.standard_normal(50), 0.45), 0.4, alpha, 500, rng)
    assert strong.passes(0.4, 0.1, 10)[0, 0, 0] and strong.lift_ci[0, 0, 0, 0] > 0.6
    assert not chance.passes(0.4, 0.1, 10)[0, 0, 0]
    assert chance.lift_ci[0, 0, 0, 0] < 0 < chance.lift_ci[0, 0, 0, 1]
    assert strong.confidence[0, 0, 0] == 1.0 and strong.n_windows[0, 0, 0] == 50


def test_tiny_but_significant_lift_is_not_a_behaviour():
    """An untrained head beats uniform by 1e-4 with almost no spread: significant, meaningless."""
    rng = np.random.default_rng(0)
    s = split_stats(*make(0.4501 + 1e-6 * rng.standard_normal(200), 0.45), 0.4, 1e-4, 500, rng)
    assert s.lift_ci[0, 0, 0, 0] > 0 and not s.passes(0.4, 0.1, 10)[0, 0, 0]


def test_validation_needs_both_splits_and_enough_windows():
    rng = np.random.default_rng(0)
    good = split_stats(*make(0.9 + 0.01 * rng.standard_normal(30), 0.1), 0.4, 0.001, 300, rng)
    bad = split_stats(*make(0.2 + 0.01 * rng.standard_normal(30), 0.1), 0.4, 0.001, 300, rng)
    few = split_stats(*make([0.9, 0.91, 0.92], 0.1), 0.4, 0.001, 300, rng)
    assert validated(good, good, 0.4, 0.1, 10)[0, 0, 0]
    assert not validated(good, bad, 0.4, 0.1, 10)[0, 0, 0]
    assert not validated(good, few, 0.4, 0.1, 10)[0, 0, 0]


def test_accumulator_concatenates_batches():
    acc = ScoreAccumulator()
    acc.add(np.zeros((2, 3, 1, 1)), np.zeros((2, 3)))
    acc.add(np.ones((1, 3, 1, 1)), np.ones((1, 3)))
    s, b = acc.arrays()
    assert s.shape == (3, 3, 1, 1) and b[2, 0] == 1
