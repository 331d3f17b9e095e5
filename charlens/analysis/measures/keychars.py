"""Key characters: which characters' keys receive more of a head's mass than its positional control predicts.

A head that attends to the latest 'e' is 0.95 "selective" for vowels, yet it knows one letter, not a class. For
every head and every character x of the vocabulary this module measures, over all query rows i >= 1 of a split,

    mass_x    = mean over rows of the head's attention on keys whose character is x
    control_x = mean over rows of sum_j A[i, j] * f_x(c_i, s(i, j))

where f_x(c, s) is the share of (query, key) pairs in stratum s (offset bucket x the key's role in its word and line,
as for the positional control of class detectors, analysis.measures.positional) whose key is x, for queries of class
c: what a character-blind head with this head's own positional profile would put on x. Both sum to 1 over the
characters, so excess_x = mass_x - control_x sums to 0: it says where the head's mass goes beyond its positions.
control_x needs only the head's total mass per (query class, stratum), W, because f does not change from window to
window: control = W . f at the end, and each batch adds to W and to the mass per key character.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from charlens.analysis.measures.detectors import CharBatch
from charlens.analysis.measures.positional import FAR, N_BUCKETS, NEAR_BUCKET, NEAR_SPAN, R, BatchSums, add_by_stratum, key_roles
from charlens.analysis.measures.structural import near_keys, share
from charlens.data.charclasses import CLASS_NAMES

C = len(CLASS_NAMES)


class KeyCharCounts:
    """f_x(query class, stratum) for the V characters of a vocabulary, from a split's characters alone."""

    def __init__(self, vocab_size: int) -> None:
        self.pairs = torch.zeros(vocab_size, C, N_BUCKETS, R, dtype=torch.float64)

    def add(self, b: CharBatch) -> None:
        """Count every pair (query i >= 1, key j <= i) by key character, query class and stratum: the near offsets
        0..16 one by one, the far ones per key j from the number of rows of each class at i >= j + 17."""
        B, T = b.shape
        key, exists = near_keys(T, b.ids.device)
        roles = key_roles(b)
        at = lambda x, c, bucket, role: ((x * C + c) * N_BUCKETS + bucket) * R + role
        near = at(b.ids[:, key], b.classes[:, :, None], NEAR_BUCKET.to(b.ids.device), roles[:, key])  # (B, T, NEAR_SPAN + 1)
        use = (exists & (torch.arange(T, device=b.ids.device) >= 1)[:, None]).expand(B, -1, -1)
        rows = torch.nn.functional.one_hot(b.classes.long(), C).flip(1).cumsum(1).flip(1)  # (B, T, C): rows >= t by class
        far_rows = torch.zeros_like(rows)
        far_rows[:, : max(T - NEAR_SPAN - 1, 0)] = rows[:, NEAR_SPAN + 1:]
        far = at(b.ids[:, :, None], torch.arange(C, device=b.ids.device), FAR, roles[:, :, None])  # (B, T, C)
        index = torch.cat([near[use], far.flatten()])
        weights = torch.cat([torch.ones(int(use.sum()), dtype=torch.float64), far_rows.flatten().double()])
        self.pairs += torch.bincount(index, weights, minlength=self.pairs.numel()).view(self.pairs.shape)

    def frequencies(self) -> torch.Tensor:
        """(V, C, N_BUCKETS, R): each stratum's pairs shared out by the key's character (0 where a stratum has none)."""
        return share(self.pairs, self.pairs.sum(0, keepdim=True).expand_as(self.pairs))


@dataclass(frozen=True)
class KeyCharMass:
    """Per head and character: mean mass on the character's keys and its positional control, (L, H, V) each."""

    mass: np.ndarray
    control: np.ndarray

    @property
    def excess(self) -> np.ndarray:
        return self.mass - self.control


class KeyCharSums:
    """Streams a split's attention: the mass each head puts on each key character, and its mass per (query class,
    stratum), from which the control follows with the split's KeyCharCounts."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.mass = torch.zeros(())  # (N, V) once a batch is added
        self.strata = torch.zeros(())  # (N, C, N_BUCKETS, R)
        self.rows = 0
        self.shape: tuple[int, int] = (0, 0)

    def add(self, sums: BatchSums) -> None:
        """One batch, from its attention sums (BatchSums: shared with the controls)."""
        B, N, T, _ = sums.attention.shape
        b = sums.chars
        received = sums.received() - sums.attention[:, :, 0]  # (B, N, T): the mass each key receives from rows i >= 1
        onehot = torch.nn.functional.one_hot(b.ids, self.vocab_size).to(received).reshape(B * T, -1)
        mass = (received.transpose(0, 1).reshape(N, B * T) @ onehot).double()  # (N, V)
        near, far = sums.strata()
        scored = (torch.arange(T, device=b.ids.device) >= 1).to(near)[None, None, :, None]  # row 0 is never scored
        strata_sums = torch.zeros(N, C, N_BUCKETS, R)
        add_by_stratum(strata_sums, b, near * scored, far * scored)
        L, H = sums.shape
        if not self.rows:
            self.mass, self.strata, self.shape = mass, strata_sums.double(), (L, H)
        else:
            self.mass += mass
            self.strata += strata_sums
        self.rows += B * (T - 1)

    def result(self, frequencies: torch.Tensor) -> KeyCharMass:
        """Means per row, with the split's KeyCharCounts frequencies (V, C, N_BUCKETS, R)."""
        L, H = self.shape
        control = torch.einsum("ncsr,vcsr->nv", self.strata, frequencies.double())
        per_row = lambda x: (x / max(self.rows, 1)).reshape(L, H, -1).numpy()
        return KeyCharMass(per_row(self.mass), per_row(control))
