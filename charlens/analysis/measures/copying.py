"""Who does the in-context copying: which heads' ablation removes the model's advantage on the second copy
of a repeated random letter sequence.

On a random sequence written twice, the first copy can only be predicted from letter frequencies; the
second copy can be predicted by finding each letter's earlier occurrence and copying what followed it.
The copy drop = loss on the first copy - loss on the second copy (nats per character) is the in-context
copying the model does, whatever mechanism does it. Ablating a head (through blocks.L.attn.hook_z,
analysis.measures.ablation) and measuring the drop again gives the share of it that the head carries:
(drop - ablated drop) / drop; 1 = the head does all of it, 0 = none, negative = the model copies better
without it. A difference, not the second-copy loss alone, so that a head whose ablation merely hurts every
prediction (the first copy's too) is not counted as copying.

Positions, as in the repeated-sequence test (analysis.runs.induction): a window of 2 x half letters,
predictions p of letters p + 1; first copy: letters 1 .. half - 1; second copy: letters half + 1 .. 2 half - 1
(letter half follows the first copy's last letter, which no earlier letter predicts).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from charlens.analysis.measures.ablation import AblationMode, Head, ablated
from charlens.model.transformer import TransformerLM


@dataclass(frozen=True)
class CopyLosses:
    """Per-sequence mean losses on each copy, (N,) each."""

    first: np.ndarray
    second: np.ndarray

    @property
    def drop(self) -> float:
        """Mean first-copy loss minus mean second-copy loss (nats per character)."""
        return float(self.first.mean() - self.second.mean())

    def drop_bound(self, z: float) -> float:
        """The drop's lower bound: mean - z x its standard error over the sequences."""
        d = self.first - self.second
        return float(d.mean() - z * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")


@torch.no_grad()
def copy_losses(model: TransformerLM, ids: torch.Tensor, batch_size: int = 32) -> CopyLosses:
    """Each window's mean first- and second-copy loss under `model`, ids (N, 2 * half): sequences written twice."""
    half = ids.shape[1] // 2
    first, second = [], []
    for chunk in ids.split(batch_size):
        logits, _ = model(chunk[:, :-1])
        loss = F.cross_entropy(logits.transpose(1, 2).float(), chunk[:, 1:], reduction="none").double()
        first.append(loss[:, : half - 1].mean(1))
        second.append(loss[:, half:].mean(1))
    return CopyLosses(torch.cat(first).numpy(), torch.cat(second).numpy())


def drop_shares(model: TransformerLM, ids: torch.Tensor, groups: Sequence[Sequence[Head]], mode: AblationMode = "mean",
                means: Optional[torch.Tensor] = None, batch_size: int = 32) -> tuple[CopyLosses, list[CopyLosses]]:
    """The clean copy losses and, for each group of heads ablated together, the ablated ones (`share` turns
    them into the share of the drop the group carries)."""
    clean = copy_losses(model, ids, batch_size)
    out = []
    for group in groups:
        with ablated(model, group, mode, means):
            out.append(copy_losses(model, ids, batch_size))
    return clean, out


def share(clean: CopyLosses, ablated_losses: CopyLosses) -> float:
    """The share of the clean copy drop that the ablation removed (NaN when the model does not copy)."""
    return (clean.drop - ablated_losses.drop) / clean.drop if clean.drop > 0 else float("nan")


def share_interval(clean: CopyLosses, ablated_losses: CopyLosses, z: float, n_boot: int,
                   rng: np.random.Generator) -> tuple[float, float]:
    """share -+ z x its bootstrap standard error over the sequences (clean and ablated resampled together)."""
    n = len(clean.first)
    rows = rng.integers(n, size=(n_boot, n))
    mean = lambda a: a[rows].mean(1)
    drop = mean(clean.first) - mean(clean.second)
    boot = np.where(drop > 0, (drop - mean(ablated_losses.first) + mean(ablated_losses.second)) / np.where(drop > 0, drop, 1),
                    np.nan)
    se = float(np.nanstd(boot, ddof=1)) if np.isfinite(boot).sum() > 1 else float("nan")
    s = share(clean, ablated_losses)
    return s - z * se, s + z * se
