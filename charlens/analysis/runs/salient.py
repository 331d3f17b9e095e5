"""The most salient single attention weights of every head: large weights outside the trivial
positions (not self, not position 0, not the first rows, where a weight is cheap)."""
from __future__ import annotations

import torch

from charlens.analysis.runs.extract import AttentionBatch

SALIENT_BATCHES = 4  # salient patterns are picked from the first few discovery batches
SALIENT_PER_HEAD = 2
MIN_SALIENT_ROW = 8  # rows with fewer keys give large weights too cheaply to be salient
MIN_SALIENT_WEIGHT = 0.25


class SalientPatterns:
    """Per head, the largest non-trivial attention weights seen (not self, not position 0, rows >= 8,
    weight >= 0.25)."""

    def __init__(self, L: int, H: int) -> None:
        self.best: dict[tuple[int, int], list[tuple[float, str, str, str]]] = {(l, h): [] for l in range(L) for h in range(H)}

    def add(self, batch: AttentionBatch) -> None:
        A = batch.attention
        B, L, H, T, _ = A.shape
        i = torch.arange(T)[:, None]
        j = torch.arange(T)[None, :]
        keep = (j < i) & (j > 0) & (i >= MIN_SALIENT_ROW)
        flat = (A * keep).permute(1, 2, 0, 3, 4).reshape(L, H, -1)
        w, idx = flat.topk(min(8, flat.shape[-1]), dim=-1)
        for l in range(L):
            for h in range(H):
                for weight, k in zip(w[l, h].tolist(), idx[l, h].tolist()):
                    if weight < MIN_SALIENT_WEIGHT:
                        break
                    b, qi, kj = k // (T * T), (k // T) % T, k % T
                    text = batch.texts[b]
                    ctx = text[max(0, kj - 12):kj] + "[" + text[kj] + "]" + text[kj + 1:qi] + "<" + text[qi] + ">"
                    self.best[(l, h)].append((weight, text[qi], text[kj], ctx))

    def patterns(self) -> list[dict]:
        out = []
        for (l, h), cands in self.best.items():
            seen: set[tuple[str, str]] = set()
            for weight, frm, to, ctx in sorted(cands, reverse=True):
                if (frm, to) in seen or len(seen) >= SALIENT_PER_HEAD:
                    continue
                seen.add((frm, to))
                out.append({"layer": l, "head": h, "from": frm, "to": to, "weight": round(weight, 4), "context": ctx})
        return sorted(out, key=lambda p: -p["weight"])
