import numpy as np
import pytest

from charlens.analysis.measures.stats import (ScoreAccumulator, bootstrap_selectivity_se, per_test_alpha, selectivity, split_stats,
                                     validated)

CUT = 0.3


def test_selectivity_puts_different_baselines_on_one_scale():
    # the two heads: 0.38 against 0.035 (self) and 0.65 against 0.47 (a class)
    assert selectivity(np.array(0.38), np.array(0.035)) == pytest.approx(0.3575, abs=1e-4)
    assert selectivity(np.array(0.65), np.array(0.47)) == pytest.approx(0.3396, abs=1e-4)
    assert selectivity(np.array(1.0), np.array(0.9)) == 1.0 and selectivity(np.array(0.5), np.array(0.5)) == 0.0
    assert np.isnan(selectivity(np.array(1.0), np.array(1.0)))  # no room for any gain
    # the cut is a floor on raw mass too: a head at 0.02 against 0.0001 is not selective
    assert selectivity(np.array(0.02), np.array(0.0001)) < 0.021


def test_bootstrap_se_matches_the_standard_error_with_a_fixed_control():
    rng = np.random.default_rng(0)
    s = rng.normal(0.6, 0.2, size=(400, 1))
    c = np.full_like(s, 0.2)
    se = bootstrap_selectivity_se(s, c, 2000, np.random.default_rng(1))[0]
    assert se == pytest.approx(s.std() / np.sqrt(len(s)) / 0.8, rel=0.1)  # g = (S - 0.2) / 0.8


def test_bootstrap_ignores_windows_without_targets():
    s = np.array([[0.5], [np.nan], [0.5], [0.5]])
    c = np.where(np.isnan(s), np.nan, 0.1)
    assert bootstrap_selectivity_se(s, c, 200, np.random.default_rng(0))[0] == pytest.approx(0.0, abs=1e-7)
    # 1 resample in 16 draws neither scored window: it has no mean, and counting it as 0 would invent spread
    s = np.array([[0.5], [np.nan], [0.5], [np.nan]])
    c = np.where(np.isnan(s), np.nan, 0.1)
    assert bootstrap_selectivity_se(s, c, 400, np.random.default_rng(0))[0] == pytest.approx(0.0, abs=1e-7)


def make(scores, control):
    """Per-window arrays for one detector and one head, with a constant control and uniform baseline."""
    scores = np.asarray(scores, dtype=float)[:, None, None, None]
    return scores, np.full_like(scores, control), np.full((len(scores), 1), control)


def test_clear_effect_passes_and_chance_does_not():
    rng = np.random.default_rng(0)
    alpha = per_test_alpha(0.05, 100)
    strong = split_stats(*make(0.8 + 0.05 * rng.standard_normal(50), 0.1), CUT, alpha, 500, rng)
    chance = split_stats(*make(0.45 + 0.05 * rng.standard_normal(50), 0.45), CUT, alpha, 500, rng)
    assert strong.passes(CUT, 10)[0, 0, 0] and strong.bound[0, 0, 0, 0] > 0.6
    assert not chance.passes(CUT, 10)[0, 0, 0] and abs(chance.selectivity[0, 0, 0]) < 0.05
    assert strong.confidence[0, 0, 0] == 1.0 and strong.n_windows[0, 0, 0] == 50
    assert strong.margin(CUT)[0, 0, 0] == pytest.approx(strong.bound[0, 0, 0, 0] - CUT)


def test_tiny_but_significant_gain_is_not_a_behaviour():
    """An untrained head beats uniform by 1e-4 with almost no spread: significant, meaningless."""
    rng = np.random.default_rng(0)
    s = split_stats(*make(0.4501 + 1e-6 * rng.standard_normal(200), 0.45), CUT, 1e-4, 500, rng)
    assert s.bound[0, 0, 0, 0] > 0 and not s.passes(CUT, 10)[0, 0, 0]


def test_a_head_at_the_cut_is_borderline_not_validated():
    rng = np.random.default_rng(0)
    at_cut = 0.1 + 0.9 * CUT  # selectivity exactly at the cut against a control of 0.1
    s = split_stats(*make(at_cut + 0.1 * rng.standard_normal(200), 0.1), CUT, 1e-3, 500, rng)
    assert s.borderline(CUT)[0, 0, 0] and not s.passes(CUT, 10)[0, 0, 0]
    assert abs(s.margin_se(CUT)[0, 0, 0]) < 3  # a few standard errors from the cut, either way


def test_validation_needs_both_splits_and_enough_windows():
    rng = np.random.default_rng(0)
    good = split_stats(*make(0.9 + 0.01 * rng.standard_normal(30), 0.1), CUT, 0.001, 300, rng)
    bad = split_stats(*make(0.2 + 0.01 * rng.standard_normal(30), 0.1), CUT, 0.001, 300, rng)
    few = split_stats(*make([0.9, 0.91, 0.92], 0.1), CUT, 0.001, 300, rng)
    assert validated(good, good, CUT, 10)[0, 0, 0]
    assert not validated(good, bad, CUT, 10)[0, 0, 0]
    assert not validated(good, few, CUT, 10)[0, 0, 0]


def test_labels_near_the_cut_are_stable_across_window_seeds():
    """Repeated analyses draw other windows from the same text: a head whose selectivity is at the cut
    (which the old point-estimate rule validated half the time) gets the same label in >= 95% of them,
    and so does one clearly above it."""
    pool_rng = np.random.default_rng(0)
    N = 20_000
    control = pool_rng.uniform(0.02, 0.2, N)  # windows differ in their baseline and in their score
    noise = pool_rng.normal(0, 0.15, N)
    for true_g, expect in ((CUT, False), (CUT + 0.12, True)):
        score = control + true_g * (1 - control) + noise
        labels = []
        for seed in range(40):
            rng = np.random.default_rng(seed)
            idx = rng.choice(N, 256, replace=False)
            split = [a[idx][:, None, None, None] for a in (score, control)] + [control[idx][:, None]]
            s = split_stats(*split, CUT, per_test_alpha(0.05, 16 * 26), 300, rng)
            labels.append(bool(s.passes(CUT, 10)[0, 0, 0]))
        assert sum(lab == expect for lab in labels) >= 0.95 * len(labels), (true_g, sum(labels))


def test_accumulator_concatenates_batches_across_its_blocks():
    acc = ScoreAccumulator()
    acc.CHUNK = 4  # blocks of 4 windows: batches of 3 cross them
    for k in range(3):
        acc.add(np.full((3, 2, 1, 1), k), np.full((3, 2, 1, 1), 10 + k), np.full((3, 2), 20 + k))
    s, c, u = acc.arrays()
    assert s.shape == (9, 2, 1, 1) and c.shape == (9, 2, 1, 1) and u.shape == (9, 2) and s.dtype == np.float32
    assert s[:, 0, 0, 0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and u[:, 1].tolist() == [20] * 3 + [21] * 3 + [22] * 3
