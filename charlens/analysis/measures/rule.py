"""From validated detectors to a head's label.

Induction needs two independent pieces of evidence: a prefix-match detector of length k >= 2 holds on
text (beyond a one-character matcher, its prefix control) AND the head's prefix-matching score on
repeated random sequences holds (beyond the same control, on its own discovery and held-out
repetition sets). A head with both is labelled `induction` whatever else it does when there is
nothing to copy (a planted three-character induction head attends to itself otherwise, and is far
more 'selective' for self than for its rarer matches; the mechanism is the finding). Otherwise the
primary behaviour is the most selective validated detector, where selectivities within
SPECIFICITY_TOL (relative) of the best count as equal and the more specific detector (the smaller target set, measured by
its uniform baseline) wins: a pure previous-character head is just as selective for the local
window 0..2, which holds three times the keys.
"""
from __future__ import annotations

import numpy as np

from charlens.analysis.measures.detectors import REGISTRY

INDUCTION = "induction"
SPECIFICITY_TOL = 0.1  # relative: 0.99 vs 1.0 tie, 0.02 vs 0.01 do not


def induction_detectors(names: list[str]) -> list[int]:
    """Indices of the prefix-match detectors of length >= 2 (those with the prefix control) among `names`."""
    return [d for d, n in enumerate(names) if REGISTRY[n].control == "prefix"]


def gate_induction(valid: np.ndarray, names: list[str], repeated_valid: np.ndarray) -> np.ndarray:
    """valid (D, L, H) with the prefix-match detectors of length >= 2 kept only where the
    repeated-sequence test (L, H) also holds."""
    out = valid.copy()
    for d in induction_detectors(names):
        out[d] &= repeated_valid
    return out


def primary(selectivity: np.ndarray, ok: np.ndarray, specificity: np.ndarray) -> int:
    """Index of the primary detector among (D,): the highest selectivity among the validated ones (all,
    when none is), ties within SPECIFICITY_TOL of the best going to the smallest `specificity` (uniform baseline)."""
    g = np.where(np.isnan(selectivity), -np.inf, selectivity)
    pool = ok if ok.any() else np.ones_like(ok)
    best = np.max(np.where(pool, g, -np.inf))
    near = pool & (g >= best - SPECIFICITY_TOL * max(best, 0.0))
    return int(np.argmin(np.where(near, specificity, np.inf)))


def head_label(names: list[str], selectivity: np.ndarray, ok: np.ndarray, specificity: np.ndarray) -> tuple[str, int]:
    """(label, detector index) of one head: `induction` (with its best prefix-match detector) when one
    holds, else the primary detector's name; "none" with the best candidate when nothing holds."""
    induction = [d for d in induction_detectors(names) if ok[d]]
    if induction:
        only = np.zeros_like(ok)
        only[induction] = True
        # nested target sets the other way round: a head matching 3 characters also hits most 4-character matches,
        # and the shortest prefix that explains it as well is the finding
        return INDUCTION, primary(selectivity, only, -specificity)
    d = primary(selectivity, ok, specificity)
    return (names[d] if ok.any() else "none"), d
