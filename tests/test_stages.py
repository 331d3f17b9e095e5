"""Findings across training on hand-made per-stage values: the seed-level rule at every step shared by all
models, and the timing of each finding (throughout, late, early, intermittent, flips)."""
from __future__ import annotations

from charlens.analysis.runs.stages import common_steps, compare_stages

STEPS = (10, 100, 1000, 3000)
A_HIGH = [5.0, 5.2, 5.4, 5.6]  # every A seed above every B seed, by more than any minimum effect
B_LOW = [1.0, 1.2, 1.4, 1.6]
MIXED = ([1.0, 3.0, 1.2, 3.2], [3.1, 1.1, 3.3, 1.3])  # the groups overlap: nothing replicates


def stage_values(per_step: dict[str, list[tuple[list[float], list[float]]]]) -> list[list[dict]]:
    """Per group, per seed: {step: {key: value}} from, per key, one (A seeds, B seeds) pair per step."""
    groups: list[list[dict]] = [[{s: {} for s in STEPS} for _ in range(4)] for _ in range(2)]
    for key, pairs in per_step.items():
        for s, pair in zip(STEPS, pairs):
            for g in range(2):
                for seed, v in enumerate(pair[g]):
                    groups[g][seed][s][key] = v
    return groups


def test_each_finding_gets_the_steps_over_which_it_holds_and_its_timing():
    up, down, none = (A_HIGH, B_LOW), (B_LOW, A_HIGH), MIXED
    values = stage_values({
        "distance": [up, up, up, up],  # throughout
        "entropy": [none, none, up, up],  # late: from step 1,000 on
        "validated_heads": [none, up, up, none],  # early: gone at the final step
        "offset:1": [up, none, up, up],  # intermittent
        "offset:2": [up, up, down, down],  # flips
        "offset:3": [none, none, none, none],  # never
    })
    cmp = compare_stages(("en", "he"), values)
    assert cmp.steps == STEPS
    got = {q.key: (q.timing, [s for s, _ in q.held]) for q in cmp.quantities}
    assert got == {"distance": ("throughout", [10, 100, 1000, 3000]), "entropy": ("late", [1000, 3000]),
                   "validated_heads": ("early", [100, 1000]), "offset:1": ("intermittent", [10, 1000, 3000]),
                   "offset:2": ("flips", [10, 100, 1000, 3000]), "offset:3": (None, [])}
    text = "\n".join(cmp.findings)
    assert "mean attention distance: higher in en at every recorded step (10, 100, 1,000, 3,000)." in text
    assert "higher in en from step 1,000 on (1,000, 3,000), not before (10, 100): a late finding" in text
    assert "higher in en only at steps 100, 1,000, not at the final step 3,000: an early finding" in text
    assert "higher in en at steps 10, 1,000, 3,000 but not at 100: intermittent" in text
    assert "higher in en at steps 10, 100; higher in he at steps 1,000, 3,000" in text
    assert len(cmp.findings) == 5  # nothing said about offset 3
    q = {q.key: q for q in cmp.quantities}["entropy"]
    assert q.to_dict()["verdicts"] == ["not_replicated", "not_replicated", "replicated", "replicated"]
    assert q.values[0][1] == (3.0, 3.0, 5.2, 5.2)  # group A, seed 1, at each step


def test_the_rule_is_the_final_comparisons_rule_at_every_step():
    # Same sign in every pair at every step, but 0.3 apart: below the distance's minimum effect (0.5 characters)
    # at the first two steps; three seeds per group can never reach p <= 0.05.
    small = ([2.0, 2.1, 2.2, 2.3], [1.7, 1.8, 1.85, 1.9])
    values = stage_values({"distance": [small, small, (A_HIGH, B_LOW), (A_HIGH, B_LOW)]})
    q = compare_stages(("A", "B"), values).quantities[0]
    assert [d.verdict for d in q.differences] == ["below_min_effect", "below_min_effect", "replicated", "replicated"]
    three = [[{s: seed[s] for s in STEPS} for seed in group[:3]] for group in values]
    q3 = compare_stages(("A", "B"), three).quantities[0]
    assert q3.timing is None and {d.verdict for d in q3.differences} <= {"too_few_seeds", "below_min_effect"}


def test_null_groups_claim_nothing_at_any_step():
    values = stage_values({k: [MIXED] * 4 for k in ("distance", "entropy", "offset:1")})
    cmp = compare_stages(("en 0-3", "en 4-7"), values)
    assert cmp.findings == () and all(q.timing is None for q in cmp.quantities)


def test_only_steps_every_model_recorded_are_compared_and_undefined_values_are_skipped():
    values = stage_values({"distance": [(A_HIGH, B_LOW)] * 4, "depth:induction": [(A_HIGH, B_LOW)] * 4})
    del values[1][2][100]  # one B seed lacks step 100
    values[0][0][3000]["depth:induction"] = None  # undefined in one seed at the end
    cmp = compare_stages(("A", "B"), values)
    assert cmp.steps == (10, 1000, 3000) == common_steps(values)
    assert "Steps recorded in some models only, left out: 100." in cmp.notes
    depth = {q.key: q for q in cmp.quantities}["depth:induction"]
    assert depth.differences[-1] is None and depth.timing == "early"
    one = compare_stages(("A", "B"), [[{3000: {"distance": 1.0}}] * 4] * 2)
    assert "Fewer than two training stages" in one.notes[0]


def test_the_stage_section_and_figures_show_every_seed_and_the_timing(tmp_path):
    from charlens.analysis.report.figures.study import stage_figures
    from charlens.analysis.report.studytext import stage_markdown

    up, none = (A_HIGH, B_LOW), MIXED
    cmp = compare_stages(("en", "he"), stage_values({"distance": [none, none, up, up], "offset:3": [none] * 4}))
    figures = stage_figures(cmp)
    assert list(figures) == ["stages_findings", "stages_all"]
    lines = figures["stages_findings"][1].axes[0].get_lines()
    assert len(lines) == 8 and list(lines[0].get_xdata()) == list(STEPS)  # every seed a line over the steps
    assert "(late)" in figures["stages_findings"][1].axes[0].get_title()
    text = "\n".join(stage_markdown(cmp))
    assert "| mean attention distance | 2.1 vs 2.2 | 2.1 vs 2.2 | 5.3 vs 1.3 **✓** | 5.3 vs 1.3 **✓** | late |" in text
    assert "| mean attention at offset 3 |" in text and text.count("**✓**") == 2
