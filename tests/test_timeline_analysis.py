"""The timeline in the analysis (analysis/runs/timeline.py, the report, the group comparison), on hand-made
probe records whose formation steps, phase changes and loss bump are known."""
from __future__ import annotations

import numpy as np

from charlens.analysis.measures.timeline import largest_jump, loss_change
from charlens.analysis.report.figures.base import FigureWriter
from charlens.analysis.report.figures.sets import analysis_figures
from charlens.analysis.report.figures.timeline import every_head_figure, timeline_figure
from charlens.analysis.report.markdown import timeline_lines
from charlens.analysis.runs.groups import compare_groups, model_quantities
from charlens.analysis.runs.results import HeadVerdict
from charlens.analysis.runs.timeline import NO_TIMELINE, timeline_entry, timeline_result
from summary_fixture import make_summary
from test_timeline_formation import record, sel

STEPS = [0, 10, 20, 40, 80]
PREVIOUS = [0.0, 0.05, 0.6, 0.7, 0.8]  # head 0.0: jumps between steps 10 and 20
SPACE = [0.2, 0.25, 0.3, 0.35, 0.4]  # head 0.1: rises gradually, past the cut (0.3) from step 20
LOSS = [3.0, 2.9, 2.3, 2.2, 2.1]  # falls 0.06 per step in 10..20, 0.01 and 0.005 on either side


def verdict(layer: int, head: int, behaviour: str, validated: bool = True) -> HeadVerdict:
    return HeadVerdict(layer, head, behaviour, "detector" if validated else "none", behaviour, validated, False, 0.8, 0.8,
                       0.1, 5.0, 0.9, 0.9, 0.1, 0.9, 40, f"0.90 {behaviour}", 0.05, (), (behaviour,) if validated else ())


def history() -> list[dict]:
    out = []
    for k, step in enumerate(STEPS):
        r = record(step, sel((PREVIOUS[k], 0.0), space=(0.0, SPACE[k])))
        r["probe_loss"] = LOSS[k]
        out += [r, {"kind": "step", "iter": step + 1, "loss": LOSS[k] + 0.1, "lr": 1e-3, "ms": 1.0}]
    return out + [{"kind": "eval", "iter": 80, "train_loss": 2.0, "val_loss": 2.2}]


def result():
    heads = [verdict(0, 0, "previous_char"), verdict(0, 1, "space"), verdict(1, 0, "none", validated=False)]
    return timeline_result(history(), heads, cut=0.3)


def test_formation_steps_and_the_phase_change_with_the_loss_bump():
    t = result()
    assert t is not None and t.steps.tolist() == STEPS
    prev, space = t.heads
    assert (prev.layer, prev.head, prev.label, prev.formed) == (0, 0, "previous_char", 20)
    p = prev.phase
    assert (p.from_step, p.to_step, p.before, p.after) == (10, 20, 0.05, 0.6)
    assert np.isclose(p.loss_after - p.loss_before, -0.6) and np.isclose(p.bump, 0.06 / 0.0075)
    assert prev.sentence() == ("head 0.0's previous_char selectivity rose from 0.05 to 0.60 between steps 10 and 20 "
                               "(formed at step 20), while the probe-set loss fell from 2.900 to 2.300, 8.0x its rate "
                               "per step in the intervals on either side.")
    assert space.formed == 20 and space.phase is None and "never rose by 0.2" in space.sentence()
    assert t.formation == {"previous_char": 20, "space": 20}
    assert np.allclose(t.strongest["previous_char"], PREVIOUS) and np.allclose(t.strongest["space"], SPACE)
    # every head's series for each final label: the labelled head's own, and the other head's (0 throughout)
    assert list(t.every_head) == ["previous_char", "space"] and t.every_head["space"].shape[-1] == len(STEPS)
    assert np.allclose(t.every_head["previous_char"][0, 0], PREVIOUS) and np.allclose(t.every_head["space"][0, 1], SPACE)
    assert np.allclose(t.every_head["previous_char"][0, 1], 0.0)
    entry = timeline_entry(t)
    assert entry["recorded"] and entry["heads"][0]["phase_change"]["from_step"] == 10
    assert entry["train_loss"]["steps"] == [s + 1 for s in STEPS] and entry["val_loss"]["loss"] == [2.2]


def test_jump_and_loss_change_edge_cases():
    assert largest_jump(np.array([0.5, 0.4, np.nan])) is None  # never rises
    assert largest_jump(np.array([0.1])) is None
    jump = largest_jump(np.array([0.0, np.nan, 0.5, 0.9, 0.95]))
    assert jump is not None and (jump.k, jump.before, jump.after) == (2, 0.5, 0.9)  # undefined neighbours skipped
    assert loss_change(np.array([0, 10]), np.array([2.0, 1.0]), 0) == (-1.0, None)  # no neighbouring interval


def test_report_shows_the_timeline_or_one_line_without_it(tmp_path):
    summary = make_summary(validated={"previous_char": [(0, 0)], "space": [(0, 1)]})
    summary["timeline"] = timeline_entry(result())
    md = "\n".join(timeline_lines(summary["timeline"]))
    assert "## Timeline: heads forming during training" in md and "| 0 | 0 | previous_char | 20 | 0.05 → 0.60 | 10–20 |" in md
    entries = analysis_figures(summary, None, FigureWriter(tmp_path))
    assert "timeline" in [e["name"] for e in entries] and (tmp_path / "timeline.png").exists()
    fig = timeline_figure(summary["timeline"])
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == [
        "loss (nats/char)", "strongest head per behaviour", "L0H0 previous_char", "L0H1 space"]
    assert "timeline_heads" in [e["name"] for e in entries] and (tmp_path / "timeline_heads.png").exists()
    panels = [ax for ax in every_head_figure(summary["timeline"]).axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["previous_char: every head", "space: every head"]
    highlighted = [[line.get_label() for line in ax.get_lines() if line.get_linewidth() > 1] for ax in panels]
    assert highlighted == [["L0H0"], ["L0H1"]]  # the heads that end with the label; the others grey
    assert timeline_result([{"kind": "step", "iter": 1, "loss": 2.0, "lr": 1e-3, "ms": 1.0}], [], 0.3) is None
    summary["timeline"] = timeline_entry(None)
    md = "\n".join(timeline_lines(summary["timeline"]))
    assert md.count(NO_TIMELINE[1:]) == 1
    assert "timeline" not in [e["name"] for e in analysis_figures(summary, None, FigureWriter(tmp_path))]


def formed_at(step: int | None) -> dict:
    s = make_summary(validated={"previous_char": [(0, 0)]})
    s["timeline"] = {"recorded": True, "formation": {"previous_char": step}}
    return s


def test_group_comparison_compares_formation_steps_per_behaviour():
    assert model_quantities(formed_at(100))["formation:previous_char"] == 100.0
    assert model_quantities(formed_at(None))["formation:previous_char"] is None  # a validated head that never formed
    assert model_quantities(formed_at(100))["formation:induction"] is None  # no head with the label
    assert not any(k.startswith("formation:") for k in model_quantities(make_summary()))  # no timeline
    early, late = [formed_at(s) for s in (100, 110, 120, 105)], [formed_at(s) for s in (400, 420, 390, 410)]
    cmp = compare_groups(("A", "B"), (early, late), ([None] * 4, [None] * 4))
    q = next(q for q in cmp.quantities if q.key == "formation:previous_char")
    assert q.verdict == "replicated" and q.difference.sign == -1 and q.unit == "steps"
    assert any("first previous_char head formed" in s for s in cmp.replicated)
