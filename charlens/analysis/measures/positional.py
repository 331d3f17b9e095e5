"""The positional control of key-content detectors (classes, letter sets, the query's character).

A head that attends to the first letter of each word puts a share of its mass on vowels because
word-initial letters are vowels at some rate, not because it selects vowels. The control is what a
class-blind head with the head's own structural profile would put on the class: every (query i,
key j) pair falls in one stratum, offset bucket x key role (line start, word start, word end,
other), and within a stratum the class-blind head picks keys as the text offers them. So the
baseline of a head on detector d is

    sum over its rows with targets, over keys j:  A[i, j] * f_d(class of query i, stratum of (i, j))

where f_d(c, s) is the share of pairs in stratum s whose key is a target of d, over the rows of
query class c that have targets (each weighted by 1 / its window's rows with targets, as the scores are
means over windows), measured on the whole text split beforehand (`StratumCounts`).
As a matrix, E_d[i, j] = f_d(c_i, s(i, j)) is the expected target mask under the class-blind
null. Offsets alone would not remove the word-start confound; crossing with the key's role in its
word does. Computation: every sum over a stratum splits into the near offsets 0..16 (16 + 1 diagonals
of the matrix, gathered) and the far ones, 17+, one stratum per role (the row's mass by key role, a
matmul with the roles' one-hot, minus its near part), so nothing of size T x T x strata is built.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from charlens.analysis.measures.detectors import REGISTRY, CharBatch, line_starts, target_masks, word_structure
from charlens.analysis.measures.structural import NEAR, OffsetCounts, OffsetFrequencies, near_keys, share
from charlens.data.charclasses import CLASS_NAMES

ROLE_NAMES = ("line_start", "word_start", "word_end", "other")
R = len(ROLE_NAMES)
NEAR_OFFSETS = 8  # offsets 0..8 are strata of their own,
NEAR_SPAN = NEAR  # then offsets 9..16 one stratum per role (the near band of the structural control too),
N_BUCKETS = NEAR_OFFSETS + 3  # and 17+ one more
FAR = N_BUCKETS - 1
NEAR_BUCKET = torch.tensor([min(o, NEAR_OFFSETS + 1) for o in range(NEAR_SPAN + 1)])  # offset 0..16 -> its bucket


def positional_names(names: list[str]) -> list[str]:
    """The detectors among `names` that the positional control applies to, in order."""
    return [n for n in names if REGISTRY[n].control == "position"]


def key_roles(b: CharBatch) -> torch.Tensor:
    """(B, T) long, index into ROLE_NAMES: the key's role in its line and word (first match wins;
    position 0 and the window's last position are `other` unless a line or word visibly starts there)."""
    def compute() -> torch.Tensor:
        in_word, starts, _ = word_structure(b)
        ends = torch.zeros_like(in_word)
        ends[:, :-1] = in_word[:, :-1] & ~in_word[:, 1:]
        roles = torch.full(b.shape, ROLE_NAMES.index("other"), dtype=torch.long, device=b.ids.device)
        for name, flags in (("word_end", ends), ("word_start", starts), ("line_start", line_starts(b) & in_word)):
            roles[flags] = ROLE_NAMES.index(name)
        return roles
    return b.memo("roles", compute)


def stratum_masses(x: torch.Tensor, b: CharBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's sum of x over the strata: x (B, N, T, T), zero on future keys -> near (B, N, T, NEAR_SPAN + 1),
    the entries at offsets 0..16 (stratum: the offset's bucket x the role of key i - o), and far (B, N, T, R),
    the sum over offsets 17+ by the key's role."""
    B, N, T, _ = x.shape
    key, exists = near_keys(T, x.device)
    near = x.gather(-1, key.expand(B, N, T, -1)) * exists
    roles = torch.nn.functional.one_hot(key_roles(b), R).to(x.dtype)  # (B, T, R)
    total = torch.bmm(x.reshape(B, N * T, T), roles).view(B, N, T, R)
    near_roles = roles[:, key] * exists[None, :, :, None]  # (B, T, NEAR_SPAN + 1, R): role of key i - o
    return near, total - torch.einsum("bnio,bior->bnir", near, near_roles)


class BatchSums:
    """Sums of one batch's attention (B, L, H, T, T) that several measures need (the controls, the key characters),
    each computed on first use and then shared: `strata()` (stratum_masses) and `received()` (column sums)."""

    def __init__(self, attention: torch.Tensor, b: CharBatch) -> None:
        B, L, H, T, _ = attention.shape
        self.shape = (L, H)
        self.attention = attention.reshape(B, L * H, T, T)
        self.chars = b
        self._strata: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self._received: Optional[torch.Tensor] = None

    def strata(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._strata is None:
            self._strata = stratum_masses(self.attention, self.chars)
        return self._strata

    def received(self) -> torch.Tensor:
        """(B, L*H, T): the attention each key receives, summed over every row (row 0 included)."""
        if self._received is None:
            self._received = self.attention.sum(-2)
        return self._received


def far_sums(weights: torch.Tensor) -> torch.Tensor:
    """(B, T, ...): for each row i, the sum of weights (B, T, ...) over the keys j <= i - NEAR_SPAN - 1 (the far offsets)."""
    total = weights.cumsum(1)
    far = torch.zeros_like(total)
    if total.shape[1] > NEAR_SPAN + 1:
        far[:, NEAR_SPAN + 1:] = total[:, :-(NEAR_SPAN + 1)]
    return far


def _near_roles(b: CharBatch) -> torch.Tensor:
    """(B, T, NEAR_SPAN + 1) long: the role of key i - o (0 where it does not exist: its entries are 0)."""
    key, _ = near_keys(b.shape[1], b.ids.device)
    return key_roles(b)[:, key]


def add_by_stratum(table: torch.Tensor, b: CharBatch, near: torch.Tensor, far: torch.Tensor) -> None:
    """Add near (B, N, T, NEAR_SPAN + 1) and far (B, N, T, R) sums (`stratum_masses`' layout) into table
    (N, C, N_BUCKETS, R) by query class c_i and stratum (the index of each entry is the same for all N)."""
    N = table.shape[0]
    c = b.classes[:, :, None] * (N_BUCKETS * R)  # (B, T, 1)
    at_near = c + (NEAR_BUCKET.to(near.device) * R)[None, None, :] + _near_roles(b)  # (B, T, NEAR_SPAN + 1)
    at_far = c + FAR * R + torch.arange(R, device=near.device)[None, None, :]  # (B, T, R)
    index = torch.cat([at_near.flatten(), at_far.flatten()])
    values = torch.cat([near.transpose(0, 1).reshape(N, -1), far.transpose(0, 1).reshape(N, -1)], 1)
    table.view(N, -1).index_add_(1, index, values.to(table.dtype))


class StratumCounts:
    """Per positional detector, query class and stratum: pairs whose key is a target, and all pairs,
    over the rows that have targets; and the structural control's counts of the structural detectors
    (analysis.measures.structural). Accumulated over a text split's windows before its attention."""

    def __init__(self, names: list[str]) -> None:
        self.names = positional_names(names)
        shape = (len(self.names), len(CLASS_NAMES), N_BUCKETS, R)
        self.targets = torch.zeros(shape, dtype=torch.float64)
        self.pairs = torch.zeros(shape, dtype=torch.float64)
        self.structure = OffsetCounts(names)

    def add(self, b: CharBatch) -> None:
        self.structure.add(b)
        if not self.names:
            return
        key, exists = near_keys(b.shape[1], b.ids.device)
        roles = torch.nn.functional.one_hot(key_roles(b), R).float()  # (B, T, R)
        near, far, rows = [], [], []
        for name in self.names:  # targets by stratum: key-set detectors from their flags, the others from their masks
            flags = REGISTRY[name].key_set
            if flags is not None:
                f = flags(b).float()  # (B, T)
                has = f.cumsum(1) > 0
                has[:, 0] = False
                near.append(f[:, key] * exists * has[..., None])
                far.append(far_sums(f[..., None] * roles) * has[..., None])
                rows.append(has)
            else:
                mask = target_masks(b, [name], torch.float32)  # (B, 1, T, T): causal, only on rows with targets
                n, f_ = stratum_masses(mask, b)
                near.append(n[:, 0])
                far.append(f_[:, 0])
                rows.append(mask[:, 0].amax(-1) > 0)
        # each row weighs 1 / (its window's rows with targets), as in a mean over windows of per-window means
        has = torch.stack(rows, 1).float()
        has = (has / has.sum(-1, keepdim=True).clamp_min(1))[..., None]  # (B, Dp, T, 1)
        add_by_stratum(self.targets, b, torch.stack(near, 1) * has, torch.stack(far, 1) * has)
        # all pairs of those rows: one per existing near key; far, the keys of each role up to i - NEAR_SPAN - 1
        add_by_stratum(self.pairs, b, has * exists, has * far_sums(roles)[:, None])

    def frequencies(self) -> "ClassFrequencies":
        return ClassFrequencies(self.names, share(self.targets, self.pairs).float(), self.structure.frequencies())


@dataclass
class ClassFrequencies:
    """A split's control frequencies: f_d(query class, offset bucket, key role) for the positional detectors
    `names`, table (Dp, C, N_BUCKETS, R), and the structural detectors' f_d(query class, offset) (`structure`)."""

    names: list[str]
    table: torch.Tensor
    structure: OffsetFrequencies

    def control_mass(self, sums: BatchSums, names: list[str], rows: torch.Tensor) -> torch.Tensor:
        """sum over i, j of A[i, j] E_d[i, j], E_d[i, j] = f_d(c_i, s(i, j)) on the rows where detector d has
        targets (`rows`, (B, len(names), T) bool): the positional control's mass, (B, len(names), L*H)."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise ValueError(f"no stratum frequencies for {', '.join(missing)}; count them with StratumCounts first")
        attention, b = sums.attention, sums.chars
        near, far = sums.strata()
        table = self.table[[self.names.index(n) for n in names]].to(attention)  # (D, C, N_BUCKETS, R)
        per_row = table[:, b.classes] * rows.transpose(0, 1)[..., None, None].to(attention)  # (D, B, T, N_BUCKETS, R)
        f_near = per_row[:, :, :, NEAR_BUCKET.to(attention.device)].gather(  # (D, B, T, NEAR_SPAN + 1)
            -1, _near_roles(b)[None, :, :, :, None].expand(len(names), -1, -1, -1, 1)).squeeze(-1)
        return torch.einsum("bnio,dbio->bdn", near, f_near) + torch.einsum("bnir,dbir->bdn", far, per_row[:, :, :, FAR])
