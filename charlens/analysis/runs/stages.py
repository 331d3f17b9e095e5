"""Findings across training: every quantity of a group comparison at every recorded stage, and the steps
over which each finding holds.

A model's snapshots (`train.py --snapshots N`: `<name>.step<k>.pt`) are analysed with the same analyzer on
the same windows as the model itself, so each seed has the comparison's quantities (`groups.model_quantities`)
at each snapshot step and at its final step. At every step shared by all models, each quantity goes through
the same seed-level rule as the final comparison (`seedstats.compare_groups`). A finding holds at a step
when it replicates there with the same sign; its timing says over which steps:
- throughout: at every recorded step;
- late: from some later step to the end (not at the first steps);
- early: at some steps but not at the final one (a finding of models caught early in training);
- intermittent: at steps that are not one run of consecutive recorded steps;
- flips: replicated with one sign at some steps and the other at others.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from charlens.analysis.measures.seedstats import GroupDifference
from charlens.analysis.runs.groups import compare_quantity

# Per group, per seed: {step: {quantity key: value or None}} (groups.model_quantities of that stage).
StageValues = Sequence[Sequence[dict[int, dict[str, Optional[float]]]]]
TIMINGS = ("throughout", "late", "early", "intermittent", "flips")


@dataclass(frozen=True)
class StageQuantity:
    key: str
    label: str
    unit: str
    steps: tuple[int, ...]
    values: tuple[tuple[tuple[Optional[float], ...], ...], tuple[tuple[Optional[float], ...], ...]]  # group, seed, step
    differences: tuple[Optional[GroupDifference], ...]  # per step; None where undefined in some seed

    @property
    def held(self) -> tuple[tuple[int, int], ...]:
        """(step, sign) of every step where the difference replicates."""
        return tuple((s, d.sign) for s, d in zip(self.steps, self.differences) if d is not None and d.verdict == "replicated")

    @property
    def timing(self) -> Optional[str]:
        """One of TIMINGS, or None when the finding holds at no recorded step."""
        held = self.held
        if not held:
            return None
        if len({sign for _, sign in held}) > 1:
            return "flips"
        at = [self.steps.index(s) for s, _ in held]
        if at != list(range(at[0], at[-1] + 1)):
            return "intermittent"
        if at[-1] != len(self.steps) - 1:
            return "early"
        return "throughout" if at[0] == 0 else "late"

    def to_dict(self) -> dict:
        return {"key": self.key, "label": self.label, "unit": self.unit, "steps": list(self.steps),
                "values": [[list(seed) for seed in group] for group in self.values],
                "verdicts": [None if d is None else d.verdict for d in self.differences],
                "signs": [None if d is None else d.sign for d in self.differences],
                "p": [None if d is None else d.p for d in self.differences],
                "held_at": [s for s, _ in self.held], "timing": self.timing}


@dataclass(frozen=True)
class StageComparison:
    names: tuple[str, str]
    steps: tuple[int, ...]  # recorded in every model of both groups, ascending; the last is the final step
    quantities: tuple[StageQuantity, ...]  # every quantity defined at some step
    findings: tuple[str, ...]  # one sentence per quantity that holds at some step
    notes: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"groups": list(self.names), "steps": list(self.steps), "findings": list(self.findings),
                "notes": list(self.notes), "quantities": [q.to_dict() for q in self.quantities]}


def _steps_text(steps: Sequence[int]) -> str:
    return ", ".join(f"{s:,}" for s in steps)


def sentence(q: StageQuantity, names: tuple[str, str]) -> str:
    """What the recorded stages say about one quantity that holds at some step."""
    held = q.held
    higher = {sign: names[0] if sign > 0 else names[1] for _, sign in held}
    not_held = [s for s in q.steps if s not in {h for h, _ in held}]
    timing = q.timing
    if timing == "flips":
        parts = [f"higher in {higher[sign]} at steps {_steps_text([s for s, g in held if g == sign])}" for sign in (1, -1)]
        return f"{q.label}: the difference changes sign over training: {'; '.join(parts)}."
    who = higher[held[0][1]]
    at = _steps_text([s for s, _ in held])
    text = {
        "throughout": f"higher in {who} at every recorded step ({at})",
        "late": f"higher in {who} from step {held[0][0]:,} on ({at}), not before ({_steps_text(not_held)}): a late finding",
        "early": f"higher in {who} only at steps {at}, not at the final step {q.steps[-1]:,}: an early finding "
                 "that does not last",
        "intermittent": f"higher in {who} at steps {at} but not at {_steps_text(not_held)}: intermittent",
    }[timing or ""]
    return f"{q.label}: {text}."


def common_steps(stage_values: StageValues) -> tuple[int, ...]:
    """The steps recorded for every model of both groups, ascending."""
    sets = [set(seed) for group in stage_values for seed in group]
    return tuple(sorted(set.intersection(*sets))) if sets else ()


def compare_stages(names: tuple[str, str], stage_values: StageValues, alpha: float = 0.05) -> StageComparison:
    """Each quantity's seed-level comparison at every step shared by all models of both groups."""
    steps = common_steps(stage_values)
    keys = list(dict.fromkeys(k for group in stage_values for seed in group for s in steps for k in seed[s]))
    quantities = []
    for key in keys:
        values = tuple(tuple(tuple(seed[s].get(key) for s in steps) for seed in group) for group in stage_values)
        at = [compare_quantity(key, [seed[k] for seed in values[0]], [seed[k] for seed in values[1]], alpha)
              for k in range(len(steps))]
        if any(q.difference is not None for q in at):
            quantities.append(StageQuantity(key, at[0].label, at[0].unit, steps, values,  # type: ignore[arg-type]
                                            tuple(q.difference for q in at)))
    findings = tuple(sentence(q, names) for q in quantities if q.timing is not None)
    notes = []
    if len(steps) < 2:
        notes.append("Fewer than two training stages are recorded in every model (train with --snapshots N to keep "
                     "N log-spaced stages), so nothing can be said about when a finding holds.")
    missing = sorted({s for group in stage_values for seed in group for s in seed} - set(steps))
    if missing:
        notes.append(f"Steps recorded in some models only, left out: {_steps_text(missing)}.")
    return StageComparison(names, steps, tuple(quantities), findings, tuple(notes))
