"""Statistics over windows: running per-window scores, bootstrap intervals for the lift over the
uniform baseline, and the discovery-then-held-out validation rule.

Windows are the unit of resampling (rows of one window are not independent). Every head x detector
pair is a test, so the per-test error rate is alpha / (L * H * D) (Bonferroni). Resolving such a
small tail from percentile bootstrap quantiles would need ~10^5 resamples, so the interval is the
normal bootstrap interval: mean lift +- z(1 - alpha_test) * bootstrap standard error (means of a
few hundred windows are close to normal); its lower end is a one-sided (1 - alpha_test) bound.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

BOOT_CHUNK = 100  # resamples per matrix product: keeps memory flat in the number of windows


class ScoreAccumulator:
    """Collects per-window scores (N, D, L, H) and baselines (N, D) of one text split.
    Only these small arrays grow with the windows (D*L*H floats per window)."""

    def __init__(self) -> None:
        self._scores: list[np.ndarray] = []
        self._baselines: list[np.ndarray] = []

    def add(self, score: np.ndarray, baseline: np.ndarray) -> None:
        self._scores.append(np.asarray(score, dtype=np.float32))
        self._baselines.append(np.asarray(baseline, dtype=np.float32))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self._scores), np.concatenate(self._baselines)


@dataclass
class SplitStats:
    """Per detector x layer x head statistics of one text split, arrays (D, L, H) unless noted."""

    score: np.ndarray
    baseline: np.ndarray
    lift: np.ndarray
    lift_ci: np.ndarray  # (D, L, H, 2)
    confidence: np.ndarray  # fraction of scored windows whose own score clears the threshold
    n_windows: np.ndarray  # windows whose own score clears the threshold (supporting windows)
    n_scored: np.ndarray  # (D,) windows with at least one target row

    def passes(self, threshold: float, min_lift: float, min_windows: int) -> np.ndarray:
        """Score clears the threshold, the lift is at least `min_lift` and its lower bound is above zero,
        on enough windows. (Significance alone is not enough: a near-uniform untrained head beats
        uniform by 1e-4 with so little spread that hundreds of windows make it "significant".)"""
        return ((self.score >= threshold) & (self.lift >= min_lift) & (self.lift_ci[..., 0] > 0)
                & (self.n_scored[:, None, None] >= min_windows))


def per_test_alpha(alpha: float, n_tests: int) -> float:
    return alpha / max(n_tests, 1)


def bootstrap_mean_se(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap standard error of the mean over windows (axis 0) of `values` (N, ...), ignoring NaN
    (windows without targets). Resamples are drawn as multinomial window counts, in chunks."""
    N = values.shape[0]
    flat = values.reshape(N, -1)
    valid = ~np.isnan(flat)
    filled = np.where(valid, flat, 0.0).astype(np.float32)  # float32 halves the memory that grows with N
    valid = valid.astype(np.float32)
    sums = np.zeros(flat.shape[1])
    sumsq = np.zeros(flat.shape[1])
    n_means = np.zeros(flat.shape[1])  # resamples that drew at least one window with targets
    done = 0
    while done < n_boot:
        k = min(BOOT_CHUNK, n_boot - done)
        counts = rng.multinomial(N, np.full(N, 1.0 / N), size=k).astype(np.float32)  # (k, N)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = ((counts @ filled) / (counts @ valid)).astype(np.float64)
        defined = ~np.isnan(means)  # a resample without any window with targets has no mean: left out, not counted as 0
        means[~defined] = 0.0
        sums += means.sum(0)
        sumsq += (means ** 2).sum(0)
        n_means += defined.sum(0)
        done += k
    n_means = np.maximum(n_means, 1)
    var = np.maximum(sumsq / n_means - (sums / n_means) ** 2, 0.0)
    return np.sqrt(var).reshape(values.shape[1:])


def split_stats(scores: np.ndarray, baselines: np.ndarray, threshold: float, alpha_test: float, n_boot: int,
                rng: np.random.Generator) -> SplitStats:
    """scores (N, D, L, H) and baselines (N, D), NaN for windows where a detector has no target."""
    lifts = scores - baselines[:, :, None, None]
    scored = ~np.isnan(baselines)  # (N, D)
    n_scored = scored.sum(0)
    with warnings.catch_warnings():  # a detector without targets in any window has all-NaN columns
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_score = np.nanmean(scores, axis=0)
        mean_lift = np.nanmean(lifts, axis=0)
        mean_base = np.nanmean(baselines, axis=0)
    mean_score, mean_lift = np.nan_to_num(mean_score), np.nan_to_num(mean_lift)
    mean_base = np.broadcast_to(np.nan_to_num(mean_base)[:, None, None], mean_score.shape).copy()
    se = bootstrap_mean_se(lifts, n_boot, rng)
    z = float(norm.ppf(1.0 - alpha_test))
    ci = np.stack([mean_lift - z * se, mean_lift + z * se], axis=-1)
    ci[n_scored < 2] = np.nan  # no spread to estimate from one window
    support = (np.nan_to_num(scores, nan=-1.0) >= threshold).sum(0)
    confidence = support / np.maximum(n_scored, 1)[:, None, None]
    return SplitStats(mean_score, mean_base, mean_lift, ci, confidence, support, n_scored)


def validated(discovery: SplitStats, heldout: SplitStats, threshold: float, min_lift: float, min_windows: int) -> np.ndarray:
    """(D, L, H) booleans: the behaviour holds on discovery text AND on held-out text."""
    return discovery.passes(threshold, min_lift, min_windows) & heldout.passes(threshold, min_lift, min_windows)
