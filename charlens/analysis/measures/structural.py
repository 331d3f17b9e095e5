"""The structural control of word and line detectors: what the head's own offset profile would put on the targets.

Any head that looks nearby puts much of its mass on "the query's own word", whether or not it knows where words
are: offsets 1-3 are usually in the same word. Against uniform attention such a head looks word-selective. The
control credits a head only beyond its offsets: it is what a head that picks keys by offset alone, with this head's
own attention at every offset, would put on the targets, given where word and line boundaries fall in the text.
For detector d, query class c (the one thing every head can see at the query) and offset o,

    f_d(c, o) = share of the (query i, key i - o) pairs whose key is a target of d,
                over the rows with targets whose query is of class c            (the text's structure, per split)
    control   = sum over the head's rows with targets, over keys j <= i:  A[i, j] * f_d(c_i, i - j)

As a matrix, E_d[i, j] = f_d(c_i, i - j) is the expected target mask of a head that knows nothing but offsets.
Offsets 0..NEAR are strata of their own and the farther ones one more (beyond it the share of targets changes
little with the offset: content-blind windows over offsets 0..30 and decays of scale 16 keep |selectivity| <= 0.008),
so for any content-blind head (a fixed mixture of offsets, windows, decays) the control equals its score over the
split (exactly for heads whose rows do not depend on i and that stay within NEAR; tested) and its selectivity is 0. Each row counts 1 / its window's rows with
targets in f, as it does in the scores (means over windows of per-window means). Unlike the positional control
of class detectors (analysis.measures.positional), the strata do not include the key's role in its word: for
word and line detectors the role is the answer. The mass is a sum over the near offsets (NEAR + 1 diagonals,
gathered) and the far mass of each row (its total minus the near part): nothing of size T x T is built.

`analysis.measures.scoring.structural_control(attention, masks, classes)` is the whole computation for one batch
of windows (frequencies from the batch itself), for any target masks, registered or not; the analysis streams
`OffsetCounts` over a split first and scores its windows with the resulting `OffsetFrequencies`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from charlens.analysis.measures.detectors import REGISTRY, CharBatch, target_masks
from charlens.data.charclasses import CLASS_NAMES

C = len(CLASS_NAMES)
NEAR = 16  # offsets 0..NEAR are strata of their own, the farther ones one stratum (the positional control's near band)


def structural_names(names: list[str]) -> list[str]:
    """The detectors among `names` that the structural control applies to, in order."""
    return [n for n in names if REGISTRY[n].control == "structure"]


def _offsets(T: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, T) [i, o]: the key i - o of query i at offset o (clamped at 0) and whether it exists; read as [i, j], the
    same two are the offset i - j of a pair (clamped) and whether it is causal (j <= i)."""
    key = torch.arange(T, device=device)[:, None] - torch.arange(T, device=device)[None, :]
    return key.clamp(min=0), key >= 0


def by_offset(masks: torch.Tensor) -> torch.Tensor:
    """(B, D, T, T) [b, d, i, o] = M[b, d, i, i - o] (0 where o > i), from masks (B, D, T, T)."""
    B, D, T, _ = masks.shape
    key, exists = _offsets(T, masks.device)
    return masks.gather(-1, key.expand(B, D, T, T)) * exists


def offset_counts(targets: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets and pairs by detector, query class and offset, (D, C, T) each, over the rows with targets, each
    row weighted by 1 / (the window's rows with targets): a score is a mean over windows of per-window means, and
    with the same weights the control equals the score of a content-blind head exactly, not only on long windows.
    targets (B, D, T, T) by offset (`by_offset` of the 0/1 masks, row 0 cleared), classes (B, T) codes into CLASS_NAMES."""
    m = targets.to(torch.float32)
    weighted = _row_weights(m.amax(-1) > 0, classes)
    return torch.einsum("bdio,bdic->dco", m, weighted).double(), _pairs(weighted)


def _row_weights(has: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(B, D, T, C): each row with targets (`has` (B, D, T) bool) weighs 1 / its window's rows with targets, under its
    query's class."""
    w = has.to(torch.float32)
    w = w / w.sum(-1, keepdim=True).clamp_min(1)
    return w[..., None] * torch.nn.functional.one_hot(classes.long(), C).to(torch.float32)[:, None]


def _pairs(weighted: torch.Tensor) -> torch.Tensor:
    """(D, C, T): the weighted rows that reach back to each offset o (query i >= o), from `_row_weights`."""
    by_row = weighted.sum(0)  # (D, T, C)
    return by_row.flip(1).cumsum(1).flip(1).transpose(1, 2).double()


def share(targets: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """targets / pairs where there are pairs, 0 elsewhere (pairs are weighted: they may be below 1)."""
    return torch.where(pairs > 0, targets / torch.where(pairs > 0, pairs, torch.ones_like(pairs)), torch.zeros_like(pairs))


def offset_masses(attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """attention (B, N, T, T) -> near (B, N, T, NEAR + 1), the entries at offsets 0..NEAR (0 where there is no key),
    and far (B, N, T), each row's mass farther back. (positional.stratum_masses gives the same near entries and the
    far mass split by key role: the analysis computes them once for both controls.)"""
    B, N, T, _ = attention.shape
    key, exists = _offsets(T, attention.device)
    span = min(NEAR + 1, T)
    near = attention.gather(-1, key[:, :span].expand(B, N, T, span)) * exists[:, :span]
    near = torch.nn.functional.pad(near, (0, NEAR + 1 - span))
    return near, attention.sum(-1) - near.sum(-1)


def control_mass(table: torch.Tensor, near: torch.Tensor, far: torch.Tensor, classes: torch.Tensor,
                 rows: torch.Tensor) -> torch.Tensor:
    """sum over the rows i with targets (`rows` (B, D, T) bool), over keys j <= i, of A[i, j] f_d(c_i, i - j):
    table (D, C, NEAR + 2) (`bucketed`), near (B, N, T, NEAR + 1) and far (B, N, T) (`offset_masses`), classes (B, T)
    -> (B, D, N)."""
    per_row = table[:, classes.long()] * rows.transpose(0, 1)[..., None].to(table)  # (D, B, T, NEAR + 2)
    return (torch.einsum("bnio,dbio->bdn", near, per_row[..., :NEAR + 1])
            + torch.einsum("bni,dbi->bdn", far, per_row[..., NEAR + 1]))


def bucketed(targets: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """f (D, C, NEAR + 2) from counts by exact offset (D, C, T): offsets 0..NEAR one by one, the farther ones together."""
    pad = lambda t: torch.nn.functional.pad(t, (0, max(0, NEAR + 1 - t.shape[-1])))
    targets, pairs = pad(targets), pad(pairs)
    far = share(targets[..., NEAR + 1:].sum(-1, keepdim=True), pairs[..., NEAR + 1:].sum(-1, keepdim=True))
    return torch.cat([share(targets[..., :NEAR + 1], pairs[..., :NEAR + 1]), far], -1)


def detector_offset_counts(b: CharBatch, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """`offset_counts` of registered detectors, without their T x T masks where a detector has one key per row (its
    offset, counted) or is a key set (its flags, read back along each row); the others from their masks."""
    B, T = b.shape
    key, exists = _offsets(T, b.ids.device)
    i = torch.arange(T, device=b.ids.device)
    along, rows = {}, []  # per detector: its keys (B, T), or its targets by offset (B, T, T) [b, i, o]
    for n in names:
        det = REGISTRY[n]
        if det.key is not None:
            along[n] = det.key(b)
            rows.append((along[n] >= 0) & (i >= 1))
        else:
            along[n] = (det.key_set(b).float()[:, key] * exists if det.key_set is not None
                        else by_offset(target_masks(b, [n], torch.float32))[:, 0])
            rows.append((along[n].amax(-1) > 0) & (i >= 1))
    weighted = _row_weights(torch.stack(rows, 1), b.classes)  # (B, D, T, C)
    hits = torch.zeros(len(names), C, T)
    for d, n in enumerate(names):
        if REGISTRY[n].key is not None:
            w = weighted[:, d].sum(-1)
            at = w > 0
            hits[d].index_put_((b.classes[at].long(), (i - along[n])[at]), w[at], accumulate=True)
        else:
            hits[d] = torch.einsum("bio,bic->co", along[n], weighted[:, d])
    return hits.double(), _pairs(weighted)


class OffsetCounts:
    """f_d(query class, offset) of the structural detectors among `names`, accumulated over a split's windows
    before its attention (windows of several lengths are counted on the longest one's offsets)."""

    def __init__(self, names: list[str]) -> None:
        self.names = structural_names(names)
        self.targets = torch.zeros(len(self.names), C, 0, dtype=torch.float64)
        self.pairs = torch.zeros_like(self.targets)

    def add(self, b: CharBatch) -> None:
        if not self.names:
            return
        targets, pairs = detector_offset_counts(b, self.names)
        T = max(targets.shape[-1], self.targets.shape[-1])
        grow = lambda t: torch.nn.functional.pad(t, (0, T - t.shape[-1]))
        self.targets = grow(self.targets) + grow(targets)
        self.pairs = grow(self.pairs) + grow(pairs)

    def frequencies(self) -> "OffsetFrequencies":
        return OffsetFrequencies(self.names, bucketed(self.targets, self.pairs).float())


@dataclass
class OffsetFrequencies:
    """f_d(query class, offset) for the structural detectors `names`: table (D, C, NEAR + 2), the last column the far offsets."""

    names: list[str]
    table: torch.Tensor

    def control_mass(self, near: torch.Tensor, far: torch.Tensor, b: CharBatch, names: list[str],
                     rows: torch.Tensor) -> torch.Tensor:
        """The structural control's mass (B, len(names), N) of the named detectors on a batch, summed over the rows
        where each has targets (`rows`, (B, len(names), T) bool); near, far: the attention's `offset_masses`."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise ValueError(f"no offset frequencies for {', '.join(missing)}; count them with OffsetCounts first")
        return control_mass(self.table[[self.names.index(n) for n in names]].to(near), near, far, b.classes, rows)
