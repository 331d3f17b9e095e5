"""The weight-level circuit scores of one model (analysis.measures.circuits) as a typed result: every score
with its random-head baseline and its excess over it, the strongest composition pairs, and the per-head
columns of the head table.

Excess = (score - random mean) / (1 - random mean): the share of the possible rise above random heads that
the head achieves, the same form as the attention detectors' selectivity. A score "stands out" when it is
above the random heads' BASELINE_QUANTILE quantile (one model's weights have no sampling spread; the
random heads are the control). Weights alone say what a head could do; the labels stay the attention rule's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from charlens.analysis.measures.circuits import (BASELINE_QUANTILE, CircuitScores, baselines, circuit_scores,
                                                  head_weights)
from charlens.model.transformer import TransformerLM

DIGITS = 4
TOP_PAIRS = 5  # strongest pairs listed per composition kind
HEAD_SCORES = ("ov_copying", "ov_diagonal", "qk_previous")
PAIR_SCORES = ("q_composition", "k_composition", "v_composition", "qk_match")


def _r(x: float | np.ndarray) -> Optional[float]:
    return round(float(x), DIGITS) if np.isfinite(x) else None


@dataclass(frozen=True)
class CircuitResult:
    scores: CircuitScores
    baseline: dict[str, tuple[float, float]]  # score -> (random mean, random BASELINE_QUANTILE quantile)
    n_chars: int  # characters the vocabulary maps are over

    def pair(self, name: str) -> np.ndarray:
        """(L, H, L, H) of a pair score: q_composition, k_composition, v_composition or qk_match."""
        return self.scores.qk_match if name == "qk_match" else self.scores.composition[name.split("_")[0]]

    def head(self, name: str) -> np.ndarray:
        return getattr(self.scores, name)

    def excess(self, name: str, value: np.ndarray | float) -> np.ndarray:
        mean = self.baseline[name][0]
        return (np.asarray(value, dtype=np.float64) - mean) / (1 - mean)

    def stands_out(self, name: str, value: np.ndarray | float) -> np.ndarray:
        return np.asarray(value) > self.baseline[name][1]

    def strongest(self, name: str, n: int = TOP_PAIRS) -> list[dict]:
        """The `n` highest pairs of a pair score, as {from, to, score, excess, stands_out}."""
        a = self.pair(name)
        flat = np.where(np.isfinite(a), a, -np.inf).reshape(-1)
        order = [k for k in np.argsort(-flat, kind="stable")[:n] if np.isfinite(flat[k])]
        return [{"from": [int(i[0]), int(i[1])], "to": [int(i[2]), int(i[3])], "score": _r(a[i]),
                 "excess": _r(self.excess(name, a[i])), "stands_out": bool(self.stands_out(name, a[i]))}
                for i in (np.unravel_index(k, a.shape) for k in order)]

    def source(self, name: str, layer: int, head: int) -> tuple[Optional[tuple[int, int]], float]:
        """The earlier head whose pair score into (layer, head) is highest, and that score (None, NaN in layer 0)."""
        col = self.pair(name)[:, :, layer, head]
        if not np.isfinite(col).any():
            return None, float("nan")
        l, h = np.unravel_index(np.nanargmax(col), col.shape)
        return (int(l), int(h)), float(col[l, h])

    def head_columns(self, layer: int, head: int) -> dict:
        """The head table's circuit columns of one head."""
        out: dict = {name: _r(self.head(name)[layer, head]) for name in HEAD_SCORES}
        for name in ("k_composition", "qk_match"):
            src, value = self.source(name, layer, head)
            out[f"{name}_from"] = f"L{src[0]}H{src[1]}" if src else ""
            out[name] = _r(value)
        return out

    def to_dict(self) -> dict:
        heads = {name: np.round(self.head(name), DIGITS).tolist() for name in HEAD_SCORES}
        pairs = {name: [[[[_r(v) for v in row] for row in plane] for plane in block] for block in self.pair(name)]
                 for name in PAIR_SCORES}
        return {"n_chars": self.n_chars, "heads": heads, "pairs": pairs,
                "baseline": {k: {"mean": _r(m), "quantile": _r(q)} for k, (m, q) in self.baseline.items()},
                "baseline_quantile": BASELINE_QUANTILE,
                "strongest": {name: self.strongest(name) for name in PAIR_SCORES},
                "note": "weights only: LayerNorm scales folded, reading and writing weights centred; pairs are "
                        "[layer_from][head_from][layer_to][head_to], null unless layer_from < layer_to; excess = "
                        "(score - random mean) / (1 - random mean) over Gaussian heads with the model's embeddings"}


def circuit_result(model: TransformerLM, seed: int = 0) -> CircuitResult:
    """Every circuit score of `model` over its vocabulary (the unknown token left out), with baselines."""
    w = head_weights(model)
    return CircuitResult(circuit_scores(w), baselines(w, seed), int(w.W_E.shape[0]))


