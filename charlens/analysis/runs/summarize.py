"""From statistics to verdicts: per-detector results and the head table.

A head's label comes from analysis.measures.rule (induction first, then the most selective validated
detector, near-ties to the more specific one); a head with nothing validated is "none" and shows its
best candidate. Every number of a verdict is the candidate's: selectivity on both splits, how far the
interval's lower end is from the cut (and in standard errors), raw mass and control baseline.
Confidence and sample count are measured on the held-out text: the share (and number) of held-out
windows whose own selectivity reaches the cut.
"""
from __future__ import annotations

import numpy as np

from charlens.analysis.measures.detectors import REGISTRY
from charlens.analysis.measures.rule import head_label
from charlens.analysis.measures.stats import SplitStats
from charlens.analysis.runs.results import DetectorResult, HeadVerdict, SplitScores

MIN_COMPONENT = 0.05  # decomposition terms below this weight are not named in the head table
MAX_COMPONENTS = 3


def split_scores(s: SplitStats, d: int) -> SplitScores:
    return SplitScores(score=s.score[d].tolist(), baseline=s.baseline[d].tolist(), control=s.control[d].tolist(),
                       selectivity=s.selectivity[d].tolist(), selectivity_ci=s.bound[d].tolist(),
                       confidence=s.confidence[d].tolist(), n_windows=s.n_windows[d].tolist(), n_scored=int(s.n_scored[d]))


def detector_results(names: list[str], disc: SplitStats, held: SplitStats, valid: np.ndarray) -> dict[str, DetectorResult]:
    return {name: DetectorResult(REGISTRY[name].description, REGISTRY[name].control, split_scores(disc, d),
                                 split_scores(held, d), valid[d].tolist())
            for d, name in enumerate(names)}


def components(basis: list[str], weights: np.ndarray) -> str:
    """'0.62 previous_char + 0.30 recent_space': the largest terms of one head's mixture."""
    order = [k for k in np.argsort(-weights) if weights[k] >= MIN_COMPONENT][:MAX_COMPONENTS]
    return " + ".join(f"{weights[k]:.2f} {basis[k]}" for k in order) or "—"


def head_table(names: list[str], disc: SplitStats, held: SplitStats, valid: np.ndarray, cut: float,
               decomposition: dict) -> tuple[HeadVerdict, ...]:
    """One verdict per head, layer-major."""
    D, L, H = valid.shape
    margin = np.fmin(disc.margin(cut), held.margin(cut))
    margin_se = np.fmin(disc.margin_se(cut), held.margin_se(cut))
    borderline = disc.borderline(cut) | held.borderline(cut)
    weights, basis = np.asarray(decomposition["weights"]), decomposition["basis"]
    heads = []
    for l in range(L):
        for h in range(H):
            ok, g = valid[:, l, h], disc.selectivity[:, l, h]
            label, best = head_label(names, g, ok, disc.baseline[:, l, h])
            order = np.argsort(-np.nan_to_num(g, nan=-np.inf))
            heads.append(HeadVerdict(
                layer=l, head=h, behaviour=label, candidate=names[best], validated=bool(ok.any()),
                borderline=bool(borderline[best, l, h]), selectivity=float(g[best]),
                heldout_selectivity=float(held.selectivity[best, l, h]), margin=float(margin[best, l, h]),
                margin_se=float(margin_se[best, l, h]), score=float(disc.score[best, l, h]),
                heldout_score=float(held.score[best, l, h]), baseline=float(disc.control[best, l, h]),
                confidence=float(held.confidence[best, l, h]), n_windows=int(held.n_windows[best, l, h]),
                components=components(basis, weights[l, h]), unexplained=float(decomposition["unexplained"][l][h]),
                behaviours=tuple(names[d] for d in order if ok[d])))
    return tuple(heads)
