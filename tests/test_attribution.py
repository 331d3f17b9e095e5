"""Script or language, on hand-made per-seed values of the four conditions: a script effect, a language effect,
both, neither, no main finding, and same-condition null groups that claim nothing."""
from __future__ import annotations

import pytest

from charlens.analysis.measures.attribution import CONTRASTS, attribute, halves

SEEDS = 4
ALPHA, MIN_EFFECT = 0.05, 0.1


def seeds(centre: float) -> list[float]:
    """Four seeds tightly around `centre` (spread 0.03, far below the gaps the tests build)."""
    return [centre + 0.01 * k for k in range(SEEDS)]


def conditions(en: float, en_novowel: float, he_niqqud: float, he: float) -> dict[str, list[float]]:
    return {"en": seeds(en), "en_novowel": seeds(en_novowel), "he_niqqud": seeds(he_niqqud), "he": seeds(he)}


def test_a_script_effect_follows_the_writing_system():
    # Written vowels raise the quantity by 1 whatever the language: alphabets (en, he_niqqud) 2, abjads 1.
    a = attribute("entropy", conditions(en=2, en_novowel=1, he_niqqud=2, he=1), ALPHA, MIN_EFFECT)
    assert a.verdict == "script"
    assert [n for n in CONTRASTS if a.holds(n)] == ["en vs he", "en vs en_novowel", "he_niqqud vs he"]
    assert a.contrasts["en_novowel vs he"].verdict == "not_replicated"  # same script, equal


def test_a_language_effect_holds_within_each_script():
    a = attribute("distance", conditions(en=1, en_novowel=1, he_niqqud=3, he=3), ALPHA, MIN_EFFECT)
    assert a.verdict == "language" and a.main.sign == -1  # higher in Hebrew
    assert a.holds("en_novowel vs he") and a.holds("en vs he_niqqud")
    assert not a.holds("en vs en_novowel") and not a.holds("he_niqqud vs he")


def test_script_and_language_together_are_reported_as_a_mixture():
    # additive: +1 for written vowels, +2 for English
    a = attribute("offset:1", conditions(en=3, en_novowel=2, he_niqqud=1, he=0), ALPHA, MIN_EFFECT)
    assert a.verdict == "both" and all(a.holds(n) for n in CONTRASTS)


@pytest.mark.parametrize("values", [
    conditions(en=2, en_novowel=1, he_niqqud=1, he=1),  # only English with vowels differs: an interaction
    conditions(en=2, en_novowel=2, he_niqqud=2, he=1),  # only unpointed Hebrew differs
    conditions(en=2, en_novowel=0, he_niqqud=1, he=1),  # script within English only
])
def test_a_finding_that_fits_neither_pattern_is_attributed_to_neither(values):
    a = attribute("entropy", values, ALPHA, MIN_EFFECT)
    assert a.main.verdict == "replicated" and a.verdict == "neither"


def test_a_contrast_with_the_opposite_sign_does_not_count():
    # en vs en_novowel and he_niqqud vs he both replicate, but the English one against the main sign
    a = attribute("entropy", conditions(en=2, en_novowel=3, he_niqqud=2, he=1), ALPHA, MIN_EFFECT)
    assert a.contrasts["en vs en_novowel"].verdict == "replicated" and not a.holds("en vs en_novowel")
    assert a.verdict == "neither"


def test_no_main_finding_attributes_nothing_and_null_groups_claim_nothing():
    same = [1.0, 1.3, 1.1, 1.2]
    a = attribute("entropy", {c: same for c in ("en", "en_novowel", "he_niqqud", "he")}, ALPHA, MIN_EFFECT)
    assert a.verdict == "no_finding" and not any(a.holds(n) for n in CONTRASTS)
    # Eight seeds per condition from one distribution: the halves (4 vs 4, which could reach p = 0.029) claim nothing.
    eight = {c: [1.0, 1.3, 1.1, 1.25, 1.2, 1.05, 1.15, 1.35] for c in ("en", "en_novowel", "he_niqqud", "he")}
    b = attribute("entropy", eight, ALPHA, MIN_EFFECT)
    assert halves(eight["en"]) == ([1.0, 1.3, 1.1, 1.25], [1.2, 1.05, 1.15, 1.35])
    assert {d.verdict for d in b.null.values()} == {"not_replicated"} and b.null_claims == []
    # A condition whose halves do separate is named: its quantity is not stable across seeds.
    drift = {**eight, "he": [1.0, 1.05, 1.1, 1.15, 2.0, 2.05, 2.1, 2.15]}
    assert attribute("entropy", drift, ALPHA, MIN_EFFECT).null_claims == ["he"]


def test_undefined_values_and_missing_conditions():
    values = conditions(en=2, en_novowel=1, he_niqqud=2, he=1)
    values["en_novowel"][0] = None  # e.g. the depth of a behaviour one seed lacks
    a = attribute("depth:space", values, ALPHA, MIN_EFFECT)
    assert a.contrasts["en vs en_novowel"] is None and a.verdict == "undefined" and a.undefined_in == ["en_novowel"]
    values["en_novowel"] = [1.0 + 0.01 * k for k in range(4)]  # defined again: the script pattern holds in full
    values["he"][1] = None  # but the main difference is now undefined: nothing to attribute
    assert attribute("depth:space", values, ALPHA, MIN_EFFECT).verdict == "no_finding"
    with pytest.raises(ValueError, match="missing: he_niqqud"):
        attribute("entropy", {k: v for k, v in values.items() if k != "he_niqqud"}, ALPHA, MIN_EFFECT)
