"""Behaviour detectors: one function per behaviour, one scoring routine for all.

A detector turns a batch of windows' characters into a target mask M (B, T, T): M[b, i, j] is
True when key j is a target of query i (always j <= i). A head's score on a window is its mean
attention mass on the targets, over the query rows that have at least one target; its baseline
is the same for uniform causal attention (|targets_i| / (i + 1)), so a head is credited only for
what it does beyond chance. Row 0 is never scored: with a single key there is no choice to make.
There is no BOS token and no BOS assumption.

Adding a detector: write `def my_targets(b: CharBatch) -> torch.Tensor` (bool (B, T, T)) and
register it with `@detector("name", "one line: what the target set is")`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from analysis.measures.importance import attention_entropy
from data.charclasses import CLASS_INDEX, CLASS_NAMES

MAX_OFFSET = 8  # the offset profile covers offsets 0..MAX_OFFSET


@dataclass
class CharBatch:
    """What detectors see of a batch of windows: token ids and class codes, both (B, T) long."""

    ids: torch.Tensor
    classes: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.ids.shape)  # type: ignore[return-value]

    def positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Query index i (T, 1) and key index j (1, T)."""
        t = torch.arange(self.ids.shape[1], device=self.ids.device)
        return t[:, None], t[None, :]


@dataclass(frozen=True)
class Detector:
    name: str
    description: str
    targets: Callable[[CharBatch], torch.Tensor]


REGISTRY: dict[str, Detector] = {}


def detector(name: str, description: str):
    def register(fn: Callable[[CharBatch], torch.Tensor]) -> Callable[[CharBatch], torch.Tensor]:
        REGISTRY[name] = Detector(name, description, fn)
        return fn
    return register


def _offset(k: int) -> Callable[[CharBatch], torch.Tensor]:
    def targets(b: CharBatch) -> torch.Tensor:
        i, j = b.positions()
        return (j == i - k).expand(b.shape[0], -1, -1)
    return targets


def _key_in(*class_names: str) -> Callable[[CharBatch], torch.Tensor]:
    codes = torch.tensor([CLASS_INDEX[c] for c in class_names])

    def targets(b: CharBatch) -> torch.Tensor:
        i, j = b.positions()
        in_class = torch.isin(b.classes, codes.to(b.classes.device))  # (B, T)
        return in_class[:, None, :] & (j <= i)
    return targets


detector("self", "the query's own position (j = i)")(_offset(0))
detector("previous_char", "the previous character (j = i - 1)")(_offset(1))
for _k in range(2, MAX_OFFSET + 1):
    detector(f"offset_{_k}", f"the character {_k} back (j = i - {_k})")(_offset(_k))
detector("space", "every space or newline up to the query (word boundaries)")(_key_in("space", "newline"))
detector("punctuation", "every punctuation mark up to the query")(_key_in("punctuation"))
detector("vowel", "every vowel up to the query (Hebrew: vowel letters and niqqud)")(_key_in("vowel"))
detector("consonant", "every consonant up to the query")(_key_in("consonant"))


@detector("recent_space", "the most recent space or newline before the query")
def recent_space(b: CharBatch) -> torch.Tensor:
    i, j = b.positions()
    boundary = torch.isin(b.classes, torch.tensor([CLASS_INDEX["space"], CLASS_INDEX["newline"]], device=b.classes.device))
    last_upto = torch.where(boundary, j, torch.full_like(j, -1)).cummax(dim=1).values  # (B, T): last boundary <= t
    before = torch.cat([torch.full_like(last_upto[:, :1], -1), last_upto[:, :-1]], dim=1)  # last boundary < t
    return (j[None] == before[:, :, None]) & (before[:, :, None] >= 0)


@detector("duplicate", "earlier occurrences of the query's character (text[j] = text[i], j < i)")
def duplicate(b: CharBatch) -> torch.Tensor:
    i, j = b.positions()
    return (b.ids[:, :, None] == b.ids[:, None, :]) & (j < i)


@detector("induction", "the character right after an earlier occurrence of the query's character (text[j-1] = text[i], j < i)")
def induction(b: CharBatch) -> torch.Tensor:
    i, j = b.positions()
    before = torch.cat([torch.full_like(b.ids[:, :1], -1), b.ids[:, :-1]], dim=1)  # before[j] = text[j-1]
    return (b.ids[:, :, None] == before[:, None, :]) & (j < i)


@detector("first_position", "the window's first position (j = 0, an attention sink)")
def first_position(b: CharBatch) -> torch.Tensor:
    i, j = b.positions()
    return (j == 0).expand(b.shape[0], b.shape[1], -1)


def offset_detector_names() -> list[str]:
    """Detector names of offsets 0..MAX_OFFSET, in order (the offset profile)."""
    return ["self", "previous_char"] + [f"offset_{k}" for k in range(2, MAX_OFFSET + 1)]


def target_masks(b: CharBatch, names: list[str]) -> torch.Tensor:
    """Stacked target masks (B, D, T, T) of the named detectors, row 0 cleared."""
    masks = torch.stack([REGISTRY[n].targets(b) for n in names], dim=1)
    masks[:, :, 0, :] = False
    return masks


@dataclass
class WindowScores:
    score: torch.Tensor  # (B, D, L, H) mean mass on targets over rows with targets (NaN when no row has targets)
    baseline: torch.Tensor  # (B, D) same for uniform causal attention


def score_masks(attention: torch.Tensor, masks: torch.Tensor) -> WindowScores:
    """The one scoring routine. attention (B, L, H, T, T), masks (B, D, T, T) bool -> per-window scores."""
    B, L, H, T, _ = attention.shape
    m = masks.to(attention.dtype)
    # Rows without targets have an all-zero mask row, so summing over all (i, j) sums over the rows with targets.
    mass = torch.bmm(m.reshape(B, -1, T * T), attention.reshape(B, L * H, T * T).transpose(1, 2))  # (B, D, L*H)
    n_rows = masks.any(dim=-1).sum(dim=-1).to(attention.dtype)  # (B, D)
    score = mass / n_rows[:, :, None]  # (B, D, L*H), NaN where no row has targets
    uniform_row = 1.0 / torch.arange(1, T + 1, dtype=attention.dtype, device=attention.device)  # (T,)
    baseline = (m.sum(dim=-1) * uniform_row).sum(dim=-1) / n_rows  # (B, D)
    return WindowScores(score.view(B, -1, L, H), baseline)


def uniform_attention(T: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform causal attention (T, T): row i spreads 1 / (i + 1) over keys 0..i."""
    return torch.tril(torch.ones(T, T, dtype=dtype)) / torch.arange(1, T + 1, dtype=dtype)[:, None]


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
