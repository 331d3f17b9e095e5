"""From statistics to verdicts: per-detector results and the head table.

A head's primary behaviour is, among the detectors validated for it, the one with the largest
discovery lift; a head with none is "none" and shows its best candidate instead. Confidence and
sample count are measured on the held-out text: the fraction (and number) of held-out windows on
which the head's own score clears the threshold.
"""
from __future__ import annotations

import numpy as np

from analysis.measures.stats import SplitStats
from analysis.runs.results import DetectorResult, HeadVerdict, SplitScores


def _split_scores(s: SplitStats, d: int) -> SplitScores:
    return SplitScores(score=s.score[d].tolist(), baseline=s.baseline[d].tolist(), lift=s.lift[d].tolist(),
                       lift_ci=s.lift_ci[d].tolist(), confidence=s.confidence[d].tolist(),
                       n_windows=s.n_windows[d].tolist(), n_scored=int(s.n_scored[d]))


def detector_results(names: list[str], descriptions: dict[str, str], disc: SplitStats, held: SplitStats,
                     valid: np.ndarray) -> dict[str, DetectorResult]:
    return {name: DetectorResult(descriptions[name], _split_scores(disc, d), _split_scores(held, d), valid[d].tolist())
            for d, name in enumerate(names)}


def head_table(names: list[str], disc: SplitStats, held: SplitStats, valid: np.ndarray) -> tuple[HeadVerdict, ...]:
    """One verdict per head, layer-major."""
    D, L, H = valid.shape
    heads = []
    for l in range(L):
        for h in range(H):
            ok = valid[:, l, h]
            lift = disc.lift[:, l, h]
            best = int(np.argmax(np.where(ok, lift, -np.inf))) if ok.any() else int(np.argmax(lift))
            order = np.argsort(-lift)
            heads.append(HeadVerdict(
                layer=l, head=h, behaviour=names[best] if ok.any() else "none", candidate=names[best],
                confidence=float(held.confidence[best, l, h]), n_windows=int(held.n_windows[best, l, h]),
                score=float(disc.score[best, l, h]), heldout_score=float(held.score[best, l, h]),
                lift=float(lift[best]), heldout_lift=float(held.lift[best, l, h]), validated=bool(ok.any()),
                behaviours=tuple(names[d] for d in order if ok[d])))
    return tuple(heads)
