"""Who does the in-context copying: which heads' ablation removes the model's advantage on the second copy
of a repeated random letter sequence.

On a random sequence written twice, the first copy can only be predicted from letter frequencies; the
second copy can be predicted by finding each letter's earlier occurrence and copying what followed it.
But the second copy also sits at later positions, and a model far from home on random letters (a Bible
model puts 6-7 nats on each) lowers its loss along any letter sequence: compared with the first copy, most
of a Bible model's drop is position. So the control holds everything but the repetition fixed: the same
first half followed by the same letters in another order (a random permutation of the first half), at the
second copy's positions. The copy drop = loss on the reordered second half - loss on the second copy (nats
per character, paired by sequence) is what knowing the order gives: copying what followed each letter, by
whatever mechanism; that a letter recurs at all is in both halves and is not counted. Fresh letters would
hold position fixed too, but change which letters are predicted, and a text model's loss differs by
several nats from letter to letter: the per-sequence spread of the drop is larger with them (English
models: 0.5 nats against 0.35). The position drop = first copy - reordered second half is reported beside it.

Ablating a head (through blocks.L.attn.hook_z, analysis.measures.ablation) and measuring the drop again gives
the share of it that the head carries: (drop - ablated drop) / drop; 1 = the head does all of it, 0 = none,
negative = the model copies better without it. A difference, not the second-copy loss alone, so that a head
whose ablation merely hurts every prediction (the reordered letters' too) is not counted as copying.

Positions, as in the repeated-sequence test (analysis.runs.induction): a window of 2 x half letters,
predictions p of letters p + 1; first copy: letters 1 .. half - 1; second copy (and the control's reordered half):
letters half + 1 .. 2 half - 1 (letter half follows the first copy's last letter, which no earlier letter predicts).
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
    """Per-sequence mean losses, (N,) each: on the first copy, on the second copy, and on the control's second
    half (the same letters in another order, at the second copy's positions)."""

    first: np.ndarray
    second: np.ndarray
    reordered: np.ndarray

    @property
    def drop(self) -> float:
        """The copy drop: mean loss on the reordered second half minus on the second copy (nats per character)."""
        return float(self.reordered.mean() - self.second.mean())

    @property
    def position_drop(self) -> float:
        """What the later positions alone give: mean first-copy loss minus reordered-second-half loss."""
        return float(self.first.mean() - self.reordered.mean())

    @property
    def drop_se(self) -> float:
        """The copy drop's standard error over the sequences (paired)."""
        d = self.reordered - self.second
        return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")

    def drop_bound(self, z: float) -> float:
        """The copy drop's lower bound: mean - z x its standard error."""
        return self.drop - z * self.drop_se


def reordered_control(ids: torch.Tensor, seed: int) -> torch.Tensor:
    """ids (N, 2 * half) written twice -> the same first halves followed by their own letters, each sequence in a
    random order of its own (seeded)."""
    half = ids.shape[1] // 2
    g = torch.Generator().manual_seed(seed)
    order = torch.argsort(torch.rand(len(ids), half, generator=g), dim=1)
    out = ids.clone()
    out[:, half:] = torch.gather(ids[:, :half], 1, order)[:, : ids.shape[1] - half]
    return out


@torch.no_grad()
def half_losses(model: TransformerLM, ids: torch.Tensor, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Each window's mean loss on its first half's letters 1 .. half - 1 and on its second half's letters
    half + 1 .. 2 half - 1, ids (N, 2 * half): two (N,) float64 tensors."""
    half = ids.shape[1] // 2
    first, second = [], []
    for chunk in ids.split(batch_size):
        logits, _ = model(chunk[:, :-1])
        loss = F.cross_entropy(logits.transpose(1, 2).float(), chunk[:, 1:], reduction="none").double()
        first.append(loss[:, : half - 1].mean(1))
        second.append(loss[:, half:].mean(1))
    return torch.cat(first), torch.cat(second)


def copy_losses(model: TransformerLM, ids: torch.Tensor, control: torch.Tensor, batch_size: int = 32) -> CopyLosses:
    """The copy losses under `model`: ids (N, 2 * half) sequences written twice, control the same first halves
    followed by their letters reordered (reordered_control)."""
    first, second = half_losses(model, ids, batch_size)
    _, reordered = half_losses(model, control, batch_size)
    return CopyLosses(first.numpy(), second.numpy(), reordered.numpy())


def drop_shares(model: TransformerLM, ids: torch.Tensor, control: torch.Tensor, groups: Sequence[Sequence[Head]],
                mode: AblationMode = "mean", means: Optional[torch.Tensor] = None,
                batch_size: int = 32) -> tuple[CopyLosses, list[CopyLosses]]:
    """The clean copy losses and, for each group of heads ablated together, the ablated ones (`share` turns
    them into the share of the drop the group carries)."""
    clean = copy_losses(model, ids, control, batch_size)
    out = []
    for group in groups:
        with ablated(model, group, mode, means):
            out.append(copy_losses(model, ids, control, batch_size))
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
    drop = mean(clean.reordered) - mean(clean.second)
    boot = np.where(drop > 0, (drop - mean(ablated_losses.reordered) + mean(ablated_losses.second)) / np.where(drop > 0, drop, 1),
                    np.nan)
    se = float(np.nanstd(boot, ddof=1)) if np.isfinite(boot).sum() > 1 else float("nan")
    s = share(clean, ablated_losses)
    return s - z * se, s + z * se
