"""Statistics with training seeds as the unit: two small groups of per-seed values (say 4 English and
4 Hebrew models) and whether their difference replicates.

A claim about a language is a claim about the models one gets by training on it, so each seed is one
observation; windows and heads inside a model are not. With a handful of seeds the right test is the
exact permutation test over seed labels: every way of splitting the pooled values into groups of the
observed sizes is equally likely if the language made no difference. Its smallest attainable p-value
depends only on the group sizes (2 / C(n_a + n_b, n_a) two-sided), so a study can know in advance
whether it can reach --alpha at all (3 vs 3 cannot reach 0.05: 0.1; 4 vs 4 can: 0.029).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

MAX_EXACT_SPLITS = 200_000  # beyond this many relabelings the permutation test samples them (seeded)


def smallest_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided p-value an exact permutation test can give for groups of these sizes."""
    if n_a < 1 or n_b < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def seeds_needed(alpha: float, max_per_group: int = 50) -> int:
    """The fewest seeds per language (equal groups) whose smallest attainable p-value is <= alpha."""
    for n in range(1, max_per_group + 1):
        if smallest_p(n, n) <= alpha:
            return n
    return max_per_group + 1


def permutation_p(a: ArrayLike, b: ArrayLike, seed: int = 0) -> float:
    """Two-sided exact permutation test of the difference in means (seed labels shuffled); relabelings
    at least as extreme as the observed one count, the observed one included."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        return 1.0
    pooled = np.concatenate([a, b])
    n, k = len(pooled), len(a)
    observed = abs(a.mean() - b.mean())
    total = pooled.sum()
    if math.comb(n, k) <= MAX_EXACT_SPLITS:
        splits = np.array(list(itertools.combinations(range(n), k)))
    else:
        rng = np.random.default_rng(seed)
        splits = np.stack([rng.permutation(n)[:k] for _ in range(MAX_EXACT_SPLITS)])
    sum_a = pooled[splits].sum(axis=1)
    diffs = np.abs(sum_a / k - (total - sum_a) / (n - k))
    return float(np.mean(diffs >= observed - 1e-12 * max(1.0, abs(observed))))


def mean_interval(x: ArrayLike, level: float = 0.95) -> Optional[tuple[float, float]]:
    """Student-t interval of a mean over seeds (None with fewer than 2 seeds)."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return None
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def difference_interval(a: ArrayLike, b: ArrayLike, level: float = 0.95) -> Optional[tuple[float, float]]:
    """Welch interval of mean(a) - mean(b) (None unless both groups have 2 seeds or more)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(a.mean() - b.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff
    df = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if va else 0.0) + (vb ** 2 / (len(b) - 1) if vb else 0.0))
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return diff - half, diff + half


def separation(a: ArrayLike, b: ArrayLike) -> int:
    """+1 when every seed of `a` is above every seed of `b` (the difference has the same sign in every
    a-seed x b-seed pair), -1 when every one is below, 0 otherwise (ties included)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        return 0
    if a.min() > b.max():
        return 1
    if a.max() < b.min():
        return -1
    return 0


@dataclass(frozen=True)
class GroupDifference:
    """One quantity compared between two groups of seeds, and the verdict of the replication rule."""

    values_a: tuple[float, ...]
    values_b: tuple[float, ...]
    mean_a: float
    mean_b: float
    interval_a: Optional[tuple[float, float]]
    interval_b: Optional[tuple[float, float]]
    difference: float
    difference_interval: Optional[tuple[float, float]]
    sign: int  # separation(): +1 / -1 / 0
    p: float
    smallest_p: float
    min_effect: float
    verdict: str  # replicated | too_few_seeds | below_min_effect | not_replicated | single_seed

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def compare_groups(a: ArrayLike, b: ArrayLike, alpha: float, min_effect: float) -> GroupDifference:
    """The replication rule: a difference replicates when (1) it has the same sign in every a x b seed
    pair, (2) the exact permutation test over seed labels gives p <= alpha (possible only when the group
    sizes allow it), and (3) the difference of means is at least `min_effect`, the smallest difference
    of this quantity worth reporting. The verdict names the first condition that fails."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    sign, p, p_min = separation(a_arr, b_arr), permutation_p(a_arr, b_arr), smallest_p(len(a_arr), len(b_arr))
    diff = float(a_arr.mean() - b_arr.mean())
    if min(len(a_arr), len(b_arr)) < 2:
        verdict = "single_seed"  # one seed is one draw: nothing about its language can replicate
    elif sign == 0:
        verdict = "not_replicated"
    elif p_min > alpha:
        verdict = "too_few_seeds"
    elif p > alpha:
        verdict = "not_replicated"
    elif abs(diff) < min_effect:
        verdict = "below_min_effect"
    else:
        verdict = "replicated"
    return GroupDifference(tuple(map(float, a_arr)), tuple(map(float, b_arr)), float(a_arr.mean()), float(b_arr.mean()),
                           mean_interval(a_arr), mean_interval(b_arr), diff, difference_interval(a_arr, b_arr),
                           sign, p, p_min, min_effect, verdict)


def compare_defined(a: Sequence[Optional[float]], b: Sequence[Optional[float]], alpha: float,
                    min_effect: float) -> Optional[GroupDifference]:
    """`compare_groups` when the quantity is defined (not None) in every seed of both non-empty groups, else None."""
    if not len(a) or not len(b) or any(v is None for v in (*a, *b)):
        return None
    return compare_groups([float(v) for v in a], [float(v) for v in b], alpha, min_effect)  # type: ignore[arg-type]
