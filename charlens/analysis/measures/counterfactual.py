"""Counterfactual pairs: how each head's attention changes between two related texts.

The texts may differ in length; their characters are aligned with difflib's
SequenceMatcher (matching blocks, so the alignment keeps order), and a head is compared only
on query/key pairs whose both characters are aligned. A head that only looks at unchanged
context (a previous-character head) then shows no difference at all, while a head that
attends to a character the edit removed changes.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np
import torch

from charlens.model.hooks import run_with_cache
from charlens.analysis.measures.value_weighted import value_weighted_attention
from charlens.model.transformer import TransformerLM


def align_positions(text_a: str, text_b: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the characters the two texts share, in order: (pos_a, pos_b), equal length."""
    matcher = difflib.SequenceMatcher(a=text_a, b=text_b, autojunk=False)
    pairs = [(m.a + k, m.b + k) for m in matcher.get_matching_blocks() for k in range(m.size)]
    pos = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return pos[:, 0], pos[:, 1]


def rowwise_correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis; 1 where both are the same constant, NaN where
    only one is constant (no linear relation can be measured)."""
    xc, yc = x - x.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True)
    den = np.sqrt((xc**2).sum(-1) * (yc**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(-1) / den
    same = np.all(np.isclose(x, y), axis=-1)
    return np.where(den > 1e-20, r, np.where(same, 1.0, np.nan))


def aligned_entries(att: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """(..., T, T) -> (..., K): the causal (j <= i) entries among aligned positions, in a fixed order."""
    n = len(pos)
    rows, cols = np.tril_indices(n)
    return att[..., pos[rows], pos[cols]]


def compare_patterns(att_a: np.ndarray, att_b: np.ndarray, pos_a: np.ndarray, pos_b: np.ndarray,
                     vw_a: np.ndarray | None = None, vw_b: np.ndarray | None = None) -> dict:
    """Per head differences between two attention sets (L, H, Ta, Ta) and (L, H, Tb, Tb) on the
    aligned positions: max and mean absolute difference, correlation of the patterns and, when
    value-weighted norms are given, of those; plus a ranking of heads by mean difference."""
    if len(pos_a) < 2:
        raise ValueError("the two texts share fewer than 2 aligned characters; nothing to compare")
    ea, eb = aligned_entries(att_a, pos_a), aligned_entries(att_b, pos_b)  # (L, H, K)
    diff = np.abs(ea - eb)
    out = {
        "n_aligned": int(len(pos_a)),
        "max_abs_diff": diff.max(-1),
        "mean_abs_diff": diff.mean(-1),
        "correlation": rowwise_correlation(ea, eb),
    }
    if vw_a is not None and vw_b is not None:
        out["value_weighted_correlation"] = rowwise_correlation(aligned_entries(vw_a, pos_a), aligned_entries(vw_b, pos_b))
    L, H = diff.shape[:2]
    order = np.argsort(-out["mean_abs_diff"], axis=None, kind="stable")
    out["ranking"] = [
        {"layer": int(l), "head": int(h), "mean_abs_diff": float(out["mean_abs_diff"][l, h]),
         "max_abs_diff": float(out["max_abs_diff"][l, h]), "correlation": float(out["correlation"][l, h])}
        for l, h in (divmod(int(k), H) for k in order)
    ]
    return out


@dataclass
class Counterfactual:
    text_a: str
    text_b: str
    attention_a: np.ndarray  # (L, H, Ta, Ta)
    attention_b: np.ndarray  # (L, H, Tb, Tb)
    pos_a: np.ndarray
    pos_b: np.ndarray
    metrics: dict

    def difference(self, layer: int, head: int) -> np.ndarray:
        """A minus B on the aligned positions (n_aligned, n_aligned), rows/cols in text A's order."""
        ix_a, ix_b = np.ix_(self.pos_a, self.pos_a), np.ix_(self.pos_b, self.pos_b)
        return self.attention_a[layer, head][ix_a] - self.attention_b[layer, head][ix_b]

    def summary(self, top: int = 10) -> dict:
        """Plain-JSON metrics for summary.json."""
        m = self.metrics
        out = {"text_a": self.text_a, "text_b": self.text_b, "n_aligned": m["n_aligned"], "ranking": m["ranking"][:top]}
        for key in ("max_abs_diff", "mean_abs_diff", "correlation", "value_weighted_correlation"):
            if key in m:
                values = np.round(np.asarray(m[key], dtype=float), 6).astype(object)
                values[np.isnan(values.astype(float))] = None  # JSON has no NaN
                out[key] = values.tolist()
        return out


def run_counterfactual(model: TransformerLM, ids_a: np.ndarray, ids_b: np.ndarray, text_a: str, text_b: str) -> Counterfactual:
    """Run the model on both texts (token ids, one window each) and compare every head."""
    block = model.config.block_size
    for name, ids in (("A", ids_a), ("B", ids_b)):
        if not 2 <= len(ids) <= block:
            raise ValueError(f"text {name} has {len(ids)} characters; it needs 2 to {block} (the model's block size)")
    runs = []
    for ids in (ids_a, ids_b):
        cache = run_with_cache(model, torch.as_tensor(np.asarray(ids, dtype=np.int64)).unsqueeze(0))
        runs.append((cache.stack("pattern")[0].float().numpy(), value_weighted_attention(model, cache)[0].float().numpy()))
    (att_a, vw_a), (att_b, vw_b) = runs
    pos_a, pos_b = align_positions(text_a, text_b)
    return Counterfactual(text_a, text_b, att_a, att_b, pos_a, pos_b, compare_patterns(att_a, att_b, pos_a, pos_b, vw_a, vw_b))
