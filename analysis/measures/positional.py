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
null, and the baseline is scored as the mask is, one bmm (`control_mass`). Offsets alone would
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
    return b.memo("strata", lambda: offset_buckets(b.shape[1], b.ids.device)[None] * len(ROLE_NAMES) + key_roles(b)[:, None, :])


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
        Dp, C, S = len(self.names), len(CLASS_NAMES), N_STRATA
        masks = target_masks(b, self.names, torch.float32)  # (B, Dp, T, T): causal, and only on rows with targets
        rows = (masks.amax(-1) > 0).float()  # (B, Dp, T)
        cell = b.classes[:, :, None] * S + strata(b)  # (B, T, T): query class x stratum of each pair
        index = cell[:, None] + (torch.arange(Dp, device=cell.device) * C * S)[None, :, None, None]
        self.targets += torch.bincount(index.flatten(), weights=masks.flatten(), minlength=Dp * C * S).view(Dp, -1).double()
        causal = torch.ones(T, T, device=cell.device).tril().expand(B, T, T)
        per_row = torch.zeros(B, T, S, device=cell.device).scatter_add_(-1, strata(b), causal)  # (B, T, S): pairs per row
        onehot = torch.nn.functional.one_hot(b.classes, C).float()  # (B, T, C)
        self.pairs += torch.einsum("bdi,bic,bis->dcs", rows, onehot, per_row).reshape(Dp, -1).double()

    def frequencies(self) -> "ClassFrequencies":
        f = torch.where(self.pairs > 0, self.targets / self.pairs.clamp_min(1), torch.zeros_like(self.pairs))
        return ClassFrequencies(self.names, f.view(len(self.names), len(CLASS_NAMES), N_STRATA).float())


@dataclass
class ClassFrequencies:
    """f_d(query class, stratum) for the positional detectors `names`: table (Dp, C, S)."""

    names: list[str]
    table: torch.Tensor

    def control_mass(self, attention: torch.Tensor, b: CharBatch, names: list[str], rows: torch.Tensor) -> torch.Tensor:
        """sum over i, j of A[i, j] E_d[i, j], E_d[i, j] = f_d(c_i, s(i, j)) on the rows where detector d has
        targets (`rows`, (B, len(names), T) bool): the positional control's mass, (B, len(names), L, H).
        Future keys need no mask: causal attention is 0 there."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise ValueError(f"no stratum frequencies for {', '.join(missing)}; count them with StratumCounts first")
        B, L, H, T, _ = attention.shape
        index = b.classes[:, :, None] * N_STRATA + strata(b)  # (B, T, T)
        table = self.table[[self.names.index(n) for n in names]].flatten(1).T.to(attention)  # (C*S, D)
        expected = table[index] * rows.transpose(1, 2)[:, :, None, :]  # (B, T, T, D)
        mass = torch.bmm(attention.reshape(B, L * H, T * T), expected.view(B, T * T, -1))  # (B, L*H, D)
        return mass.transpose(1, 2).reshape(B, -1, L, H)
