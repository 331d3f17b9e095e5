"""A checkpoint's recorded timeline (training/timeline.py) read against the analysis's final labels: when
each validated head's behaviour formed on the probe set, where its selectivity rose most sharply, and
what the loss did meanwhile. A checkpoint without a timeline (trained before timelines existed, or with
--no-timeline) gives None, and the report says so in one line.

    timeline = timeline_result(state["history"], result_heads, cut)   # Optional[TimelineResult]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from charlens.analysis.measures.rule import INDUCTION
from charlens.analysis.measures.timeline import (Criterion, Timeline, formation_steps, label_series, largest_jump, loss_change,
                                        probe_records, timeline)

if TYPE_CHECKING:  # results.py holds this module's result: no import cycle at run time
    from charlens.analysis.runs.results import HeadVerdict

NO_TIMELINE = ("no timeline: the checkpoint was trained without one (before timelines existed, or with --no-timeline); "
               "retrain to see when its heads formed")
PHASE_RISE = 0.2  # a rise of a label's selectivity between two records at least this large is a phase change
DIGITS = 4


def _listed(a: np.ndarray) -> list:
    """Rounded floats, None for NaN (JSON has no NaN)."""
    return [None if not np.isfinite(v) else round(float(v), DIGITS) for v in a]


@dataclass(frozen=True)
class PhaseChange:
    """The largest rise of one head's label selectivity between consecutive records, and the probe loss then."""

    from_step: int
    to_step: int
    before: float
    after: float
    loss_before: float  # the probe windows' mean loss (nats per character) at from_step and to_step
    loss_after: float
    bump: Optional[float]  # the loss's rate of change per step in the interval over that of its neighbours

    def to_dict(self) -> dict:
        return {k: (round(v, DIGITS) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class HeadTimeline:
    """One validated label of one head over training."""

    layer: int
    head: int
    label: str
    primary: bool  # the head's label in the head table (else another detector it also validates)
    selectivity: np.ndarray  # (S,) at the recorded steps
    formed: Optional[int]  # formation step: first recorded step from which it stays past the cut (None: it does not)
    phase: Optional[PhaseChange]  # None: no rise of PHASE_RISE or more between two records

    def sentence(self) -> str:
        """What the numbers say, in one sentence."""
        who = f"head {self.layer}.{self.head}'s {self.label} selectivity"
        formed = f"formed at step {self.formed}" if self.formed is not None else "not past the cut on the probe set at the end"
        p = self.phase
        if p is None:
            return f"{who} never rose by {PHASE_RISE} or more between two records ({formed})."
        fell = "fell" if p.loss_after < p.loss_before else "rose"
        bump = "" if p.bump is None else f", {p.bump:.1f}x its rate per step in the intervals on either side"
        return (f"{who} rose from {p.before:.2f} to {p.after:.2f} between steps {p.from_step} and {p.to_step} ({formed}), "
                f"while the probe-set loss {fell} from {p.loss_before:.3f} to {p.loss_after:.3f}{bump}.")

    def to_dict(self) -> dict:
        return {"layer": self.layer, "head": self.head, "label": self.label, "primary": self.primary,
                "selectivity": _listed(self.selectivity), "formed": self.formed,
                "phase_change": self.phase.to_dict() if self.phase else None, "sentence": self.sentence()}


@dataclass(frozen=True)
class TimelineResult:
    """A run's timeline as the report shows it."""

    steps: np.ndarray  # (S,) recorded steps
    cut: float
    heads: tuple[HeadTimeline, ...]  # every validated label of every validated head, primary first
    strongest: dict[str, np.ndarray]  # label -> (S,) the largest selectivity of any head at each step
    every_head: dict[str, np.ndarray]  # each validated head's primary label -> (L, H, S): every head's selectivity for it
    losses: dict[str, np.ndarray]  # probe_loss, icl_score, loss_first_copy, loss_second_copy: (S,)
    train_loss: tuple[np.ndarray, np.ndarray]  # (steps, loss) of the history's step records
    val_loss: tuple[np.ndarray, np.ndarray]  # (steps, loss) of its evaluations

    @property
    def formation(self) -> dict[str, Optional[int]]:
        """Primary label -> the earliest formation step of a head with it (None: none of them formed)."""
        out: dict[str, Optional[int]] = {}
        for h in self.heads:
            if h.primary:
                known = [s for s in (out.get(h.label), h.formed) if s is not None]
                out[h.label] = min(known) if known else None
        return out

    def to_dict(self) -> dict:
        return {"recorded": True, "steps": self.steps.tolist(), "cut": self.cut, "heads": [h.to_dict() for h in self.heads],
                "formation": self.formation, "strongest": {k: _listed(v) for k, v in self.strongest.items()},
                "every_head": {k: [[_listed(s) for s in row] for row in v] for k, v in self.every_head.items()},
                "losses": {k: _listed(v) for k, v in self.losses.items()},
                "train_loss": {"steps": self.train_loss[0].tolist(), "loss": _listed(self.train_loss[1])},
                "val_loss": {"steps": self.val_loss[0].tolist(), "loss": _listed(self.val_loss[1])}}


def _every_head(t: Timeline) -> dict[str, np.ndarray]:
    """Every head's selectivity series (L, H, S) for every detector and induction."""
    L, H = t.arrays["selectivity"].shape[2:]
    return {label: np.stack([np.stack([label_series(t, label, l, h) for h in range(H)]) for l in range(L)])
            for label in [*t.detectors, INDUCTION]}


def _curve(history: Sequence[dict], kind: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [(r["iter"], r[key]) for r in history if r.get("kind") == kind]
    return np.array([s for s, _ in rows], dtype=np.int64), np.array([v for _, v in rows], dtype=np.float64)


def timeline_result(history: Sequence[dict], heads: Sequence[HeadVerdict], cut: float) -> Optional[TimelineResult]:
    """The timeline of a checkpoint's history for the validated heads in `heads`; None without probe records."""
    records = probe_records(history)
    if not records:
        return None
    t = timeline(records)
    formed = formation_steps(t, Criterion(cut, cut))
    probe_loss = t.scalars["probe_loss"]
    every = _every_head(t)
    rows = []
    for v in heads:
        if not v.validated:
            continue
        labels = [v.behaviour] + [b for b in v.behaviours if b != v.behaviour]
        for label in labels:
            if label != INDUCTION and label not in t.detectors:  # a detector the run did not record
                continue
            series = every[label][v.layer, v.head]
            jump = largest_jump(series)
            phase = None
            if jump is not None and jump.rise >= PHASE_RISE:
                change, bump = loss_change(t.steps, probe_loss, jump.k)
                phase = PhaseChange(int(t.steps[jump.k]), int(t.steps[jump.k + 1]), jump.before, jump.after,
                                    float(probe_loss[jump.k]), float(probe_loss[jump.k]) + change, bump)
            rows.append(HeadTimeline(v.layer, v.head, label, label == v.behaviour, series,
                                     formed.get((label, v.layer, v.head)), phase))
    strongest = {k: np.fmax.reduce(v.reshape(-1, v.shape[-1]), axis=0) for k, v in every.items()}  # best head per step
    primaries = dict.fromkeys(r.label for r in rows if r.primary)
    return TimelineResult(t.steps, cut, tuple(rows), strongest, {k: every[k] for k in primaries},
                          {k: t.scalars[k] for k in ("probe_loss", "icl_score", "loss_first_copy", "loss_second_copy")},
                          _curve(history, "step", "loss"), _curve(history, "eval", "val_loss"))


def timeline_entry(result: Optional[TimelineResult]) -> dict:
    """summary.json's `timeline`: the result, or a note that the checkpoint has none."""
    return result.to_dict() if result is not None else {"recorded": False, "note": NO_TIMELINE}
