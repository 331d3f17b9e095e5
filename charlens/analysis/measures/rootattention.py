"""Consonant -> consonant attention inside a word at distances 2-3, against a within-word shuffled-letter control.

A Hebrew word is mostly a root of three consonants with pattern letters (vowel letters, prefixes, suffixes)
between and around them, so root letters sit two or three characters apart: a head that links a word's root
letters attends from a consonant to the consonants 2-3 characters back in the same word. A head that looks
2-3 characters back inside words attends to consonants at the rate the words offer them anyway, so the
control holds everything but the letters' identities fixed: the word's letters shuffled among its positions,
the query's own letter kept. Under that shuffle the key at any other position of the word is a consonant
with probability (consonants in the word - 1) / (letters in the word - 1); the control's mass is the head's
attention on those keys times that probability (the exact expectation over shuffles, no sampling).
The ratio observed / control is 1 for a head blind to which letters are consonants, above 1 for a head that
seeks consonants at those distances. Words cut by the window's start are left out (their letters are unknown);
a word cut by its end counts the letters the window shows.
"""
from __future__ import annotations

import torch

from charlens.analysis.measures.detectors import CharBatch, word_structure

ROOT_OFFSETS = (2, 3)


def root_sums(attention: torch.Tensor, b: CharBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """attention (B, L, H, T, T) -> (observed, control), each (L, H): summed over the batch's consonant queries
    inside a word, the mass on consonant keys of the same word at ROOT_OFFSETS, and the control's mass."""
    in_word, _, wid = word_structure(b)
    consonant = b.in_class("consonant")
    B, L, H, T, _ = attention.shape
    counted = in_word & (wid > 0)
    letters = torch.zeros(B, T + 1, dtype=attention.dtype, device=attention.device)
    consonants = torch.zeros_like(letters)
    letters.scatter_add_(1, wid, counted.to(attention.dtype))
    consonants.scatter_add_(1, wid, (counted & consonant).to(attention.dtype))
    n, c = letters.gather(1, wid), consonants.gather(1, wid)  # (B, T): the query's word
    chance = torch.where(n > 1, (c - 1).clamp_min(0) / (n - 1).clamp_min(1), torch.zeros_like(n))
    observed = attention.new_zeros(L, H)
    control = attention.new_zeros(L, H)
    for o in ROOT_OFFSETS:
        if o >= T:
            continue
        q, k = slice(o, T), slice(0, T - o)
        rows = (consonant[:, q] & counted[:, q] & (wid[:, k] == wid[:, q]) & counted[:, k]).to(attention.dtype)  # (B, T-o)
        mass = torch.diagonal(attention, -o, dim1=-2, dim2=-1) * rows[:, None, None]  # (B, L, H, T-o)
        observed += (mass * consonant[:, k][:, None, None].to(attention.dtype)).sum((0, 3))
        control += (mass * chance[:, q][:, None, None]).sum((0, 3))
    return observed, control


def root_entry(observed: torch.Tensor, control: torch.Tensor) -> dict:
    """summary.json's `root_attention`: per head (L, H) and pooled over heads (mass-weighted); NaN without rows."""
    ratio = lambda o, c: float(o / c) if c > 0 else float("nan")
    per_head = torch.where(control > 0, observed / control.clamp_min(1e-12), torch.full_like(control, float("nan")))
    return {"offsets": list(ROOT_OFFSETS), "observed": observed.tolist(), "control": control.tolist(),
            "ratio": per_head.tolist(), "pooled_ratio": ratio(observed.sum(), control.sum()),
            "note": "held-out consonant -> same-word consonant attention at the offsets, over its within-word "
                    "shuffled-letter control (1 = blind to which letters are consonants)"}
