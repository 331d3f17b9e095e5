"""How the induction circuit formed: the recorded timeline (training/timeline.py) of the final model's induction
head and of the earlier head it reads through K-composition, set beside the loss on the second copy.

For the induction head (the final analysis's `induction` head with the highest held-out selectivity) and its
partner (the earlier-layer head with the highest final K-composition into it), at every recorded step:
- previous: the partner's previous_char selectivity on the probe windows (the previous-character head forming);
- match: the head's prefix-matching selectivity on repeated random sequences (attention on the token after
  the match, beyond a one-character matcher);
- k_composition and qk_match: partner -> head, read off the weights (analysis.measures.circuits);
- copy: the head's OV copying score;
- the loss on the first and second copy of the repeated sequences.
Beside them, from the same timeline: the step from which the partner's previous_char criterion holds, and the
formation steps of the final model's one-letter matchers (`prefix_match_1` heads), which can find most copies before
any head matches two letters (the `--task-follow` task: docs/timeline.md), so that a late induction head is not read
as a late detector.
The head's formation step is the timeline's (measures.timeline.formation_steps: from there on its induction
criterion holds at every record); the loss drop step is the first record at which the second-copy loss has
fallen half-way from its highest value to its final one; their gap says whether the head formed when the loss
fell (Olsson et al. 2022's co-occurrence). The phase change is the largest rise of the head's induction
selectivity between two consecutive records (measures.timeline.largest_jump).
A run on the synthetic task also logs the task's second-copy accuracy at every evaluation (training records of
kind "eval"); its largest rise between two evaluations is reported beside it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from charlens.analysis.measures.rule import INDUCTION
from charlens.analysis.measures.timeline import (Criterion, Jump, formation_steps, label_series, largest_jump,
                                                 probe_records, timeline)

if TYPE_CHECKING:  # results.py holds this module's result
    from charlens.analysis.runs.circuits import CircuitResult
    from charlens.analysis.runs.results import HeadVerdict

DIGITS = 4
ONE_LETTER = "prefix_match_1"  # attends to the letter after an earlier occurrence of the current one
Head = tuple[int, int]


def _listed(a: np.ndarray) -> list:
    return [None if not np.isfinite(v) else round(float(v), DIGITS) for v in a]


def half_drop_step(steps: np.ndarray, loss: np.ndarray) -> Optional[int]:
    """The first recorded step after the loss's highest value at which it is at or below the midpoint between that
    value and the final one; None when it never falls or is undefined."""
    if not np.isfinite(loss).any() or not np.isfinite(loss[-1]):
        return None
    top = int(np.nanargmax(loss))
    if not loss[-1] < loss[top]:
        return None
    mid = (loss[top] + loss[-1]) / 2
    below = np.flatnonzero(np.nan_to_num(loss[top:], nan=np.inf) <= mid)
    return int(steps[top + below[0]])


def _jump_dict(steps: np.ndarray, jump: Optional[Jump]) -> Optional[dict]:
    return None if jump is None else {"from_step": int(steps[jump.k]), "to_step": int(steps[jump.k + 1]),
                                      "before": round(jump.before, DIGITS), "after": round(jump.after, DIGITS)}


@dataclass(frozen=True)
class FormationResult:
    head: Head
    partner: Optional[Head]
    steps: np.ndarray  # (S,) recorded steps
    series: dict[str, np.ndarray]  # previous, match, k_composition, qk_match, copy, loss_first_copy, loss_second_copy
    formed: Optional[int]
    loss_drop: Optional[int]
    phase: Optional[Jump]  # of the head's induction selectivity
    accuracy: tuple[np.ndarray, np.ndarray]  # (steps, second-copy accuracy) of the task's evaluations; empty otherwise
    partner_formed: Optional[int] = None  # the partner's previous_char criterion holds from this step on
    matchers: tuple[tuple[Head, Optional[int]], ...] = ()  # the final prefix_match_1 heads and their formation steps

    @property
    def gap(self) -> Optional[int]:
        return None if self.formed is None or self.loss_drop is None else self.formed - self.loss_drop

    def accuracy_jump(self) -> Optional[Jump]:
        return largest_jump(self.accuracy[1]) if len(self.accuracy[1]) > 1 else None

    def sentence(self) -> str:
        l, h = self.head
        partner = f" reading L{self.partner[0]}H{self.partner[1]} through K-composition" if self.partner else ""
        formed = f"formed at step {self.formed}" if self.formed is not None else "is not past the cut at every record to the end"
        formed += self._beside()
        drop = (f"the second-copy loss fell half-way at step {self.loss_drop}" if self.loss_drop is not None
                else "the second-copy loss never fell")
        gap = f" (gap {self.gap:+d} steps)" if self.gap is not None else ""
        p = self.phase
        phase = (f"; its selectivity rose most, from {p.before:.2f} to {p.after:.2f}, between steps {self.steps[p.k]} and "
                 f"{self.steps[p.k + 1]}" if p is not None else "")
        a = self.accuracy_jump()
        acc = (f"; the task's second-copy accuracy rose most, from {a.before:.2f} to {a.after:.2f}, between evaluations at "
               f"steps {self.accuracy[0][a.k]} and {self.accuracy[0][a.k + 1]}" if a is not None else "")
        return f"Induction head L{l}H{h}{partner} {formed}; {drop}{gap}{phase}{acc}."

    def _beside(self) -> str:
        """' (L0H2 a previous_char head from step 790; one-letter matchers L1H0 from 790, L1H2 from 790)', or ''."""
        parts = []
        if self.partner and self.partner_formed is not None:
            parts.append(f"L{self.partner[0]}H{self.partner[1]} a previous_char head from step {self.partner_formed}")
        if self.matchers:
            parts.append("one-letter matchers " + ", ".join(
                f"L{l}H{h} from {step}" if step is not None else f"L{l}H{h} (no formation step)" for (l, h), step in self.matchers))
        return f" ({'; '.join(parts)})" if parts else ""

    def to_dict(self) -> dict:
        a = self.accuracy_jump()
        return {"head": list(self.head), "partner": list(self.partner) if self.partner else None,
                "partner_previous_char_formed": self.partner_formed,
                "one_letter_matchers": [{"head": list(m), "formed": step} for m, step in self.matchers],
                "steps": self.steps.tolist(), "series": {k: _listed(v) for k, v in self.series.items()},
                "formed": self.formed, "loss_drop": self.loss_drop, "gap": self.gap,
                "phase_change": _jump_dict(self.steps, self.phase),
                "accuracy": {"steps": self.accuracy[0].tolist(), "second_copy": _listed(self.accuracy[1]),
                             "largest_rise": _jump_dict(self.accuracy[0], a)},
                "sentence": self.sentence()}


def _eval_accuracy(history: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    rows = [(r["iter"], r["second_copy_accuracy"]) for r in history
            if r.get("kind") == "eval" and r.get("second_copy_accuracy") is not None]
    return np.array([s for s, _ in rows], dtype=np.int64), np.array([v for _, v in rows], dtype=np.float64)


def formation_result(history: Sequence[dict], heads: Sequence[HeadVerdict], circuits: Optional[CircuitResult],
                     cut: float) -> Optional[FormationResult]:
    """The formation of the final model's strongest induction head; None without a timeline or an induction head."""
    records = probe_records(history)
    induction = [v for v in heads if v.validated and v.behaviour == INDUCTION]
    if not records or not induction:
        return None
    best = max(induction, key=lambda v: v.heldout_selectivity)
    head = (best.layer, best.head)
    partner = circuits.source("k_composition", *head)[0] if circuits is not None else None
    t = timeline(records)
    nan = np.full(len(t.steps), np.nan)
    pair = lambda key: t.circuits[key][:, partner[0], partner[1], head[0], head[1]] if partner else nan
    previous = t.arrays["selectivity"][:, t.detectors.index("previous_char"), partner[0], partner[1]] \
        if partner and "previous_char" in t.detectors else nan
    series = {"previous": previous, "match": t.repeated["repeated_selectivity"][:, head[0], head[1]],
              "k_composition": pair("k_composition"), "qk_match": pair("qk_match"),
              "copy": t.circuits["ov_copying"][:, head[0], head[1]],
              "loss_first_copy": t.scalars["loss_first_copy"], "loss_second_copy": t.scalars["loss_second_copy"]}
    steps = formation_steps(t, Criterion(cut, cut))
    matchers = tuple(((v.layer, v.head), steps.get((ONE_LETTER, v.layer, v.head)))
                     for v in heads if v.validated and v.behaviour == ONE_LETTER)
    return FormationResult(head, partner, t.steps, series, steps.get((INDUCTION, *head)),
                           half_drop_step(t.steps, series["loss_second_copy"]),
                           largest_jump(label_series(t, INDUCTION, *head)), _eval_accuracy(history),
                           steps.get(("previous_char", *partner)) if partner else None, matchers)
