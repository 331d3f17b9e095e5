"""Consonant -> consonant attention inside a word at distances 2-3, against a within-word shuffled-letter control.

A Hebrew word is mostly a root of three consonants with pattern letters (vowel letters, prefixes, suffixes)
between and around them, so root letters sit two or three characters apart: a head that links a word's root
letters attends from a consonant to the consonants 2-3 characters back in the same word. A head that looks
2-3 characters back inside words attends to consonants at the rate the words offer them anyway, so the
control holds everything but the letters' identities fixed: the word's letters shuffled among its positions,
the query's own letter kept. Under that shuffle the key at any other position of the word is a consonant
with probability (consonants in the word - 1) / (letters in the word - 1); the control's mass is the head's
attention on those keys times that probability (the exact expectation over shuffles, no sampling).
The ratio observed / control is 1 for a head blind to which letters are consonants in a text whose letters
were in random order inside words, above 1 for a head that seeks consonants at those distances.

Letters are not in random order inside words: how often the letter two or three back is a consonant is a
property of the spelling (an untrained, nearly uniform model scores above 1 in English against the shuffle).
So a second control holds that fixed too: the same head's mass on those keys times the rate at which a
consonant query's same-word key at that distance is a consonant in the text (over the split); a head blind to
letters scores 1 against it whatever the spelling, and only a head that picks consonants scores above.
Words cut by the window's start are left out (their letters are unknown); a word cut by its end counts the
letters the window shows.
"""
from __future__ import annotations

import torch

from charlens.analysis.measures.detectors import CharBatch, word_structure

ROOT_OFFSETS = (2, 3)
RootSums = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def root_sums(attention: torch.Tensor, b: CharBatch) -> RootSums:
    """attention (B, L, H, T, T) -> sums over the batch's consonant queries inside a word, at ROOT_OFFSETS:
    observed (L, H), the mass on consonant keys of the same word; shuffled (L, H), the within-word shuffle's
    mass; mass (O, L, H), the mass on same-word keys at each offset; counts (2, O), at each offset the rows
    with a same-word key and those whose key is a consonant (the text's rate, for the same-offset control)."""
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
    observed, shuffled = attention.new_zeros(L, H), attention.new_zeros(L, H)
    mass = attention.new_zeros(len(ROOT_OFFSETS), L, H)
    counts = attention.new_zeros(2, len(ROOT_OFFSETS))
    for slot, o in enumerate(ROOT_OFFSETS):
        if o >= T:
            continue
        q, k = slice(o, T), slice(0, T - o)
        rows = (consonant[:, q] & counted[:, q] & (wid[:, k] == wid[:, q]) & counted[:, k]).to(attention.dtype)  # (B, T-o)
        key_consonant = consonant[:, k].to(attention.dtype)
        at = torch.diagonal(attention, -o, dim1=-2, dim2=-1) * rows[:, None, None]  # (B, L, H, T-o)
        observed += (at * key_consonant[:, None, None]).sum((0, 3))
        shuffled += (at * chance[:, q][:, None, None]).sum((0, 3))
        mass[slot] = at.sum((0, 3))
        counts[0, slot], counts[1, slot] = rows.sum(), (rows * key_consonant).sum()
    return observed, shuffled, mass, counts


def _ratio(observed: torch.Tensor, control: torch.Tensor) -> tuple[list, float]:
    """Per head (L, H) and pooled over heads (mass-weighted), NaN where the control has no mass."""
    per_head = torch.where(control > 0, observed / control.clamp_min(1e-12), torch.full_like(control, float("nan")))
    return per_head.tolist(), float(observed.sum() / control.sum()) if control.sum() > 0 else float("nan")


def root_entry(sums: RootSums) -> dict:
    """summary.json's `root_attention` from a split's summed `root_sums`: the ratio of the observed mass to each control."""
    observed, shuffled, mass, counts = sums
    rate = torch.where(counts[0] > 0, counts[1] / counts[0].clamp_min(1), torch.zeros_like(counts[0]))  # (O,)
    same_offset = (mass * rate[:, None, None]).sum(0)
    (shuffle_heads, shuffle_pooled), (offset_heads, offset_pooled) = _ratio(observed, shuffled), _ratio(observed, same_offset)
    return {"offsets": list(ROOT_OFFSETS), "observed": observed.tolist(),
            "shuffled_letters": {"control": shuffled.tolist(), "ratio": shuffle_heads, "pooled_ratio": shuffle_pooled},
            "same_offset_rate": {"rate": rate.tolist(), "control": same_offset.tolist(), "ratio": offset_heads,
                                 "pooled_ratio": offset_pooled},
            "note": "held-out consonant -> same-word consonant attention at the offsets, over two controls: the word's "
                    "letters shuffled, and the text's own rate of consonant keys at each offset (1 = blind to consonants)"}
