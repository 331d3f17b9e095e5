"""From statistics to verdicts: per-detector results and the head table.

A head's label comes from analysis.measures.rule (induction first, then a mixture of two or three
components, then the most selective validated detector, near-ties to the more specific one, a class refined
to its key characters when its enrichment is not spread); a head with nothing validated is "none" and shows
its best candidate. Every number of a verdict is the candidate's: selectivity on both splits, how far the
interval's lower end is from the cut (and in standard errors), raw mass and control baseline.
Confidence and sample count are measured on the held-out text: the share (and number) of held-out
windows whose own selectivity reaches the cut.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlens.analysis.measures.detectors import LOCAL_WINDOW, REGISTRY, offset_detector_names
from charlens.analysis.measures.keychars import KeyCharMass
from charlens.analysis.measures.rule import HeadEvidence, class_spread, head_label
from charlens.analysis.measures.stats import SplitStats
from charlens.analysis.runs.results import DetectorResult, HeadVerdict, SplitScores

MIN_COMPONENT = 0.05  # decomposition terms below this weight are not named in the head table
MAX_COMPONENTS = 3
MAX_KEY_CHARS = 3  # key characters listed per head,
MIN_KEY_EXCESS = 0.005  # those with at least this much mass beyond the positional control


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


@dataclass(frozen=True)
class KeyChars:
    """The key-character masses of both splits (analysis.measures.keychars), the vocabulary's characters (id order)
    and, per class detector the rule may refine, which characters are its members ((V,) bool)."""

    chars: list[str]
    discovery: KeyCharMass
    heldout: KeyCharMass
    members: dict[str, np.ndarray]

    def top(self, l: int, h: int) -> tuple[dict, ...]:
        """The characters whose keys get the most mass beyond the head's positional control (discovery text)."""
        m, c = self.discovery.mass[l, h], self.discovery.control[l, h]
        order = [k for k in np.argsort(-(m - c), kind="stable")[:MAX_KEY_CHARS] if m[k] - c[k] >= MIN_KEY_EXCESS]
        return tuple({"char": self.chars[k], "mass": round(float(m[k]), 4), "control": round(float(c[k]), 4)} for k in order)

    def keys(self, l: int, h: int) -> dict[str, tuple[str, ...]]:
        """Class detector -> the characters carrying the head's enrichment, for the classes whose enrichment is not
        spread over the members on discovery or on held-out text (analysis.measures.rule.class_spread)."""
        out = {}
        for name, members in self.members.items():
            spread, carriers = zip(*(class_spread(split.excess[l, h], members) for split in (self.discovery, self.heldout)))
            if not all(spread) and len(carriers[0]):
                out[name] = tuple(self.chars[k] for k in carriers[0])
        return out


def head_table(names: list[str], disc: SplitStats, held: SplitStats, valid: np.ndarray, part: np.ndarray, cut: float,
               decomposition: dict, key_chars: KeyChars) -> tuple[HeadVerdict, ...]:
    """One verdict per head, layer-major. `part` (D, L, H): holds as a mixture component (rule.PART_CUT)."""
    D, L, H = valid.shape
    margin = np.fmin(disc.margin(cut), held.margin(cut))
    margin_se = np.fmin(disc.margin_se(cut), held.margin_se(cut))
    borderline = disc.borderline(cut) | held.borderline(cut)
    weights, basis = np.asarray(decomposition["weights"]), decomposition["basis"]
    unexplained = np.asarray(decomposition["unexplained"], dtype=float)
    window = [names.index(n) if n in names else None for n in offset_detector_names()[:LOCAL_WINDOW + 1]]
    heads = []
    for l in range(L):
        for h in range(H):
            ok, g = valid[:, l, h], disc.selectivity[:, l, h]
            label = head_label(HeadEvidence(
                names, g, ok, part[:, l, h], disc.baseline[:, l, h],
                np.array([np.nan if d is None else disc.score[d, l, h] for d in window]), basis, weights[l, h],
                float(unexplained[l, h]), key_chars.keys(l, h)))
            best = label.candidate
            order = np.argsort(-np.nan_to_num(g, nan=-np.inf))
            heads.append(HeadVerdict(
                layer=l, head=h, behaviour=label.name, kind=label.kind, candidate=names[best],
                validated=label.kind != "none", borderline=bool(borderline[best, l, h]), selectivity=float(g[best]),
                heldout_selectivity=float(held.selectivity[best, l, h]), margin=float(margin[best, l, h]),
                margin_se=float(margin_se[best, l, h]), score=float(disc.score[best, l, h]),
                heldout_score=float(held.score[best, l, h]), baseline=float(disc.control[best, l, h]),
                confidence=float(held.confidence[best, l, h]), n_windows=int(held.n_windows[best, l, h]),
                components=components(basis, weights[l, h]), unexplained=float(unexplained[l, h]),
                key_chars=key_chars.top(l, h), behaviours=tuple(names[d] for d in order if ok[d])))
    return tuple(heads)
