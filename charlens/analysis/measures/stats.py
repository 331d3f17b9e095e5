"""Statistics over windows: selectivity, its bootstrap bound, and the discovery-then-held-out rule.

Selectivity of a head for a detector is the share of the possible gain over the detector's control
baseline that the head achieves, from the means over windows of its score S and control C:

    g = (S - C) / (1 - C)        (1: all mass on the targets; 0: no better than the control)

It is on one scale for every detector, whatever its baseline: 0.38 against 0.035 is 0.36, 0.65
against 0.47 is 0.34. It is a ratio of means (not a mean of per-window ratios, which a window with
few target rows or a high baseline would dominate), and g >= cut implies S >= cut: the cut is
also a floor on raw mass, so a head at 0.02 against 0.0001 is not selective (g = 0.02).

Windows are the unit of resampling (rows of one window are not independent). Every head x detector
pair is a test, so the per-test error rate is alpha / n_tests (Bonferroni). Resolving such a small
tail from percentile bootstrap quantiles would need ~10^5 resamples, so the interval is g +- z *
bootstrap SE (z for the per-test alpha; ratios of means of a few hundred windows are close to
normal), and a behaviour needs the interval's lower end above the cut, on discovery AND held-out
text: a head whose selectivity sits at the cut is 'borderline', never validated by a lucky draw.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

BOOT_CHUNK = 100  # resamples per matrix product: keeps memory flat in the number of windows
MIN_HEADROOM = 1e-6  # 1 - control below this: no gain is possible, selectivity undefined


class ScoreAccumulator:
    """Collects per-window scores and controls (N, D, L, H) and uniform baselines (N, D) of one text split.
    Only these small arrays grow with the windows. They are copied into blocks of CHUNK windows, so a long
    run allocates a few blocks rather than three small arrays per batch between the batches' large temporaries
    (which would pin the heap and make peak memory grow with the windows)."""

    CHUNK = 512

    def __init__(self) -> None:
        self._blocks: list[list[np.ndarray]] = []
        self._n = 0  # windows stored

    def add(self, score: np.ndarray, control: np.ndarray, uniform: np.ndarray) -> None:
        done = 0
        while done < len(score):
            at = self._n % self.CHUNK
            if at == 0:
                self._blocks.append([np.empty((self.CHUNK, *a.shape[1:]), dtype=np.float32) for a in (score, control, uniform)])
            k = min(self.CHUNK - at, len(score) - done)
            for block, a in zip(self._blocks[-1], (score, control, uniform)):
                block[at:at + k] = a[done:done + k]
            done, self._n = done + k, self._n + k

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(np.concatenate([b[f] for b in self._blocks])[:self._n] for f in range(3))  # type: ignore[return-value]


def selectivity(score: np.ndarray, control: np.ndarray) -> np.ndarray:
    """(score - control) / (1 - control), NaN where the control leaves no room (in the inputs' precision)."""
    room = 1 - control
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.asarray((score - control) / room)
    return np.where(room > MIN_HEADROOM, g, g.dtype.type(np.nan))


def bootstrap_selectivity_se(scores: np.ndarray, controls: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap standard error of the selectivity of the window means, scores and controls (N, ...),
    NaN for windows without targets (left out). Resamples are multinomial window counts, in chunks."""
    N = scores.shape[0]
    s, c = scores.reshape(N, -1), controls.reshape(N, -1)
    valid = ~np.isnan(s)
    s_f = np.where(valid, s, 0.0).astype(np.float32)  # float32 halves the memory that grows with N
    c_f = np.where(valid, c, 0.0).astype(np.float32)
    valid = valid.astype(np.float32)
    sums, sumsq, n_defined = (np.zeros(s.shape[1]) for _ in range(3))
    done = 0
    while done < n_boot:
        k = min(BOOT_CHUNK, n_boot - done)
        counts = rng.multinomial(N, np.full(N, 1.0 / N), size=k).astype(np.float32)  # (k, N)
        with np.errstate(invalid="ignore", divide="ignore"):
            n = counts @ valid
            g = selectivity((counts @ s_f) / n, (counts @ c_f) / n).astype(np.float64)
        defined = ~np.isnan(g)  # a resample without any window with targets has no mean: left out, not counted as 0
        g[~defined] = 0.0
        sums += g.sum(0)
        sumsq += (g ** 2).sum(0)
        n_defined += defined.sum(0)
        done += k
    n_defined = np.maximum(n_defined, 1)
    var = np.maximum(sumsq / n_defined - (sums / n_defined) ** 2, 0.0)
    return np.sqrt(var).reshape(scores.shape[1:])


def per_test_alpha(alpha: float, n_tests: int) -> float:
    return alpha / max(n_tests, 1)


@dataclass
class SplitStats:
    """Per detector x layer x head statistics of one text split, arrays (D, L, H) unless noted."""

    score: np.ndarray  # mean mass on the targets
    baseline: np.ndarray  # the same for uniform causal attention
    control: np.ndarray  # the same for the detector's control (the baseline of the selectivity)
    selectivity: np.ndarray  # (score - control) / (1 - control), of the means
    se: np.ndarray  # bootstrap standard error of the selectivity
    bound: np.ndarray  # (D, L, H, 2): selectivity -+ z * se, z for the per-test alpha (NaN: fewer than 2 windows)
    confidence: np.ndarray  # share of scored windows whose own selectivity reaches the cut
    n_windows: np.ndarray  # windows whose own selectivity reaches the cut (supporting windows)
    n_scored: np.ndarray  # (D,) windows with at least one target row

    def passes(self, cut: float, min_windows: int) -> np.ndarray:
        """The lower bound of the selectivity is above the cut, on enough windows."""
        with np.errstate(invalid="ignore"):
            return (self.bound[..., 0] > cut) & (self.n_scored[:, None, None] >= min_windows)

    def borderline(self, cut: float) -> np.ndarray:
        """The interval contains the cut: the data cannot tell which side the head is on."""
        with np.errstate(invalid="ignore"):
            return (self.bound[..., 0] <= cut) & (self.bound[..., 1] > cut)

    def margin(self, cut: float) -> np.ndarray:
        """How far the lower bound is above (+) or below (-) the cut."""
        return self.bound[..., 0] - cut

    def margin_se(self, cut: float) -> np.ndarray:
        """Distance of the selectivity from the cut in standard errors (the bound needs more than z)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.selectivity - cut) / self.se


def split_stats(scores: np.ndarray, controls: np.ndarray, uniforms: np.ndarray, cut: float, alpha_test: float,
                n_boot: int, rng: np.random.Generator) -> SplitStats:
    """scores, controls (N, D, L, H) and uniform baselines (N, D), NaN for windows where a detector has no target."""
    n_scored = (~np.isnan(uniforms)).sum(0)
    with warnings.catch_warnings():  # a detector without targets in any window has all-NaN columns
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_score, mean_control = np.nanmean(scores, axis=0), np.nanmean(controls, axis=0)
        mean_base = np.nanmean(uniforms, axis=0)
    g = selectivity(mean_score, mean_control)
    se = bootstrap_selectivity_se(scores, controls, n_boot, rng)
    z = float(norm.ppf(1.0 - alpha_test))
    bound = np.stack([g - z * se, g + z * se], axis=-1)
    bound[n_scored < 2] = np.nan  # no spread to estimate from one window
    with np.errstate(invalid="ignore"):
        support = (np.nan_to_num(selectivity(scores, controls), nan=-np.inf) >= cut).sum(0)
    confidence = support / np.maximum(n_scored, 1)[:, None, None]
    mean_base = np.broadcast_to(np.nan_to_num(mean_base)[:, None, None], mean_score.shape).copy()
    return SplitStats(np.nan_to_num(mean_score), mean_base, np.nan_to_num(mean_control), g, se, bound, confidence,
                      support, n_scored)


def validated(discovery: SplitStats, heldout: SplitStats, cut: float, min_windows: int) -> np.ndarray:
    """(D, L, H) booleans: the behaviour holds on discovery text AND on held-out text."""
    return discovery.passes(cut, min_windows) & heldout.passes(cut, min_windows)

