"""The positional control of key-content detectors (classes, letter sets, the query's character).

A head that attends to the first letter of each word puts a share of its mass on vowels because
word-initial letters are vowels at some rate, not because it selects vowels. The control is what a
class-blind head with the head's own structural profile would put on the class: every (query i,
key j) pair falls in one stratum, offset bucket x key role (line start, word start, word end,
other), and within a stratum the class-blind head picks keys as the text offers them. So the
baseline of a head on detector d is

    sum over its rows with targets, over keys j:  A[i, j] * f_d(class of query i, stratum of (i, j))

where f_d(c, s) is the share of pairs in stratum s whose key is a target of d, over the rows of
query class c that have targets, measured on the whole text split beforehand (`StratumCounts`).
As a matrix, E_d[i, j] = f_d(c_i, s(i, j)) is the expected target mask under the class-blind
null, and the baseline is scored exactly as the mask is (`expected_masks`). Offsets alone would
not remove the word-start confound; crossing with the key's role in its word does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from analysis.measures.detectors import REGISTRY, CharBatch, line_starts, target_masks, word_structure
from data.charclasses import CLASS_NAMES

ROLE_NAMES = ("line_start", "word_start", "word_end", "other")
NEAR_OFFSETS = 8  # offsets 0..8 are strata of their own
BUCKET_EDGES = (9, 17)  # then offsets 9..16 and 17+
N_BUCKETS = NEAR_OFFSETS + 1 + len(BUCKET_EDGES)
N_STRATA = N_BUCKETS * len(ROLE_NAMES)


def positional_names(names: list[str]) -> list[str]:
    """The detectors among `names` that the positional control applies to, in order."""
    return [n for n in names if REGISTRY[n].control == "position"]


def key_roles(b: CharBatch) -> torch.Tensor:
    """(B, T) long, index into ROLE_NAMES: the key's role in its line and word (first match wins;
    position 0 and the window's last position are `other` unless a line or word visibly starts there)."""
    in_word, starts, _ = word_structure(b)
    ends = torch.zeros_like(in_word)
    ends[:, :-1] = in_word[:, :-1] & ~in_word[:, 1:]
    roles = torch.full(b.shape, ROLE_NAMES.index("other"), dtype=torch.long, device=b.ids.device)
    for name, flags in (("word_end", ends), ("word_start", starts), ("line_start", line_starts(b) & in_word)):
        roles[flags] = ROLE_NAMES.index(name)
    return roles


def offset_buckets(T: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, T) long: the offset bucket of each (i, j), i - j clamped at 0 (future keys are never counted)."""
    t = torch.arange(T, device=device)
    off = (t[:, None] - t[None, :]).clamp(min=0)
    edges = torch.tensor(BUCKET_EDGES, device=device)
    return torch.where(off <= NEAR_OFFSETS, off, NEAR_OFFSETS + torch.bucketize(off, edges, right=True))


def strata(b: CharBatch) -> torch.Tensor:
    """(B, T, T) long: the stratum of every (query, key) pair, bucket * len(ROLE_NAMES) + role of the key."""
    return offset_buckets(b.shape[1], b.ids.device)[None] * len(ROLE_NAMES) + key_roles(b)[:, None, :]


class StratumCounts:
    """Per positional detector, query class and stratum: pairs whose key is a target, and all pairs,
    over the rows that have targets. Accumulated over a text split's windows before its attention."""

    def __init__(self, names: list[str]) -> None:
        self.names = positional_names(names)
        shape = (len(self.names), len(CLASS_NAMES) * N_STRATA)
        self.targets = torch.zeros(shape, dtype=torch.float64)
        self.pairs = torch.zeros(shape, dtype=torch.float64)

    def add(self, b: CharBatch) -> None:
        if not self.names:
            return
        B, T = b.shape
        masks = target_masks(b, self.names)  # (B, Dp, T, T)
        rows = masks.any(-1)  # (B, Dp, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=b.ids.device).tril()
        index = (b.classes[:, :, None] * N_STRATA + strata(b)).flatten()  # (B*T*T,)
        size = len(CLASS_NAMES) * N_STRATA
        for d in range(len(self.names)):
            in_rows = rows[:, d, :, None] & causal  # (B, T, T)
            self.pairs[d] += torch.bincount(index, weights=in_rows.flatten().double(), minlength=size)
            self.targets[d] += torch.bincount(index, weights=(in_rows & masks[:, d]).flatten().double(), minlength=size)

    def frequencies(self) -> "ClassFrequencies":
        f = torch.where(self.pairs > 0, self.targets / self.pairs.clamp_min(1), torch.zeros_like(self.pairs))
        return ClassFrequencies(self.names, f.view(len(self.names), len(CLASS_NAMES), N_STRATA).float())


@dataclass
class ClassFrequencies:
    """f_d(query class, stratum) for the positional detectors `names`: table (Dp, C, S)."""

    names: list[str]
    table: torch.Tensor

    def expected_masks(self, b: CharBatch, names: list[str], masks: torch.Tensor) -> torch.Tensor:
        """E (B, len(names), T, T): f_d(c_i, s(i, j)) on the causal pairs of the rows where detector d
        has targets (`masks`, (B, len(names), T, T), the same detectors' target masks), 0 elsewhere."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise ValueError(f"no stratum frequencies for {', '.join(missing)}; count them with StratumCounts first")
        B, T = b.shape
        rows = masks.any(-1, keepdim=True)  # (B, D, T, 1)
        causal = torch.ones(T, T, dtype=torch.bool, device=b.ids.device).tril()
        index = b.classes[:, :, None] * N_STRATA + strata(b)  # (B, T, T)
        table = self.table[[self.names.index(n) for n in names]].flatten(1).to(b.ids.device)  # (D, C*S)
        expected = table[:, index].permute(1, 0, 2, 3)  # (B, D, T, T)
        return expected * (rows & causal)
