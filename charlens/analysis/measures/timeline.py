"""Timelines: the probe records a training run writes (training/timeline.py) as arrays, and when each
head formed. Pure functions on records, for the training side (its tests) and the analysis side.

A record is one dict of kind "probe" in the checkpoint's history (and log.jsonl); the format is in
training/timeline.py's docstring and docs/timeline.md. `timeline(records)` stacks them
into arrays (S steps, D detectors, L layers, H heads); `formation_steps(records)` gives, for every
(detector, layer, head) that ends past the criterion, the first recorded step from which it stays past
it. The criterion is the analyzer's rule on one probe set, without its bootstrap bound (one fixed set of
windows has no sampling spread to bound): selectivity >= the cut; for the prefix-match detectors of
length >= 2 (the rule's induction evidence) also the prefix-matching selectivity on repeated random
sequences >= the cut. The row INDUCTION ("induction") holds the rule's induction label: any
prefix-match detector of length >= 2 past the gated criterion.

A phase change (`largest_jump`) is the largest rise of a label's selectivity between two consecutive
records; the loss over the same interval is set beside it (`loss_change`), as Olsson et al. set the
induction-head bump in the loss curve beside the heads' formation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

from charlens.analysis.measures.rule import INDUCTION, induction_detectors

CUT = 0.3  # the rule's default cut (analysis.runs.inputs.Settings.min_selectivity; a test keeps them equal)
ARRAYS = ("score", "control", "selectivity")  # (D, L, H) per record
REPEATED = ("repeated_score", "repeated_control", "repeated_selectivity")  # (L, H) per record
SCALARS = ("probe_loss", "loss_early", "loss_late", "icl_score", "loss_first_copy", "loss_second_copy")


@dataclass(frozen=True)
class Criterion:
    """When a head counts as having a behaviour at one recorded step."""

    cut: float = CUT  # selectivity of the detector on the probe windows
    repeated_cut: float = CUT  # prefix-matching selectivity on repeated random sequences (induction only)


@dataclass(frozen=True)
class Timeline:
    """A run's probe records as arrays; NaN where a value is undefined (null in the records)."""

    steps: np.ndarray  # (S,) int
    detectors: list[str]  # D
    arrays: dict[str, np.ndarray]  # score, control, selectivity: (S, D, L, H)
    repeated: dict[str, np.ndarray]  # repeated_score, repeated_control, repeated_selectivity: (S, L, H)
    scalars: dict[str, np.ndarray]  # probe_loss, loss_early, loss_late, icl_score, loss_*_copy: (S,)


def probe_records(history: Iterable[dict]) -> list[dict]:
    """The probe records of a checkpoint's history, in step order (empty for a run without a timeline)."""
    return sorted((r for r in history if r.get("kind") == "probe"), key=lambda r: r["iter"])


def _array(values: object) -> np.ndarray:
    """Nested lists with null for undefined -> float array with NaN."""
    return np.array(values, dtype=np.float64) if values is not None else np.array(np.nan)


def timeline(records: Sequence[dict]) -> Timeline:
    """Stack probe records (any order; one per step) into arrays. ValueError when there are none or their
    detectors differ (they never do within one run: the probe set, detectors included, is fixed at its start)."""
    records = sorted(records, key=lambda r: r["iter"])
    if not records:
        raise ValueError("no probe records: the run was trained without a timeline")
    names = list(records[0]["detectors"])
    if any(list(r["detectors"]) != names for r in records):
        raise ValueError("the probe records name different detectors")
    D = len(names)
    L, H = np.asarray(_array(records[0]["score"])).shape[1:]
    stack = lambda key, shape: np.stack([np.broadcast_to(_array(r[key]), shape) for r in records])
    return Timeline(np.array([r["iter"] for r in records]), names,
                    {k: stack(k, (D, L, H)) for k in ARRAYS}, {k: stack(k, (L, H)) for k in REPEATED},
                    {k: np.array([np.nan if r[k] is None else r[k] for r in records], dtype=np.float64) for k in SCALARS})


def past_criterion(t: Timeline, criterion: Criterion = Criterion()) -> np.ndarray:
    """(S, D + 1, L, H) bool: each detector's criterion at each step, then the INDUCTION row."""
    with np.errstate(invalid="ignore"):
        past = np.asarray(t.arrays["selectivity"] >= criterion.cut)  # NaN compares False
        repeated = np.asarray(t.repeated["repeated_selectivity"] >= criterion.repeated_cut)  # (S, L, H)
    gated = induction_detectors(t.detectors)
    past[:, gated] &= repeated[:, None]
    induction = np.asarray(past[:, gated].any(axis=1)) if gated else np.zeros_like(repeated)
    return np.concatenate([past, induction[:, None]], axis=1)


def formation_steps(records: Sequence[dict] | Timeline, criterion: Criterion = Criterion()) -> dict[tuple[str, int, int], int]:
    """{(detector, layer, head): step} for every head past the criterion at the last recorded step: the first
    recorded step from which it stays past it at every later recorded step. Heads that end below it are absent,
    so a run in which nothing forms gives {}. Detector INDUCTION is the rule's induction label."""
    t = records if isinstance(records, Timeline) else timeline(records)
    past = past_criterion(t, criterion)
    # stays[k] = past at k and at every later step: a reversed cumulative AND over the steps
    stays = np.flip(np.logical_and.accumulate(np.flip(past, 0), axis=0), 0)
    first = np.argmax(stays, axis=0)  # (D + 1, L, H): first True; 0 where none (masked by stays[-1])
    names = t.detectors + [INDUCTION]
    return {(names[d], int(l), int(h)): int(t.steps[first[d, l, h]]) for d, l, h in zip(*np.nonzero(stays[-1]))}


def label_series(t: Timeline, label: str, layer: int, head: int) -> np.ndarray:
    """(S,) the selectivity behind one label's criterion for one head: the detector's own; for INDUCTION, at
    each step the best prefix-match detector's selectivity capped by the repeated-sequence selectivity (so it
    is past the cut exactly when the label's criterion is, with equal cuts). NaN where undefined."""
    sel = t.arrays["selectivity"][:, :, layer, head]  # (S, D)
    if label != INDUCTION:
        return sel[:, t.detectors.index(label)]
    gated = induction_detectors(t.detectors)
    if not gated:
        return np.full(len(t.steps), np.nan)
    capped = np.minimum(sel[:, gated], t.repeated["repeated_selectivity"][:, layer, head, None])
    return np.fmax.reduce(capped, axis=1)  # NaN only where every prefix match is undefined


@dataclass(frozen=True)
class Jump:
    """The largest rise of a series between consecutive records k and k + 1."""

    k: int
    before: float
    after: float

    @property
    def rise(self) -> float:
        return self.after - self.before


def largest_jump(series: np.ndarray) -> Optional[Jump]:
    """The largest rise between two consecutive defined values of `series` (S,) (the first of ties); None
    when fewer than two values are defined or the series never rises."""
    rise = np.diff(series)
    if not np.any(rise > 0):  # NaN compares False
        return None
    k = int(np.nanargmax(rise))
    return Jump(k, float(series[k]), float(series[k + 1]))


def loss_change(steps: np.ndarray, loss: np.ndarray, k: int) -> tuple[float, Optional[float]]:
    """The loss's change over records k..k+1 (negative: it fell), and that interval's rate of change per step
    over the mean rate of the intervals on either side (> 1: the loss fell faster than around it, Olsson et
    al.'s bump; None where there is no neighbouring interval or the neighbours' rate is 0)."""
    rate = np.diff(loss) / np.diff(steps)
    around = [rate[j] for j in (k - 1, k + 1) if 0 <= j < len(rate) and np.isfinite(rate[j])]
    ref = float(np.mean(around)) if around else 0.0
    return float(loss[k + 1] - loss[k]), (float(rate[k] / ref) if ref != 0 and np.isfinite(rate[k]) else None)
