"""The one scoring routine: attention x target masks -> per-window scores and baselines.

A head's score on a window is its mean attention mass on a detector's targets over the query rows
that have at least one target (rows without any are not counted, so a perfect head scores 1).
Every baseline is the same kind of sum with a soft mask in place of the targets, so all of them
come out of one batched matrix product over layers x heads:
- uniform: what uniform causal attention puts on the targets, |targets_i| / (i + 1);
- control (the detector's `control`, see analysis.measures.detectors): uniform, or the structural
  control E_d (analysis.measures.structural), or the positional control E_d (analysis.measures.positional),
  or the prefix control: the head's own mass on
  one-character prefix matches times the share of those that are k-character matches in the row,
  m1[i, j] * |T_k,i| / |T_1,i| (what a one-character matcher with the head's mass would score).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from charlens.analysis.measures.detectors import REGISTRY, CharBatch, prefix_match, target_masks
from charlens.analysis.measures.importance import attention_entropy
from charlens.analysis.measures.positional import BatchSums, ClassFrequencies
from charlens.analysis.measures.structural import control_mass, near_targets, offset_counts, offset_masses, share
from charlens.data.charclasses import CLASS_NAMES


@dataclass
class WindowScores:
    score: torch.Tensor  # (B, D, L, H) mean mass on targets over rows with targets (NaN when no row has targets)
    baseline: torch.Tensor  # (B, D) the same for uniform causal attention
    control: torch.Tensor  # (B, D, L, H) the same for the detector's control (the baseline of its selectivity)


def uniform_attention(T: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform causal attention (T, T): row i spreads 1 / (i + 1) over keys 0..i."""
    return torch.tril(torch.ones(T, T, dtype=dtype)) / torch.arange(1, T + 1, dtype=dtype)[:, None]


def masked_mass(attention: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """sum over i, j of attention * mask: attention (B, L, H, T, T), masks (B, D, T, T) of any real
    values -> (B, D, L, H). One bmm for all detectors, layers and heads."""
    B, L, H, T, _ = attention.shape
    m = masks.to(attention.dtype).reshape(B, -1, T * T)
    return torch.bmm(m, attention.reshape(B, L * H, T * T).transpose(1, 2)).view(B, -1, L, H)


def prefix_control(one: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft masks (B, K, T, T) of the prefix control: one (B, T, T) one-character matches, targets
    (B, K, T, T) subsets of them (longer prefixes, or the copy in a repeated sequence); on a row with
    targets, each one-character match weighs |targets_i| / |one_i|."""
    n_one = one.sum(-1, keepdim=True).to(torch.float32)  # (B, T, 1)
    share = targets.sum(-1, keepdim=True).to(torch.float32) / n_one.clamp_min(1)[:, None]  # (B, K, T, 1)
    return one[:, None].to(torch.float32) * share


def score_masks(attention: torch.Tensor, masks: torch.Tensor,
                controls: Sequence[tuple[torch.Tensor, Sequence[int]]] = ()) -> WindowScores:
    """Score target masks (B, D, T, T) with their uniform baseline. `controls`: (soft masks (B, K, T, T) of
    the control baselines of K of the detectors, their K indices into D); the other detectors' control is
    their uniform baseline."""
    B, L, H, T, _ = attention.shape
    m = masks.to(attention.dtype)
    counts = m.sum(-1)  # (B, D, T): targets per row
    ws = _scores(masked_mass(attention, m), counts > 0, counts, L, H)
    n_rows = _rows(counts > 0)
    for soft, index in controls:
        ws.control[:, list(index)] = masked_mass(attention, soft) / n_rows[:, list(index), None, None]
    return ws


def score_keys(attention: torch.Tensor, keys: torch.Tensor) -> WindowScores:
    """Score detectors with at most one target per row, given as the key's index per row (B, D, T) (-1: none;
    row 0 never counts): the same numbers as score_masks on their masks, from one gather instead of a bmm."""
    B, L, H, T, _ = attention.shape
    has = keys >= 0
    has[:, :, 0] = False
    index = keys.clamp_min(0).transpose(1, 2)[:, None].expand(B, L * H, T, keys.shape[1])  # (B, L*H, T, D)
    picked = attention.reshape(B, L * H, T, T).gather(-1, index) * has.transpose(1, 2)[:, None]  # (B, L*H, T, D)
    mass = picked.sum(2).transpose(1, 2).reshape(B, -1, L, H)
    return _scores(mass, has, has.to(attention.dtype), L, H)


def _rows(has: torch.Tensor) -> torch.Tensor:
    return has.sum(-1).to(torch.float32)


def _scores(mass: torch.Tensor, has: torch.Tensor, counts: torch.Tensor, L: int, H: int) -> WindowScores:
    """mass (B, D, L, H) summed over rows; has (B, D, T) rows with targets; counts (B, D, T) targets per row."""
    B, D, T = has.shape
    n_rows = _rows(has)  # (B, D)
    uniform_row = 1.0 / torch.arange(1, T + 1, dtype=counts.dtype, device=counts.device)
    baseline = (counts * uniform_row).sum(-1) / n_rows  # NaN where no row has targets
    return WindowScores(mass / n_rows[:, :, None, None], baseline, baseline[:, :, None, None].expand(B, D, L, H).clone())


def score_offsets(attention: torch.Tensor, offsets: Sequence[tuple[int, ...]]) -> WindowScores:
    """Score detectors whose targets are the keys at fixed offsets (one tuple per detector): sums of the
    matrix's diagonals (views, nothing copied), the same numbers as score_masks on their masks."""
    B, L, H, T, _ = attention.shape
    diagonal = {o: torch.diagonal(attention, -o, dim1=-2, dim2=-1)[..., 1 if o == 0 else 0:].sum(-1)
                for o in sorted({o for group in offsets for o in group}) if o < T}  # row 0 never counts
    i = torch.arange(T, dtype=attention.dtype, device=attention.device)
    mass = torch.stack([sum((diagonal[o] for o in group if o in diagonal), attention.new_zeros(B, L, H))
                        for group in offsets], 1)  # type: ignore[misc]
    counts = torch.stack([sum((((i >= o) & (i >= 1)).to(attention.dtype) for o in group), torch.zeros_like(i))
                          for group in offsets])  # (D, T)
    return _scores(mass, (counts > 0).expand(B, -1, -1), counts.expand(B, -1, -1), L, H)


def score_key_sets(attention: torch.Tensor, flags: torch.Tensor, received: Optional[torch.Tensor] = None) -> WindowScores:
    """Score detectors whose targets are every key j <= i with a flag, flags (B, D, T) bool: the same numbers
    as score_masks on their masks, from the attention each key receives (`received`, (B, L*H, T) column sums when
    the caller has them; row 0, never scored, gives key 0 its 1)."""
    B, L, H, T, _ = attention.shape
    f = flags.to(attention.dtype)
    if received is None:
        received = attention.sum(-2).reshape(B, L * H, T)
    mass = torch.bmm(f, received.transpose(1, 2)) - f[:, :, :1] * attention[:, :, :, 0, 0].reshape(B, 1, L * H)
    counts = f.cumsum(-1)  # (B, D, T): targets of row i = flagged keys up to i
    counts[:, :, 0] = 0
    return _scores(mass.view(B, -1, L, H), counts > 0, counts, L, H)


def score_windows(attention: torch.Tensor, b: CharBatch, names: list[str], frequencies: Optional[ClassFrequencies] = None,
                  sums: Optional[BatchSums] = None) -> WindowScores:
    """Score the named detectors on a batch, each with its control baseline (positional and structural detectors
    need the split's `frequencies`, see analysis.measures.positional.StratumCounts; `sums`: the batch's attention
    sums, when the caller shares them with other measures). Detectors with one target
    per row are gathered (score_keys), offset detectors summed along diagonals (score_offsets), key-set
    detectors summed from the attention each key receives (score_key_sets), the others masked (score_masks);
    the numbers are the same either way."""
    B, L, H, T, _ = attention.shape
    sums = sums if sums is not None else BatchSums(attention, b)
    groups: dict[str, list[str]] = {"offsets": [], "key": [], "key_set": [], "mask": []}
    for n in names:
        d = REGISTRY[n]
        groups["offsets" if d.offsets else "key" if d.key else "key_set" if d.key_set else "mask"].append(n)
    parts, rows = [], []  # rows: (B, D, T) bool, the rows with targets of each group's detectors
    if groups["offsets"]:
        offsets = [REGISTRY[n].offsets for n in groups["offsets"]]
        parts.append(score_offsets(attention, offsets))
        i = torch.arange(b.shape[1])
        rows.append(torch.stack([(i >= max(min(o), 1)) for o in offsets]).expand(b.shape[0], -1, -1))
    if groups["key"]:
        keys = torch.stack([REGISTRY[n].key(b) for n in groups["key"]], 1)  # type: ignore[misc]
        parts.append(score_keys(attention, keys))
        rows.append((keys >= 0) & (torch.arange(b.shape[1]) >= 1))
    if groups["key_set"]:
        flags = torch.stack([REGISTRY[n].key_set(b) for n in groups["key_set"]], 1)  # type: ignore[misc]
        parts.append(score_key_sets(attention, flags, sums.received()))
        counts = flags.long().cumsum(-1)
        counts[:, :, 0] = 0
        rows.append(counts > 0)
    if groups["mask"]:
        dense = groups["mask"]
        masks = target_masks(b, dense, attention.dtype)
        pre = [dense.index(n) for n in dense if REGISTRY[n].control == "prefix"]
        parts.append(score_masks(attention, masks, [(prefix_control(prefix_match(b, 1), masks[:, pre]), pre)] if pre else ()))
        rows.append(masks.amax(-1) > 0)
    ordered = groups["offsets"] + groups["key"] + groups["key_set"] + groups["mask"]
    ws = WindowScores(*(torch.cat([getattr(p, f) for p in parts], dim=1) for f in ("score", "baseline", "control")))
    has = torch.cat(rows, dim=1)
    for kind in ("position", "structure"):
        at = [k for k, n in enumerate(ordered) if REGISTRY[n].control == kind]
        if not at:
            continue
        if frequencies is None:
            raise ValueError(f"{kind} controls need the split's frequencies (analysis.measures.positional.StratumCounts)")
        chosen = [ordered[k] for k in at]
        if kind == "position":
            mass = frequencies.control_mass(sums, chosen, has[:, at])
        else:
            near, far = sums.strata()
            mass = frequencies.structure.control_mass(near, far.sum(-1), b, chosen, has[:, at])
        ws.control[:, at] = mass.view(*mass.shape[:2], L, H) / has[:, at].sum(-1).to(attention.dtype)[:, :, None, None]
    order = [ordered.index(n) for n in names]
    return WindowScores(ws.score[:, order], ws.baseline[:, order], ws.control[:, order])


def structural_control(attention: torch.Tensor, masks: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The structural control (analysis.measures.structural) of any target masks, its frequencies taken from the
    same windows: attention (B, L, H, T, T), masks (B, D, T, T) (1 = target; row 0 is not scored), classes (B, T)
    codes into CLASS_NAMES -> (B, D, L, H): per window, the mean over its rows with targets of what a head with
    this head's attention at every offset, blind to everything else but the query's class, puts on the targets
    (NaN: no row has targets). Its selectivity, (score - control) / (1 - control), is 0 for any head that picks
    keys by offset alone. For hypotheses outside the detector registry, e.g. a set of keys defined by morphology."""
    m = masks.to(attention.dtype).clone()
    m[:, :, 0] = 0
    targets, pairs = offset_counts(near_targets(m), m.sum(-1), classes)
    rows = m.amax(-1) > 0
    B, L, H, T, _ = attention.shape
    near, far = offset_masses(attention.reshape(B, L * H, T, T))
    mass = control_mass(share(targets, pairs).to(attention), near, far, classes, rows)
    return mass.view(B, -1, L, H) / rows.sum(-1).to(attention.dtype)[:, :, None, None]


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
