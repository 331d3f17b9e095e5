"""How the induction circuit formed (analysis.runs.formation), on hand-made timeline records: the head and the
head it reads, its formation step, the loss drop step, their gap and the phase change."""
from __future__ import annotations

import numpy as np

from charlens.analysis.runs.formation import formation_result, half_drop_step
from charlens.analysis.runs.results import HeadVerdict
from test_timeline_formation import NAMES

STEPS = [0, 100, 200, 300, 400, 500]


def verdict(layer: int, head: int, behaviour: str) -> HeadVerdict:
    kind = behaviour if behaviour in ("none", "induction") else "detector"
    return HeadVerdict(layer, head, behaviour, kind, behaviour, behaviour != "none", False, 0.5, 0.5, 0.1, 3.0, 0.5, 0.5,
                       0.1, 0.9, 32, "", 0.1, (), (behaviour,))


class Circuits:
    """The one method of runs.circuits.CircuitResult the formation reads: the K-composition source of a head."""

    def source(self, name: str, layer: int, head: int):
        return (0, 1), 0.4


def records() -> list[dict]:
    """Layer 0 head 1 becomes a previous-character head at 200; layer 1 head 0 passes the induction criterion from
    300 on (prefix match and repeated sequences), while the second-copy loss falls from 3.2 to 0.4 between 200 and 400."""
    out = []
    for k, step in enumerate(STEPS):
        prev = 0.8 if step >= 200 else 0.05
        prefix = [0.1, 0.6, 0.7, 0.7, 0.7, 0.7][k]
        rep = [0.0, 0.1, 0.2, 0.8, 0.8, 0.8][k]
        sel = [[[0.0, prev], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [prefix, 0.0]]]  # (D, L, H)
        zeros, repeated = [[[0.0] * 2] * 2] * len(NAMES), [[0.0, 0.0], [rep, 0.0]]
        out.append({"kind": "probe", "iter": step, "detectors": NAMES, "score": zeros, "control": zeros,
                    "selectivity": sel, "repeated_score": repeated, "repeated_control": repeated,
                    "repeated_selectivity": repeated, "probe_loss": 2.0, "loss_early": 2.0, "loss_late": 1.5,
                    "icl_score": -0.5, "loss_first_copy": 3.3, "loss_second_copy": [3.2, 3.2, 3.0, 1.0, 0.5, 0.4][k],
                    "ms": 1.0})
    return out


def test_half_drop_step():
    steps = np.array(STEPS)
    assert half_drop_step(steps, np.array([3.2, 3.2, 3.0, 1.0, 0.5, 0.4])) == 300  # below (3.2 + 0.4) / 2 = 1.8 first at 300
    assert half_drop_step(steps, np.array([1.0, 1.1, 1.2, 1.3, 1.4, 1.5])) is None  # it never falls
    assert half_drop_step(steps, np.array([np.nan] * 6)) is None


def test_formation_of_a_recorded_induction_head():
    history = records() + [{"kind": "eval", "iter": s, "train_loss": 1.0, "val_loss": 1.0, "second_copy_accuracy": a}
                           for s, a in ((100, 0.1), (300, 0.2), (500, 0.9))]
    heads = [verdict(0, 0, "none"), verdict(0, 1, "previous_char"), verdict(1, 0, "induction"), verdict(1, 1, "none")]
    f = formation_result(history, heads, Circuits(), cut=0.3)  # type: ignore[arg-type]
    assert f is not None and f.head == (1, 0) and f.partner == (0, 1)
    assert f.formed == 300 and f.loss_drop == 300 and f.gap == 0
    assert f.phase is not None and (f.steps[f.phase.k], f.steps[f.phase.k + 1]) == (200, 300)  # 0.2 -> 0.7 capped
    np.testing.assert_allclose(f.series["previous"], [0.05, 0.05, 0.8, 0.8, 0.8, 0.8])
    jump = f.accuracy_jump()
    assert jump is not None and (f.accuracy[0][jump.k], f.accuracy[0][jump.k + 1]) == (300, 500)
    d = f.to_dict()
    assert d["formed"] == 300 and d["accuracy"]["largest_rise"] == {"from_step": 300, "to_step": 500, "before": 0.2, "after": 0.9}
    assert "Induction head L1H0 reading L0H1 through K-composition formed at step 300" in d["sentence"]


def test_no_formation_without_an_induction_head_or_a_timeline():
    heads = [verdict(0, 1, "previous_char"), verdict(1, 0, "none")]
    assert formation_result(records(), heads, Circuits(), cut=0.3) is None  # type: ignore[arg-type]
    assert formation_result([], [verdict(1, 0, "induction")], Circuits(), cut=0.3) is None  # type: ignore[arg-type]


def test_the_partner_and_the_one_letter_matchers_are_dated_beside_the_head():
    recs = records()
    for r in recs:  # layer 1 head 1 matches one letter from step 200 on, before the induction head (300)
        r["detectors"] = [*NAMES, "prefix_match_1"]
        r["selectivity"] = [*r["selectivity"], [[0.0, 0.0], [0.0, 0.6 if r["iter"] >= 200 else 0.1]]]
        r["score"] = r["control"] = [[[0.0] * 2] * 2] * 4
    heads = [verdict(0, 0, "none"), verdict(0, 1, "previous_char"), verdict(1, 0, "induction"),
             verdict(1, 1, "prefix_match_1")]
    f = formation_result(recs, heads, Circuits(), cut=0.3)  # type: ignore[arg-type]
    assert f is not None and f.formed == 300 and f.partner_formed == 200 and f.matchers == (((1, 1), 200),)
    d = f.to_dict()
    assert d["partner_previous_char_formed"] == 200 and d["one_letter_matchers"] == [{"head": [1, 1], "formed": 200}]
    assert "formed at step 300 (L0H1 a previous_char head from step 200; one-letter matchers L1H1 from 200); " \
           "the second-copy loss fell half-way at step 300" in d["sentence"]
    plain = formation_result(records(), heads[:3], Circuits(), cut=0.3)  # type: ignore[arg-type]
    assert plain is not None and plain.matchers == () and "one-letter" not in plain.sentence()
