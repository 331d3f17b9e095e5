"""The script-control study: English vs Hebrew, and whether each finding follows the script or the language.

Seeds of four conditions (measures.attribution.CONDITIONS: English, English without vowel letters, Hebrew with
niqqud, unpointed Hebrew) are analysed on the same held-out verses. The English-vs-Hebrew comparison is the
ordinary group comparison (`groups.compare_groups`); each of its quantities is then attributed with the four
conditions' per-seed values (`attribution.attribute`), and, when snapshots were analysed, followed across
training (`stages.compare_stages`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from charlens.analysis.measures.attribution import CONDITIONS, MAIN, VERDICTS, Attribution, attribute
from charlens.analysis.runs.groups import GroupComparison, compare_groups, model_quantities, quantity_kind
from charlens.analysis.runs.results import Examples
from charlens.analysis.runs.stages import StageComparison, StageValues, compare_stages

VERDICT_TEXT = {
    "script": "follows the script: it also separates English from English without vowels and pointed from unpointed "
              "Hebrew, in the direction of the writing system",
    "language": "follows the language: it also holds between English without vowels and unpointed Hebrew and between "
                "English and pointed Hebrew",
    "both": "a mixture: it follows the script and the language (all four contrasts hold, the same way)",
    "neither": "neither: the contrasts that hold fit neither pattern (an interaction, or too few seeds)",
    "undefined": "cannot be attributed: the quantity does not exist in {undefined}",
}


@dataclass(frozen=True)
class StudyResult:
    conditions: dict[str, tuple[str, ...]]  # condition -> its models' names
    alpha: float
    main: GroupComparison  # en vs he
    attributions: tuple[Attribution, ...]  # every quantity of the main comparison, in its order
    stages: Optional[StageComparison]  # en vs he at every recorded training stage (analyze.py --stages)
    notes: tuple[str, ...]

    def labels(self) -> dict[str, str]:
        return {q.key: q.label for q in self.main.quantities}

    def findings(self) -> list[tuple[Attribution, str]]:
        """(attribution, sentence) of every replicated English-vs-Hebrew finding, script ones first."""
        labels = self.labels()
        held = [a for a in self.attributions if a.verdict != "no_finding"]
        held.sort(key=lambda a: VERDICTS.index(a.verdict))
        out = []
        for a in held:
            higher = MAIN[0] if a.main is not None and a.main.sign > 0 else MAIN[1]
            contrasts = ", ".join(f"{n} {'holds' if a.holds(n) else 'undefined' if a.contrasts[n] is None else 'does not'}"
                                  for n in a.contrasts if n != "en vs he")
            caution = (f" Caution: the same-condition halves of {', '.join(a.null_claims)} differ too."
                       if a.null_claims else "")
            verdict = VERDICT_TEXT[a.verdict].format(undefined=", ".join(a.undefined_in))
            out.append((a, f"{labels[a.key]}: higher in {higher}; {verdict} ({contrasts}).{caution}"))
        return out

    def to_dict(self) -> dict:
        return {"conditions": {c: list(m) for c, m in self.conditions.items()}, "alpha": self.alpha,
                "notes": list(self.notes), "findings": [s for _, s in self.findings()],
                "attribution": [{"label": self.labels()[a.key], **a.to_dict()} for a in self.attributions],
                "stages": None if self.stages is None else self.stages.to_dict()}


def run_study(summaries: Mapping[str, Sequence[dict]], examples: Mapping[str, Sequence[Optional[Examples]]],
              alpha: float = 0.05, stage_values: Optional[StageValues] = None) -> StudyResult:
    """The study from every model's summary (summary.json contract), by condition; `stage_values`: the English
    and Hebrew models' quantities at each recorded step (stages.StageValues), or None."""
    missing = [c for c in CONDITIONS if not summaries.get(c)]
    if missing:
        raise ValueError(f"the study needs models of all four conditions; missing: {', '.join(missing)}")
    main = compare_groups(MAIN, (summaries[MAIN[0]], summaries[MAIN[1]]), (examples[MAIN[0]], examples[MAIN[1]]), alpha)
    numbers = {c: [model_quantities(s) for s in summaries[c]] for c in CONDITIONS}
    attributions = tuple(attribute(q.key, {c: [m.get(q.key) for m in numbers[c]] for c in CONDITIONS}, alpha,
                                   quantity_kind(q.key)[0].min_effect) for q in main.quantities)
    notes = list(main.notes)
    small = [c for c in CONDITIONS if len(summaries[c]) < 8]
    if small:
        notes.append(f"Same-condition null groups split each condition's seeds in half; with fewer than 8 seeds "
                     f"({', '.join(small)}) a half cannot reach p <= {alpha}, so they can claim nothing by construction.")
    stages = compare_stages(MAIN, stage_values, alpha) if stage_values is not None else None
    return StudyResult({c: tuple(s.get("name", "?") for s in summaries[c]) for c in CONDITIONS}, alpha, main,
                       attributions, stages, tuple(notes))
