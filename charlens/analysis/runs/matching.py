"""Which heads recur across training seeds of one language. Head indices mean nothing across seeds
(the heads of two runs are a permutation of each other at best), so heads are matched by what they do:
the Jensen-Shannon distance between their attention rows on the same held-out windows, paired up by an
optimal assignment (Hungarian algorithm) between the first seed and each other seed."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from charlens.analysis.measures.similarity import js_distance_matrix

RECUR_DISTANCE = 0.3  # a matched head counts as the same head when its rows are this close (JS distance, 0..1)


def cross_distances(att_a: np.ndarray, att_b: np.ndarray) -> np.ndarray:
    """(L*H of a, L*H of b) mean JS distance between every head of model a and every head of model b,
    from their attention (N, L, H, T, T) on the same N windows."""
    N, T = att_a.shape[0], att_a.shape[-1]
    if att_b.shape[0] != N or att_b.shape[-1] != T:
        raise ValueError(f"the models saw different windows: {att_a.shape} vs {att_b.shape}")
    k = att_a.shape[1] * att_a.shape[2]
    both = np.concatenate([np.asarray(att_a, np.float32).reshape(N, 1, k, T, T),
                           np.asarray(att_b, np.float32).reshape(N, 1, -1, T, T)], axis=2)
    return js_distance_matrix(both)[:k, k:]


@dataclass(frozen=True)
class RecurringHead:
    """One head of the reference seed and its best match in every other seed."""

    head: str  # "L1H2" in the reference seed
    behaviour: str  # its primary behaviour there
    matches: tuple[tuple[str, str, float], ...]  # (model, head, distance) per other seed
    recurs: bool  # matched within RECUR_DISTANCE in every other seed

    def to_dict(self) -> dict:
        return {"head": self.head, "behaviour": self.behaviour, "recurs": self.recurs,
                "matches": [{"model": m, "head": h, "distance": round(d, 4)} for m, h, d in self.matches]}


def match_heads(names: Sequence[str], attention: Sequence[np.ndarray], behaviours: Sequence[Sequence[str]],
                threshold: float = RECUR_DISTANCE) -> list[RecurringHead]:
    """Match every head of the first model to one head of each other model (optimal assignment on JS
    distance). `attention[m]` is model m's attention (N, L, H, T, T) on the shared windows, `behaviours[m]`
    its heads' primary behaviours, layer-major."""
    L, H = attention[0].shape[1:3]
    labels = [f"L{l}H{h}" for l in range(L) for h in range(H)]
    matched: list[list[tuple[str, str, float]]] = [[] for _ in labels]
    for name, att, beh in zip(names[1:], attention[1:], behaviours[1:]):
        D = cross_distances(attention[0], att)
        rows, cols = linear_sum_assignment(D)
        for r, c in zip(rows, cols):
            matched[r].append((name, f"{labels[c]} ({beh[c]})", float(D[r, c])))
    return [RecurringHead(label, behaviours[0][k], tuple(m), all(d <= threshold for _, _, d in m))
            for k, (label, m) in enumerate(zip(labels, matched))]
