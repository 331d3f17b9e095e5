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


def near_keys(T: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, NEAR + 1): the key i - o of each query i and near offset o (clamped at 0), and whether it exists."""
    key = torch.arange(T, device=device)[:, None] - torch.arange(NEAR + 1, device=device)[None, :]
    return key.clamp(min=0), key >= 0


def near_targets(masks: torch.Tensor) -> torch.Tensor:
    """(B, D, T, NEAR + 1) [b, d, i, o] = M[b, d, i, i - o] (0 where there is no key), from masks (B, D, T, T)."""
    B, D, T, _ = masks.shape
    key, exists = near_keys(T, masks.device)
    return masks.gather(-1, key.expand(B, D, T, NEAR + 1)) * exists


def offset_counts(near: torch.Tensor, counts: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets and pairs by detector, query class and offset stratum (0..NEAR, then the far ones), (D, C, NEAR + 2) each,
    over the rows i >= 1 with targets, each row weighted by 1 / (the window's rows with targets): a score is a mean over
    windows of per-window means, and with the same weights the control equals the score of a content-blind head
    exactly, not only on long windows. near (B, D, T, NEAR + 1): the targets at the near offsets (`near_targets`);
    counts (B, D, T): each row's number of targets; classes (B, T) codes into CLASS_NAMES."""
    B, D, T, _ = near.shape
    i = torch.arange(T, device=near.device)
    w = ((counts > 0) & (i >= 1)).to(torch.float32)
    w = w / w.sum(-1, keepdim=True).clamp_min(1)
    weighted = w[..., None] * torch.nn.functional.one_hot(classes.long(), C).to(torch.float32)[:, None]  # (B, D, T, C)
    near = near.to(torch.float32)
    hits = torch.cat([torch.einsum("bdio,bdic->dco", near, weighted),
                      torch.einsum("bdi,bdic->dc", counts.to(torch.float32) - near.sum(-1), weighted)[..., None]], -1)
    keys = torch.cat([(i[:, None] >= torch.arange(NEAR + 1, device=near.device)).to(torch.float32),  # keys at each offset,
                      (i - NEAR).clamp(min=0).to(torch.float32)[:, None]], -1)  # and farther back: (T, NEAR + 2)
    return hits.double(), torch.einsum("bdic,io->dco", weighted, keys).double()


def share(targets: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """targets / pairs where there are pairs, 0 elsewhere (pairs are weighted: they may be below 1)."""
    return torch.where(pairs > 0, targets / torch.where(pairs > 0, pairs, torch.ones_like(pairs)), torch.zeros_like(pairs))


def offset_masses(attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """attention (B, N, T, T) -> near (B, N, T, NEAR + 1), the entries at offsets 0..NEAR (0 where there is no key),
    and far (B, N, T), each row's mass farther back. (positional.stratum_masses gives the same near entries and the
    far mass split by key role: the analysis computes them once for both controls.)"""
    near = near_targets(attention)
    return near, attention.sum(-1) - near.sum(-1)


def control_mass(table: torch.Tensor, near: torch.Tensor, far: torch.Tensor, classes: torch.Tensor,
                 rows: torch.Tensor) -> torch.Tensor:
    """sum over the rows i with targets (`rows` (B, D, T) bool), over keys j <= i, of A[i, j] f_d(c_i, i - j):
    table (D, C, NEAR + 2) (f; the last column the far offsets), near (B, N, T, NEAR + 1) and far (B, N, T)
    (`offset_masses`), classes (B, T) -> (B, D, N)."""
    per_row = table[:, classes.long()] * rows.transpose(0, 1)[..., None].to(table)  # (D, B, T, NEAR + 2)
    return (torch.einsum("bnio,dbio->bdn", near, per_row[..., :NEAR + 1])
            + torch.einsum("bni,dbi->bdn", far, per_row[..., NEAR + 1]))


def detector_offset_counts(b: CharBatch, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """`offset_counts` of registered detectors, without their T x T masks where a detector has one key per row (its
    offset) or is a key set (its flags, read back along each row); the others from their masks."""
    B, T = b.shape
    key, exists = near_keys(T, b.ids.device)
    i = torch.arange(T, device=b.ids.device)
    near = torch.zeros(B, len(names), T, NEAR + 1)
    counts = torch.zeros(B, len(names), T)
    for d, n in enumerate(names):
        det = REGISTRY[n]
        if det.key is not None:
            k = det.key(b)
            has = (k >= 0) & (i >= 1)
            at = has & (i - k <= NEAR)
            near[at.nonzero(as_tuple=True)[0], d, at.nonzero(as_tuple=True)[1], (i - k)[at]] = 1.0
            counts[:, d] = has.float()
        elif det.key_set is not None:
            flags = det.key_set(b).float()
            near[:, d] = flags[:, key] * exists
            counts[:, d] = flags.cumsum(1)
        else:
            masks = target_masks(b, [n], torch.float32)
            near[:, d] = near_targets(masks)[:, 0]
            counts[:, d] = masks[:, 0].sum(-1)
    return offset_counts(near, counts, b.classes)


class OffsetCounts:
    """f_d(query class, offset stratum) of the structural detectors among `names`, accumulated over a split's
    windows before its attention."""

    def __init__(self, names: list[str]) -> None:
        self.names = structural_names(names)
        self.targets = torch.zeros(len(self.names), C, NEAR + 2, dtype=torch.float64)
        self.pairs = torch.zeros_like(self.targets)

    def add(self, b: CharBatch) -> None:
        if not self.names:
            return
        targets, pairs = detector_offset_counts(b, self.names)
        self.targets += targets
        self.pairs += pairs

    def frequencies(self) -> "OffsetFrequencies":
        return OffsetFrequencies(self.names, share(self.targets, self.pairs).float())


@dataclass
class OffsetFrequencies:
    """f_d(query class, offset stratum) for the structural detectors `names`: table (D, C, NEAR + 2), the last column
    the far offsets."""

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
