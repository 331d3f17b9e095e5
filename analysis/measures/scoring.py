"""The one scoring routine: attention x target masks -> per-window scores and baselines.

A head's score on a window is its mean attention mass on a detector's targets over the query rows
that have at least one target (rows without any are not counted, so a perfect head scores 1).
Every baseline is the same kind of sum with a soft mask in place of the targets, so all of them
come out of one batched matrix product over layers x heads:
- uniform: what uniform causal attention puts on the targets, |targets_i| / (i + 1);
- control (the detector's `control`, see analysis.measures.detectors): uniform, or the positional
  control E_d (analysis.measures.positional), or the prefix control: the head's own mass on
  one-character prefix matches times the share of those that are k-character matches in the row,
  m1[i, j] * |T_k,i| / |T_1,i| (what a one-character matcher with the head's mass would score).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from analysis.measures.detectors import REGISTRY, CharBatch, prefix_match, target_masks
from analysis.measures.importance import attention_entropy
from analysis.measures.positional import ClassFrequencies, positional_names
from data.charclasses import CLASS_NAMES


@dataclass
class WindowScores:
    score: torch.Tensor  # (B, D, L, H) mean mass on targets over rows with targets (NaN when no row has targets)
    baseline: torch.Tensor  # (B, D) the same for uniform causal attention
    control: torch.Tensor  # (B, D, L, H) the same for the detector's control (the baseline of its selectivity)


def uniform_attention(T: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform causal attention (T, T): row i spreads 1 / (i + 1) over keys 0..i."""
    return torch.tril(torch.ones(T, T, dtype=dtype)) / torch.arange(1, T + 1, dtype=dtype)[:, None]


def masked_mass(attention: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """sum over i, j of attention * mask: attention (B, L, H, T, T), masks (B, D, T, T) of any real
    values -> (B, D, L, H). One bmm for all detectors, layers and heads."""
    B, L, H, T, _ = attention.shape
    m = masks.to(attention.dtype).reshape(B, -1, T * T)
    return torch.bmm(m, attention.reshape(B, L * H, T * T).transpose(1, 2)).view(B, -1, L, H)


def prefix_control(one: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft masks (B, K, T, T) of the prefix control: one (B, T, T) one-character matches, targets
    (B, K, T, T) subsets of them (longer prefixes, or the copy in a repeated sequence); on a row with
    targets, each one-character match weighs |targets_i| / |one_i|."""
    n_one = one.sum(-1, keepdim=True).to(torch.float32)  # (B, T, 1)
    share = targets.sum(-1, keepdim=True).to(torch.float32) / n_one.clamp_min(1)[:, None]  # (B, K, T, 1)
    return one[:, None].to(torch.float32) * share


def score_masks(attention: torch.Tensor, masks: torch.Tensor, controls: Optional[torch.Tensor] = None,
                controlled: Sequence[int] = ()) -> WindowScores:
    """Score target masks (B, D, T, T) with their uniform baseline. `controls` (B, K, T, T): soft masks
    of the control baselines of the detectors `controlled` (K indices into D); the other detectors'
    control is their uniform baseline."""
    B, L, H, T, _ = attention.shape
    D = masks.shape[1]
    m = masks.to(attention.dtype)
    mass = masked_mass(attention, m if controls is None else torch.cat([m, controls.to(attention.dtype)], dim=1))
    n_rows = (m.amax(-1) > 0).sum(-1).to(attention.dtype)  # (B, D)
    uniform_row = 1.0 / torch.arange(1, T + 1, dtype=attention.dtype, device=attention.device)
    baseline = (m.sum(-1) * uniform_row).sum(-1) / n_rows  # NaN where no row has targets
    score = mass[:, :D] / n_rows[:, :, None, None]
    control = baseline[:, :, None, None].expand(B, D, L, H).clone()
    if controls is not None:
        control[:, list(controlled)] = mass[:, D:] / n_rows[:, list(controlled), None, None]
    return WindowScores(score, baseline, control)


def score_windows(attention: torch.Tensor, b: CharBatch, names: list[str],
                  frequencies: Optional[ClassFrequencies] = None) -> WindowScores:
    """Score the named detectors on a batch, each with its control baseline (positional detectors need
    the split's `frequencies`, see analysis.measures.positional.StratumCounts)."""
    masks = target_masks(b, names, attention.dtype)
    pos = positional_names(names)
    pre = [n for n in names if REGISTRY[n].control == "prefix"]
    controls = []
    if pos:
        if frequencies is None:
            raise ValueError(f"{', '.join(pos)} need the split's stratum frequencies (positional control)")
        controls.append(frequencies.expected_masks(b, pos, masks[:, [names.index(n) for n in pos]]))
    if pre:
        controls.append(prefix_control(prefix_match(b, 1), masks[:, [names.index(n) for n in pre]]))
    if not controls:
        return score_masks(attention, masks)
    return score_masks(attention, masks, torch.cat(controls, dim=1), [names.index(n) for n in pos + pre])


def class_attention_sums(attention: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention mass from query class to key class, summed over rows i >= 1 of the batch:
    (L, H, C, C) for the heads, (C, C) for uniform attention, and the query-row count per class (C,)."""
    B, L, H, T, _ = attention.shape
    onehot = torch.nn.functional.one_hot(classes.long(), len(CLASS_NAMES)).to(attention.dtype)  # (B, T, C)
    onehot_q = onehot.clone()
    onehot_q[:, 0] = 0
    to_key_class = torch.bmm(attention.reshape(B, L * H * T, T), onehot).view(B, L, H, T, -1)  # (B, L, H, T, C)
    heads = torch.einsum("bic,blhid->lhcd", onehot_q, to_key_class)
    base = torch.einsum("bic,ij,bjd->cd", onehot_q, uniform_attention(T, attention.dtype), onehot)
    return heads, base, onehot_q.sum(dim=(0, 1))


def head_metric_sums(attention: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-head sums over windows of the row-mean (rows i >= 1) of: attention distance i - j,
    entropy / log(i + 1) (1 = uniform, 0 = one key), and mass on position 0. Each (L, H)."""
    B, L, H, T, _ = attention.shape
    i = torch.arange(T, dtype=attention.dtype)
    distance = i - attention @ i  # rows sum to 1: sum_j A[i, j] (i - j) = i - sum_j A[i, j] j
    entropy = attention_entropy(attention)[..., 1:]  # (B, L, H, T-1); row 0 has a single key
    return {
        "mean_distance": distance[..., 1:].mean(-1).sum(0),
        "normalized_entropy": entropy.mean(-1).sum(0),
        "first_position": attention[..., 1:, 0].mean(-1).sum(0),
    }
