"""The repeated-random-sequence test of induction (Olsson et al. 2022) as part of validation.

A random sequence repeated twice can only be predicted in its second copy by finding the current
character's earlier occurrence and copying what followed it; the prefix-matching score is the
attention from each second-copy position i to the copy target i - half + 1. On its own that score
does not separate induction from copying after any single matching character (a one-character
copier scores high whenever the character happens not to recur in the sequence), so, as for the
text detectors prefix_match_k (k >= 2), its baseline is the prefix control: a one-character
matcher with the head's own mass on one-character matches. The selectivity is then what the head
gains by matching more than one character.
"""
from __future__ import annotations

import torch

from charlens.analysis.measures.detectors import prefix_match, CharBatch
from charlens.analysis.measures.scoring import WindowScores, prefix_control, score_masks


def copy_targets(T: int, half: int) -> torch.Tensor:
    """(T, T) bool: in windows made of a sequence of length `half` repeated, each second-copy position
    i >= half targets the position after the same character in the first copy, j = i - half + 1."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    return (i >= half) & (j == i - half + 1)


def score_repeated(attention: torch.Tensor, ids: torch.Tensor, half: int) -> WindowScores:
    """Prefix-matching score of every head on repeated random sequences, ids (B, T), attention
    (B, L, H, T, T); control: the prefix control (a one-character matcher with the head's mass)."""
    B, T = ids.shape
    targets = copy_targets(T, half).to(ids.device).expand(B, 1, T, T)
    one = prefix_match(CharBatch(ids, torch.zeros_like(ids)), 1)
    return score_masks(attention, targets, [(prefix_control(one, targets), [0])])
