"""Script or language? The four-condition attribution of a two-language difference, seeds as the unit.

English is written with its vowels (an alphabet) and unpointed Hebrew mostly without them (an abjad), so a
difference between English and Hebrew models may follow the writing system rather than the language. Two
more conditions separate the two: English without its vowel letters (an abjad) and Hebrew with its vowel
points (an alphabet). With the sign s of the main difference (English minus Hebrew), a finding

- follows the script when it also separates English from English-without-vowels AND pointed from unpointed
  Hebrew, each with sign s (alphabet minus abjad, within one language);
- follows the language when it also holds between English-without-vowels and unpointed Hebrew AND between
  English and pointed Hebrew, each with sign s (one script, the two languages);
- is a mixture of both when all four hold (each factor moves the quantity the same way), neither when
  no pair of contrasts holds (the finding cannot be attributed: e.g. it needs both the script and the
  language, or the seeds are too few), and undefined when no pair holds and the quantity does not exist in
  some condition (vowel attention in English without vowels).

Every contrast is decided by the same seed-level rule as the main comparison (`seedstats.compare_groups`:
the sign in every seed pair, the exact permutation p, the minimum effect). Same-condition groups (a
condition's seeds split in two) go through the rule too, and claim nothing unless something is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from charlens.analysis.measures.seedstats import GroupDifference, compare_defined

# The four conditions by role: (language, script). Corpus names of the default Bibles.
CONDITIONS: dict[str, tuple[str, str]] = {"en": ("en", "alphabet"), "en_novowel": ("en", "abjad"),
                                          "he_niqqud": ("he", "alphabet"), "he": ("he", "abjad")}
MAIN = ("en", "he")  # the comparison whose findings are attributed
# Contrast name -> (group A, group B); every one is read as A minus B, with the sign of MAIN expected.
SCRIPT = {"en vs en_novowel": ("en", "en_novowel"), "he_niqqud vs he": ("he_niqqud", "he")}
LANGUAGE = {"en_novowel vs he": ("en_novowel", "he"), "en vs he_niqqud": ("en", "he_niqqud")}
CONTRASTS = {"en vs he": MAIN, **SCRIPT, **LANGUAGE}
VERDICTS = ("script", "language", "both", "neither", "undefined", "no_finding")


@dataclass(frozen=True)
class Attribution:
    """One quantity across the four conditions."""

    key: str
    values: dict[str, tuple[Optional[float], ...]]  # per condition, per seed (None: undefined for that seed)
    main: Optional[GroupDifference]  # en vs he (None: undefined in some seed)
    contrasts: dict[str, Optional[GroupDifference]]  # every contrast of CONTRASTS, main included
    verdict: str  # one of VERDICTS; no_finding when the main difference does not replicate
    null: dict[str, Optional[GroupDifference]]  # same-condition halves, by condition

    def holds(self, name: str) -> bool:
        """Whether contrast `name` replicates with the sign of the main finding."""
        d = self.contrasts.get(name)
        return bool(self.main is not None and d is not None and d.verdict == "replicated" and d.sign == self.main.sign)

    @property
    def undefined_in(self) -> list[str]:
        """Conditions where the quantity is undefined for some seed."""
        return [c for c, vals in self.values.items() if any(v is None for v in vals)]

    @property
    def null_claims(self) -> list[str]:
        """Conditions whose own seed halves differ by the rule (a warning: the quantity is not stable)."""
        return [c for c, d in self.null.items() if d is not None and d.verdict == "replicated"]

    def to_dict(self) -> dict:
        return {"key": self.key, "verdict": self.verdict, "values": {c: list(v) for c, v in self.values.items()},
                "contrasts": {n: None if d is None else {**d.to_dict(), "holds": self.holds(n)}
                              for n, d in self.contrasts.items()},
                "null": {c: None if d is None else d.verdict for c, d in self.null.items()}, "null_claims": self.null_claims}


def halves(values: Sequence) -> tuple[list, list]:
    """A condition's seeds split into its first and second half (the same-condition null comparison)."""
    k = len(values) // 2
    return list(values[:k]), list(values[k:2 * k])


def attribute(key: str, values: Mapping[str, Sequence[Optional[float]]], alpha: float, min_effect: float) -> Attribution:
    """Attribute one quantity: `values` holds the per-seed values of each of the four conditions (None where
    the quantity is undefined for a seed)."""
    missing = [c for c in CONDITIONS if c not in values]
    if missing:
        raise ValueError(f"the study needs all four conditions; missing: {', '.join(missing)}")
    contrasts = {name: compare_defined(values[a], values[b], alpha, min_effect) for name, (a, b) in CONTRASTS.items()}
    null = {c: compare_defined(*halves(values[c]), alpha, min_effect) for c in CONDITIONS}
    main = contrasts["en vs he"]
    per_condition = {c: tuple(values[c]) for c in CONDITIONS}
    partial = Attribution(key, per_condition, main, contrasts, "no_finding", null)
    if main is None or main.verdict != "replicated":
        return partial
    script = all(partial.holds(n) for n in SCRIPT)
    language = all(partial.holds(n) for n in LANGUAGE)
    undefined = any(contrasts[n] is None for n in (*SCRIPT, *LANGUAGE))
    verdict = ("both" if script and language else "script" if script else "language" if language
               else "undefined" if undefined else "neither")
    return Attribution(key, per_condition, main, contrasts, verdict, null)
