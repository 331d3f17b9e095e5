"""Typed results. Each analysis returns one frozen result; `Summary` puts one model's results together
once, and `Summary.to_dict()` is the versioned data contract written as summary.json. Nothing edits
a result after it is built: the optional analyses (value-weighted attention, rollout, ablation, ...)
are results of their own, and the summary merges them when it is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from charlens.analysis.measures.ablation import HeadAblation
from charlens.analysis.measures.counterfactual import Counterfactual
from charlens.analysis.runs.circuits import CircuitResult
from charlens.analysis.runs.copying import CopyingResult, TaskResult
from charlens.analysis.runs.formation import FormationResult
from charlens.analysis.runs.snapshots import SnapshotAttention
from charlens.analysis.runs.timeline import TimelineResult, timeline_entry

SCHEMA_VERSION = 6  # 2: head_similarity, class_attention.most_selective; extras merged at write time
# 3: the selectivity rule (control baselines, selectivity and its interval, margins, borderline), prefix matches and
#    the repeated-sequence test in validation, the decomposition, dropped or replaced characters
# 4: timeline (the recorded training path: formation steps and phase changes), or a note that there is none
# 5: labels v3: the structural control ("structure") of word, line and separator detectors; the decomposition's
#    weights are shares summing to 1; per head `kind` (induction, mixture, key, detector, none) and `key_chars`;
#    mixture labels ("offset_2 + recent_space") and key-character labels ("key 'e'")
#    circuits (weight-level scores), copying (who carries the in-context copying), task (the synthetic induction task's
#    held-out second copies), formation (the induction head's recorded formation); the head table's circuit and
#    copy-share columns; root_attention (consonant -> same-word consonant at distances 2-3 over its within-word
#    shuffled-letter control)
# 6: the copy drop's position control: induction_test.loss_reordered_half / copy_drop / copy_drop_se / copy_sequences
#    (a sample of its own), copying.loss_reordered_half / position_drop, and copying.drop (with its shares) measured
#    against the same letters reordered at the second copy's positions, not against the first copy

Examples = dict[str, np.ndarray]  # the content of attention_examples.npz (docs/analysis.md)


@dataclass(frozen=True)
class SplitScores:
    """One detector on one text split; lists are (L, H) (selectivity_ci (L, H, 2))."""

    score: list  # mean attention mass on the targets
    baseline: list  # the same for uniform causal attention
    control: list  # the same for the detector's control (positional / prefix / uniform): the selectivity's baseline
    selectivity: list  # (score - control) / (1 - control)
    selectivity_ci: list  # selectivity -+ z * bootstrap SE, z for the per-test alpha
    confidence: list  # share of windows whose own selectivity reaches the cut
    n_windows: list  # their number
    n_scored: int  # windows with at least one target row

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DetectorResult:
    description: str
    control: str  # the baseline of its selectivity: uniform, position or prefix (analysis.measures.detectors)
    discovery: SplitScores
    heldout: SplitScores
    validated: list  # (L, H) booleans: holds on discovery AND held-out text (prefix matches: and the induction test)

    def to_dict(self) -> dict:
        return {"description": self.description, "control": self.control, "discovery": self.discovery.to_dict(),
                "heldout": self.heldout.to_dict(), "validated": self.validated}


@dataclass(frozen=True)
class HeadVerdict:
    """One row of the head table (heads.csv, the `heads` list of summary.json)."""

    layer: int
    head: int
    behaviour: str  # the label: "induction", a mixture "a + b", "key 'e'", the primary validated detector, or "none"
    kind: str  # induction | mixture | key | detector | none (analysis.measures.rule)
    candidate: str  # the detector behind the label (a mixture: its largest part), or the best one when nothing holds
    validated: bool  # the head has a label
    borderline: bool  # the candidate's interval contains the cut on a split: other windows could flip the label
    selectivity: float  # the candidate's, on discovery text
    heldout_selectivity: float
    margin: float  # lower bound minus the cut, the smaller of the two splits (> 0 on both: validated)
    margin_se: float  # (selectivity - cut) / SE, the smaller of the two splits (the bound needs more than z)
    score: float  # the candidate's raw mass on discovery text
    heldout_score: float
    baseline: float  # the candidate's control baseline on discovery text
    confidence: float  # share of held-out windows whose own selectivity reaches the cut
    n_windows: int
    components: str  # the decomposition's largest terms, e.g. "0.62 previous_char + 0.30 recent_space"
    unexplained: float  # held-out share of the attention the decomposition leaves out
    key_chars: tuple[dict, ...]  # {"char", "mass", "control"}: the key characters beyond the positional control
    behaviours: tuple[str, ...]  # every validated detector, by discovery selectivity

    def to_dict(self) -> dict:
        return {**self.__dict__, "key_chars": list(self.key_chars), "behaviours": list(self.behaviours)}


@dataclass(frozen=True)
class AnalysisResult:
    """What `run_analysis` found for one model on its discovery and held-out texts."""

    checkpoint: str
    name: str
    lang: str
    model: dict
    settings: dict
    texts: dict
    detectors: dict[str, DetectorResult]
    heads: tuple[HeadVerdict, ...]
    offset_profile: dict
    class_attention: dict
    head_metrics: dict
    induction_test: dict
    decomposition: dict
    salient_patterns: list
    head_similarity: Optional[dict]  # {"heads": labels, "distance": (LH, LH)} on the example windows
    examples: Examples = field(repr=False)
    timeline: Optional[TimelineResult] = None  # None: the checkpoint recorded no timeline
    circuits: Optional[CircuitResult] = None  # weight-level circuit scores
    copying: Optional[CopyingResult] = None  # who carries the in-context copying
    task: Optional[TaskResult] = None  # None unless the checkpoint was trained on the synthetic induction task
    formation: Optional[FormationResult] = None  # how the induction head formed; None without a timeline or one
    root_attention: Optional[dict] = None  # measures.rootattention.root_entry on the held-out windows


@dataclass(frozen=True)
class ValueWeightedResult:
    disagreement: np.ndarray  # (L, H) mean total-variation distance between raw and value-weighted rows
    behaviour_scores: list  # per validated head: raw vs value-weighted score of its behaviour
    text: str  # the first held-out window, for the figure
    attention: np.ndarray  # (L, H, T, T) raw on that window
    weighted: np.ndarray  # (L, H, T, T) value-weighted, rows normalized

    def summary_entry(self) -> dict:
        return {"disagreement": np.round(self.disagreement, 4).tolist(), "behaviour_scores": self.behaviour_scores,
                "note": "disagreement: mean total-variation distance between raw and value-weighted rows"}


@dataclass(frozen=True)
class RolloutResult:
    entropy: dict[str, np.ndarray]  # by_position (L, H, T), per_head (L, H), per_layer (L,), samples (L, H, S)
    text: str
    attention: np.ndarray  # (L, H, T, T) on the first held-out window
    importance_raw: np.ndarray  # (T,)
    importance_rollout: np.ndarray  # (T,)
    rollout: np.ndarray  # (T, T)

    def entropy_entry(self) -> dict:
        return {"per_head": np.round(self.entropy["per_head"], 4).tolist(),
                "per_layer": np.round(self.entropy["per_layer"], 4).tolist(),
                "note": "mean normalized entropy of attention rows (0: one key, 1: uniform over visible keys)"}

    def importance_entry(self) -> dict:
        return {"text": self.text, "raw": np.round(self.importance_raw, 5).tolist(),
                "rollout": np.round(self.importance_rollout, 5).tolist()}


@dataclass(frozen=True)
class QKMapResult:
    layer: int
    head: int
    method: str
    n_windows: int
    length: int
    n_pairs: int
    spearman_2d: float
    spearman_full: float
    head_dim: int
    queries: np.ndarray  # (N*T, 2)
    keys: np.ndarray  # (N*T, 2)
    classes: np.ndarray  # (N*T,)

    def summary_entry(self) -> dict:
        return {"layer": self.layer, "head": self.head, "method": self.method, "n_windows": self.n_windows,
                "n_pairs": self.n_pairs, "spearman_2d": round(self.spearman_2d, 4),
                "spearman_full": round(self.spearman_full, 4)}


@dataclass(frozen=True)
class AblationResult:
    mode: str
    tol: float
    heads: dict[tuple[int, int], HeadAblation]
    behaviours: dict[tuple[int, int], str]
    validated: frozenset


@dataclass(frozen=True)
class Extras:
    """The optional analyses of analyze.py's flags; None where not asked for."""

    value_weighted: Optional[ValueWeightedResult] = None
    rollout: Optional[RolloutResult] = None
    qk_map: Optional[QKMapResult] = None
    counterfactual: Optional[Counterfactual] = None
    ablation: Optional[AblationResult] = None


@dataclass(frozen=True)
class Summary:
    """One model's analysis and its optional extras: what the renderer writes."""

    analysis: AnalysisResult
    extras: Extras = Extras()
    snapshots: Optional[SnapshotAttention] = None  # report.html's step slider only; not in summary.json

    @property
    def examples(self) -> Examples:
        return self.analysis.examples

    def to_dict(self) -> dict[str, Any]:
        """summary.json: the analysis data contract (docs/analysis.md)."""
        a, x = self.analysis, self.extras
        settings = dict(a.settings)
        heads = [h.to_dict() for h in a.heads]
        for result in (a.circuits, a.copying):
            for row in heads:
                row.update(result.head_columns(row["layer"], row["head"]) if result is not None else {})
        if x.ablation is not None:
            settings.update({"ablation_mode": x.ablation.mode, "ablation_tol": x.ablation.tol})
            for row in heads:
                row.update(x.ablation.heads[(row["layer"], row["head"])].as_dict())
        out: dict[str, Any] = {
            "schema": SCHEMA_VERSION, "checkpoint": a.checkpoint, "name": a.name, "lang": a.lang, "model": a.model,
            "settings": settings, "texts": a.texts,
            "detectors": {name: d.to_dict() for name, d in a.detectors.items()},
            "heads": heads, "offset_profile": a.offset_profile, "class_attention": a.class_attention,
            "head_metrics": a.head_metrics, "induction_test": a.induction_test, "decomposition": a.decomposition,
            "salient_patterns": a.salient_patterns,
            "head_similarity": a.head_similarity, "timeline": timeline_entry(a.timeline),
            "root_attention": a.root_attention,
        }
        for key, part in (("circuits", a.circuits), ("copying", a.copying), ("task", a.task), ("formation", a.formation)):
            if part is not None:
                out[key] = part.to_dict()
        if x.value_weighted is not None:
            out["value_weighted"] = x.value_weighted.summary_entry()
        if x.rollout is not None:
            out["entropy"] = x.rollout.entropy_entry()
            out["importance"] = x.rollout.importance_entry()
        if x.qk_map is not None:
            out["qk_map"] = x.qk_map.summary_entry()
        if x.counterfactual is not None:
            out["counterfactual"] = x.counterfactual.summary()
        return out
