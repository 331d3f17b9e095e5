"""analysis/measures/timeline.py on hand-made probe records: arrays, the criterion, formation steps."""
from __future__ import annotations

import numpy as np
import pytest

from charlens.analysis.measures.timeline import (CUT, INDUCTION, Criterion, formation_steps, past_criterion, probe_records,
                                        timeline)

NAMES = ["previous_char", "space", "prefix_match_2"]  # prefix_match_2 has the prefix control: induction evidence
L, H = 1, 2


def record(step: int, selectivity: list[list[list[float | None]]], repeated: list[list[float | None]] | None = None) -> dict:
    zeros = [[[0.0] * H] * L] * len(NAMES)
    rep = repeated if repeated is not None else [[0.0] * H] * L
    return {"kind": "probe", "iter": step, "detectors": NAMES, "score": zeros, "control": zeros, "selectivity": selectivity,
            "repeated_score": rep, "repeated_control": rep, "repeated_selectivity": rep, "probe_loss": 2.0, "loss_early": 2.0,
            "loss_late": 1.5, "icl_score": -0.5, "loss_first_copy": None, "loss_second_copy": 3.0, "ms": 1.0}


def sel(prev: tuple[float | None, float | None], space: tuple[float, float] = (0.0, 0.0),
        prefix: tuple[float, float] = (0.0, 0.0)) -> list:
    return [[list(prev)], [list(space)], [list(prefix)]]


def test_formation_is_the_first_step_from_which_a_head_stays_past_the_cut():
    records = [record(0, sel((0.0, 0.0))), record(10, sel((0.5, 0.1))), record(20, sel((0.2, 0.35))),
               record(40, sel((0.31, 0.4))), record(80, sel((0.9, 0.3)))]
    # head 0 passes at 10, falls back at 20 and stays from 40; head 1 passes from 20 (0.3 >= the cut counts)
    assert formation_steps(records) == {("previous_char", 0, 0): 40, ("previous_char", 0, 1): 20}
    # order of the records does not matter; a stricter cut moves or removes formation
    assert formation_steps(records[::-1]) == formation_steps(records)
    assert formation_steps(records, Criterion(cut=0.4)) == {("previous_char", 0, 0): 80}


def test_heads_that_end_below_the_cut_or_undefined_have_no_formation_step():
    records = [record(0, sel((0.9, 0.9))), record(5, sel((0.9, None))), record(9, sel((0.1, 0.9)))]
    assert formation_steps(records) == {("previous_char", 0, 1): 9}  # None (undefined) at step 5 is not past the cut
    assert formation_steps([record(0, sel((0.0, 0.01)))]) == {}  # an untrained model, recorded once


def test_already_formed_at_the_first_record():
    records = [record(s, sel((0.8, 0.0))) for s in (0, 1, 2)]
    assert formation_steps(records) == {("previous_char", 0, 0): 0}


def test_induction_needs_the_repeated_sequence_test_too():
    text_only = [record(s, sel((0, 0), prefix=(0.6, 0.6)), repeated=[[0.1, 0.5]]) for s in (0, 10)]
    found = formation_steps(text_only)
    assert found == {("prefix_match_2", 0, 1): 0, (INDUCTION, 0, 1): 0}  # head 0 fails the repeated-sequence test
    later = text_only + [record(20, sel((0, 0), prefix=(0.6, 0.6)), repeated=[[0.7, 0.5]])]
    assert formation_steps(later)[(INDUCTION, 0, 0)] == 20
    # the repeated-sequence test alone is not induction
    assert formation_steps([record(0, sel((0, 0)), repeated=[[0.9, 0.9]])]) == {}


def test_arrays_and_criterion_shapes():
    records = [record(3, sel((0.5, None))), record(1, sel((0.1, 0.2)))]
    t = timeline(records)
    assert t.steps.tolist() == [1, 3] and t.detectors == NAMES
    assert t.arrays["selectivity"].shape == (2, 3, L, H) and np.isnan(t.arrays["selectivity"][1, 0, 0, 1])
    assert t.repeated["repeated_selectivity"].shape == (2, L, H)
    assert np.isnan(t.scalars["loss_first_copy"]).all() and t.scalars["icl_score"].tolist() == [-0.5, -0.5]
    assert past_criterion(t).shape == (2, 4, L, H)
    assert CUT == 0.3


def test_probe_records_and_runs_without_a_timeline():
    history = [{"kind": "step", "iter": 1}, record(5, sel((0, 0))), {"kind": "eval", "iter": 5}, record(2, sel((0, 0)))]
    assert [r["iter"] for r in probe_records(history)] == [2, 5]
    assert probe_records([{"kind": "step", "iter": 1}]) == []
    with pytest.raises(ValueError, match="without a timeline"):
        timeline([])
    other = record(9, sel((0, 0)))
    other["detectors"] = ["self", "space", "prefix_match_2"]
    with pytest.raises(ValueError, match="different detectors"):
        timeline([record(1, sel((0, 0))), other])


def test_circuit_scores_of_the_records_and_their_absence():
    with_scores = record(5, sel((0.5, 0.5)))
    with_scores.update({"ov_copying": [[0.9, None]], "qk_previous": [[1.0, 0.0]],
                        "k_composition": [[[[None, None]], [[None, None]]]], "qk_match": [[[[None, None]], [[None, None]]]]})
    t = timeline([record(0, sel((0.0, 0.0))), with_scores])  # the step-0 record predates circuit scores
    assert t.circuits["ov_copying"].shape == (2, L, H) and t.circuits["k_composition"].shape == (2, L, H, L, H)
    assert np.isnan(t.circuits["ov_copying"][0]).all()  # absent: undefined, not zero
    assert t.circuits["ov_copying"][1, 0, 0] == 0.9 and np.isnan(t.circuits["ov_copying"][1, 0, 1])
    assert t.circuits["qk_previous"][1].tolist() == [[1.0, 0.0]]
