"""Two groups of models compared with seeds as the unit (English seeds vs Hebrew seeds, or any two).

Every model of both groups has been analysed on the same held-out windows (parallel verses for the
default Bibles). `model_quantities` turns one model's summary into the numbers a comparison rests on:
heads per primary behaviour label and the relative depth where each behaviour first appears, the offset
profile, mean attention distance and entropy, class attention in the language's own classes, the
induction-test loss drop and, when measured, ablation effects and (from a recorded timeline) the step at
which each behaviour's first head formed. `compare_groups` puts each quantity
through the replication rule of `analysis.measures.seedstats`, writes a sentence for each, and
reports within each group how often each behaviour appears and which heads recur across seeds.
Head indices are never compared across seeds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from charlens.analysis.measures.seedstats import GroupDifference, compare_defined, seeds_needed
from charlens.analysis.runs.matching import RecurringHead, match_heads
from charlens.analysis.runs.results import Examples

VOWEL_CONSONANT = ("vowel", "consonant")


@dataclass(frozen=True)
class QuantityKind:
    label: str  # with {d}: the behaviour, {k}: the offset, {cells}: the classes
    unit: str
    min_effect: float  # the smallest difference of means worth a finding (docs/comparison.md)


KINDS: dict[str, QuantityKind] = {
    "validated_heads": QuantityKind("validated heads (any behaviour)", "heads", 1.0),
    "count": QuantityKind("{d} heads", "heads", 0.5),
    "depth": QuantityKind("relative depth of the first {d} head (0 = first layer, 1 = last)", "", 0.25),
    "distance": QuantityKind("mean attention distance", "characters", 0.5),
    "entropy": QuantityKind("mean normalized attention entropy (1 = uniform)", "", 0.02),
    "offset": QuantityKind("mean attention at offset {k}", "of the attention", 0.02),
    "class": QuantityKind("{cells} attention over its base rate, in the language's own classes", "x", 0.1),
    "induction": QuantityKind("induction-test copy drop: loss on the same letters reordered minus on the second copy", "nats", 0.1),
    "ablation": QuantityKind("largest loss increase when a {d} head is ablated", "nats/char", 0.02),
    "formation": QuantityKind("training step at which the first {d} head formed (recorded timeline)", "steps", 50.0),
    # The two hypotheses from the structure of Hebrew (issue 20): root letters two or three apart, and heads keyed on
    # the word-initial prefix letters where English keys on the space.
    "root": QuantityKind("consonant → same-word consonant attention at distances 2–3, over its {d} control", "x", 0.1),
    "keyed": QuantityKind("the strongest head's held-out selectivity on {d} keys (against the detector's control)", "", 0.1),
}
KEYED = ("space", "word_start", "prefix_letter")
ROOT_CONTROLS = {"shuffled_letters": "within-word shuffled-letter", "same_offset_rate": "same-distance consonant-rate"}  # detectors of the keyed hypothesis (prefix_letter: Hebrew only)


def quantity_kind(key: str) -> tuple[QuantityKind, str]:
    """The kind of a quantity key ("kind" or "kind:argument") and its label for the reader."""
    kind, _, arg = key.partition(":")
    q = KINDS[kind]
    return q, q.label.format(d=ROOT_CONTROLS.get(arg, arg) if kind == "root" else arg, k=arg, cells=arg.replace(">", " → "))


def vowel_consonant(summary: dict) -> Optional[dict]:
    """Class-to-class attention among the summary's own vowel and consonant classes: the head-mean
    attention and base rate (2x2, rows: query class), or None where the classes are absent."""
    ca = summary.get("class_attention")
    if not ca or not all(c in ca["classes"] for c in VOWEL_CONSONANT):
        return None
    idx = [ca["classes"].index(c) for c in VOWEL_CONSONANT]
    att = np.asarray(ca["discovery"], dtype=float)[:, :, idx][:, :, :, idx]  # (L, H, 2, 2)
    base = np.asarray(ca["base_rate"], dtype=float)[np.ix_(idx, idx)]
    if not np.all(base > 0):
        return None
    return {"mean_attention": np.nanmean(att, (0, 1)), "base_rate": base}


def labelled(summary: dict) -> dict[str, np.ndarray]:
    """(L, H) booleans per behaviour label (every detector, and induction): the heads whose primary label it is.
    Primary labels, not every validated detector: a previous-character head also holds for the local window."""
    L, H = summary["model"]["n_layer"], summary["model"]["n_head"]
    out = {d: np.zeros((L, H), dtype=bool) for d in [*summary["detectors"], "induction"]}
    for h in summary["heads"]:
        if h.get("validated"):
            out.setdefault(h["behaviour"], np.zeros((L, H), dtype=bool))[h["layer"], h["head"]] = True
    return out


def model_quantities(summary: dict, split: str = "heldout") -> dict[str, Optional[float]]:
    """The numbers one model contributes to a group comparison (None: undefined for this model, e.g. the
    depth of a behaviour it has no head for). Keys are "kind" or "kind:argument" (see KINDS)."""
    L = summary["model"]["n_layer"]
    out: dict[str, Optional[float]] = {}
    valid = labelled(summary)
    out["validated_heads"] = float(sum(bool(h.get("validated")) for h in summary["heads"]))
    for d, v in valid.items():
        out[f"count:{d}"] = float(v.sum())
        out[f"depth:{d}"] = float(np.nonzero(v.any(1))[0][0] / max(L - 1, 1)) if v.any() else None
    metrics = summary.get("head_metrics", {})
    if "mean_distance" in metrics:
        out["distance"] = float(np.nanmean(metrics["mean_distance"]))
    if "normalized_entropy" in metrics:
        out["entropy"] = float(np.nanmean(metrics["normalized_entropy"]))
    if "offset_profile" in summary:
        op = summary["offset_profile"]
        prof = np.nanmean(np.asarray(op.get(split, op["discovery"]), dtype=float), (0, 1))
        out.update({f"offset:{k}": float(v) for k, v in zip(op["offsets"], prof)})
    vc = vowel_consonant(summary)
    if vc is not None:
        ratio = vc["mean_attention"] / vc["base_rate"]
        for q, qn in enumerate(VOWEL_CONSONANT):
            for k, kn in enumerate(VOWEL_CONSONANT):
                out[f"class:{qn}>{kn}"] = float(ratio[q, k])
    for control in ROOT_CONTROLS:
        ratio = ((summary.get("root_attention") or {}).get(control) or {}).get("pooled_ratio", False)
        if ratio is not False:  # None or NaN: no consonant query with a same-word key at those distances
            out[f"root:{control}"] = None if ratio is None or np.isnan(ratio) else float(ratio)
    for d in KEYED:
        if d in summary["detectors"]:
            out[f"keyed:{d}"] = float(np.nanmax(np.asarray(summary["detectors"][d][split]["selectivity"], dtype=float)))
    it = summary.get("induction_test") or {}
    if "copy_drop" in it:  # the drop beyond position (schema 6); earlier summaries compared the first copy
        out["induction"] = float(it["copy_drop"])
    if any("ablation_delta_loss" in h for h in summary["heads"]):
        for d in valid:
            deltas = [h["ablation_delta_loss"] for h in summary["heads"] if h.get("behaviour") == d]
            out[f"ablation:{d}"] = float(max(deltas)) if deltas else None
    timeline = summary.get("timeline") or {}
    if timeline.get("recorded"):  # undefined (None) for a behaviour without a formed head; absent without a timeline
        formed = timeline["formation"]
        out.update({f"formation:{d}": None if formed.get(d) is None else float(formed[d]) for d in valid})
    return out


@dataclass(frozen=True)
class QuantityComparison:
    key: str
    label: str
    unit: str
    present: tuple[int, int]  # seeds of each group where the quantity is defined
    difference: Optional[GroupDifference]  # None unless defined in every seed of both groups

    @property
    def verdict(self) -> str:
        return self.difference.verdict if self.difference else "undefined"

    def to_dict(self) -> dict:
        return {"key": self.key, "label": self.label, "unit": self.unit, "present": list(self.present),
                "verdict": self.verdict, **(self.difference.to_dict() if self.difference else {})}


def compare_quantity(key: str, a: Sequence[Optional[float]], b: Sequence[Optional[float]], alpha: float) -> QuantityComparison:
    """One quantity's per-seed values in two groups (None: undefined in that seed) through the replication rule."""
    kind, label = quantity_kind(key)
    present = (sum(v is not None for v in a), sum(v is not None for v in b))
    return QuantityComparison(key, label, kind.unit, present, compare_defined(a, b, alpha, kind.min_effect))


@dataclass(frozen=True)
class GroupAgreement:
    """Within one group: in how many seeds each behaviour appears, at which depths, and recurring heads."""

    n_seeds: int
    behaviours: dict[str, dict]  # name -> {"seeds": k, "first_layers": [per seed, None if absent]}
    heads: tuple[RecurringHead, ...]  # matched across seeds (empty with one seed)

    def to_dict(self) -> dict:
        return {"n_seeds": self.n_seeds, "behaviours": self.behaviours, "heads": [h.to_dict() for h in self.heads]}


@dataclass(frozen=True)
class GroupComparison:
    names: tuple[str, str]
    members: tuple[tuple[str, ...], tuple[str, ...]]
    alpha: float
    quantities: tuple[QuantityComparison, ...]
    agreement: tuple[GroupAgreement, GroupAgreement]
    replicated: tuple[str, ...]  # finding sentences
    not_replicated: tuple[str, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"groups": {n: {"models": list(m), "agreement": a.to_dict()}
                           for n, m, a in zip(self.names, self.members, self.agreement)},
                "alpha": self.alpha, "seeds_needed": seeds_needed(self.alpha), "notes": list(self.notes),
                "findings": {"replicated": list(self.replicated), "not_replicated": list(self.not_replicated)},
                "quantities": [q.to_dict() for q in self.quantities]}


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def _values(d: GroupDifference, which: int) -> str:
    vals = d.values_a if which == 0 else d.values_b
    return ", ".join(_fmt(v) for v in vals)


def _sentence(q: QuantityComparison, names: tuple[str, str], alpha: float) -> str:
    A, B = names
    d = q.difference
    unit = f" {q.unit}" if q.unit and q.unit != "x" else ("x" if q.unit == "x" else "")
    if d is None:
        return (f"{q.label}: defined in {q.present[0]} of the {A} seeds and {q.present[1]} of the {B} seeds "
                "(absent elsewhere), so not compared.")
    head = (f"{q.label}: {A} {_fmt(d.mean_a)}{unit} (seeds: {_values(d, 0)}), "
            f"{B} {_fmt(d.mean_b)}{unit} (seeds: {_values(d, 1)})")
    if d.verdict == "replicated":
        higher = A if d.sign > 0 else B
        return (f"{head}; higher in {higher} in every one of the {len(d.values_a)} x {len(d.values_b)} seed pairs "
                f"(exact permutation p = {d.p:.3f}, the smallest possible with these seeds {d.smallest_p:.3f}).")
    if d.verdict == "not_replicated" and d.sign == 0:
        same = set(d.values_a) == set(d.values_b) and len(set(d.values_a)) == 1
        reason_text = "equal in every seed" if same else "the groups overlap: the difference changes sign (or ties) between seed pairs"
        return f"{head}; not replicated: {reason_text}."
    reason = {
        "single_seed": "one seed in a group is one draw, so nothing can replicate",
        "not_replicated": f"p = {d.p:.3f} > {alpha}",
        "too_few_seeds": (f"the same sign in every seed pair, but {len(d.values_a)} vs {len(d.values_b)} seeds cannot "
                          f"reach p <= {alpha} (smallest possible p = {d.smallest_p:.3f}); "
                          f"{seeds_needed(alpha)} seeds per group could"),
        "below_min_effect": f"consistent, but the difference {_fmt(d.difference)} is below the minimum effect {d.min_effect}",
    }[d.verdict]
    return f"{head}; not replicated: {reason}."


def _agreement(summaries: Sequence[dict], examples: Sequence[Optional[Examples]]) -> GroupAgreement:
    behaviours: dict[str, dict] = {}
    for s in summaries:
        for d, v in labelled(s).items():
            layers = np.nonzero(v.any(1))[0]
            entry = behaviours.setdefault(d, {"seeds": 0, "first_layers": []})
            entry["seeds"] += int(len(layers) > 0)
            entry["first_layers"].append(int(layers[0]) if len(layers) else None)
    heads: tuple[RecurringHead, ...] = ()
    shapes = {None if ex is None else np.asarray(ex["attention"]).shape for ex in examples}
    if len(summaries) > 1 and None not in shapes and len(shapes) == 1:
        names = [s.get("name", f"#{k}") for k, s in enumerate(summaries)]
        heads = tuple(match_heads(names, [np.asarray(ex["attention"]) for ex in examples if ex is not None],
                                  [[h.get("behaviour", "none") for h in s["heads"]] for s in summaries]))
    return GroupAgreement(len(summaries), behaviours, heads)


def compare_groups(names: tuple[str, str], summaries: tuple[Sequence[dict], Sequence[dict]],
                   examples: tuple[Sequence[Optional[Examples]], Sequence[Optional[Examples]]],
                   alpha: float = 0.05, split: str = "heldout") -> GroupComparison:
    """Compare two groups of model summaries (the summary.json contract), seeds as the unit."""
    numbers = [[model_quantities(s, split) for s in group] for group in summaries]
    keys = list(dict.fromkeys(k for group in numbers for m in group for k in m))
    quantities = [compare_quantity(key, [m.get(key) for m in numbers[0]], [m.get(key) for m in numbers[1]], alpha)
                  for key in keys]
    replicated = tuple(_sentence(q, names, alpha) for q in quantities if q.verdict == "replicated")
    not_replicated = tuple(_sentence(q, names, alpha) for q in quantities
                           if q.verdict != "replicated" and not _silent(q))
    n_a, n_b = len(summaries[0]), len(summaries[1])
    notes = []
    if min(n_a, n_b) < 2:
        notes.append(f"{names[0]} has {n_a} seed(s) and {names[1]} {n_b}: with one seed in a group nothing can be "
                     f"replicated; train several (train.py --seeds N) and compare the groups.")
    elif any(q.verdict == "too_few_seeds" for q in quantities):
        notes.append(f"With {n_a} vs {n_b} seeds the exact permutation test cannot reach p <= {alpha}; "
                     f"{seeds_needed(alpha)} seeds per group can.")
    nowhere = [q.key.partition(":")[2] for q in quantities if q.key.startswith("count:") and _silent(q)]
    if nowhere:
        notes.append("No validated head in any model of either group for: " + ", ".join(nowhere) + ".")
    return GroupComparison(names, tuple(tuple(s.get("name", "?") for s in g) for g in summaries), alpha,  # type: ignore[arg-type]
                           tuple(quantities), (_agreement(summaries[0], examples[0]), _agreement(summaries[1], examples[1])),
                           replicated, not_replicated, tuple(notes))


def says_nothing(key: str, values: Sequence[Optional[float]]) -> bool:
    """A quantity with nothing to say: undefined in every model, or a count (or ablation effect) of a behaviour no model has."""
    defined = [v for v in values if v is not None]
    return not defined or key.startswith(("count:", "ablation:")) and not any(defined)


def _silent(q: QuantityComparison) -> bool:
    """Comparisons with nothing to say (says_nothing), left out of the findings and notes."""
    d = q.difference
    if d is None:
        return q.present == (0, 0)
    return says_nothing(q.key, d.values_a + d.values_b)
