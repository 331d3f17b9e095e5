"""What one analysis found, in sentences built from its numbers: the opening paragraph of report.md and report.html.

How many heads have a validated behaviour (and which are borderline), which behaviours sit in which layers, the
most selective heads with a sentence each (held-out mass on the targets against the control, selectivity on both
texts, the lower bound's distance from the cut), and the repeated-sequence test in one clause. Nothing is
computed here that the summary (the summary.json contract) does not hold; a label the summary's detectors do
not describe (e.g. a mixture) still gets its numbers."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

TOP_HEADS = 3  # the most selective validated heads, a sentence each
CONTROLS = {"uniform": "uniform causal attention", "position": "a class-blind head with its own positional profile",
            "prefix": "a one-character prefix matcher"}  # any other control is named as the summary names it


@dataclass(frozen=True)
class ModelFindings:
    count: str  # how many heads have a validated behaviour; borderline heads; the closest head when none
    layers: str  # which behaviours in which layers ("" when no head is validated)
    heads: tuple[str, ...]  # the most selective heads, a sentence each
    induction: str  # the repeated-sequence test in one sentence ("" without one)

    def paragraph(self) -> str:
        """The opening paragraph: count, layers and the induction test."""
        return " ".join(s for s in (self.count, self.layers, self.induction) if s)


def _name(h: dict) -> str:
    return f"{h['layer']}.{h['head']}"


def _conservative(h: dict) -> float:
    """The smaller of a head's two selectivities (discovery, held-out): what both texts support."""
    values = [v for v in (h.get("selectivity"), h.get("heldout_selectivity")) if v is not None and v == v]
    return min(values) if values else float("-inf")


def count_sentence(summary: dict) -> str:
    heads, s, t = summary["heads"], summary["settings"], summary["texts"]
    valid = [h for h in heads if h["validated"]]
    cut = s["min_selectivity"]
    where = (f"the lower end of its selectivity interval is above the cut {cut} on discovery text "
             f"({t['discovery']['source']}, {t['discovery']['n_windows']} windows) and again on held-out text "
             f"({t['heldout']['source']}, {t['heldout']['n_windows']} windows)")
    if valid:
        out = f"{len(valid)} of {len(heads)} heads have a validated behaviour: for each, {where}."
    else:
        best = max(heads, key=_conservative)
        out = (f"No head of the {len(heads)} has a validated behaviour (that needs {where}); the closest is head "
               f"{_name(best)} ({best['candidate']}), with selectivity {best['selectivity']:.2f} on discovery text "
               f"and {best['heldout_selectivity']:.2f} held out.")
    borderline = [h for h in heads if h.get("borderline") and not h["validated"]]
    if borderline:
        listed = ", ".join(f"{_name(h)} ({h['candidate']})" for h in borderline)
        out += (f" Borderline, reported but not labelled (the interval contains the cut): {listed}.")
    return out


def layers_sentence(summary: dict) -> str:
    """'Layer 0 has none; layer 1: local (1.0, 1.3) and space (1.2); ...' by primary label."""
    by_layer: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for h in summary["heads"]:
        if h["validated"]:
            by_layer[h["layer"]][h["behaviour"]].append(_name(h))
    if not by_layer:
        return ""
    parts = []
    for layer in range(summary["model"]["n_layer"]):
        found = by_layer.get(layer)
        if not found:
            parts.append(f"layer {layer} has none")
            continue
        ordered = sorted(found.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        listed = [f"{label} ({', '.join(names)})" for label, names in ordered]
        parts.append(f"layer {layer}: " + (" and ".join(listed) if len(listed) <= 2 else ", ".join(listed)))
    text = "; ".join(parts)
    return "By layer, " + text + "."


def head_sentence(summary: dict, h: dict) -> str:
    """One validated head: held-out mass on its targets against its control, selectivity on both texts, margin."""
    detector: Optional[dict] = summary["detectors"].get(h["candidate"])
    label = h["behaviour"] + (f", via {h['candidate']}" if h["candidate"] != h["behaviour"] else "")
    out = f"Head {_name(h)} ({label}): "
    if detector is not None:
        l, k = h["layer"], h["head"]
        control = detector["heldout"]["control"][l][k]
        out += (f"on held-out text {h['heldout_score']:.2f} of its attention falls on {detector['description']}, "
                f"where {CONTROLS.get(detector['control'], detector['control'])} would put {control:.2f}; ")
    out += (f"selectivity {h['heldout_selectivity']:.2f} held out ({h['selectivity']:.2f} on discovery text), the "
            f"lower end of its interval {h['margin']:.2f} above the cut")
    also = [b for b in h.get("behaviours", []) if b not in (h["behaviour"], h["candidate"])]
    if also:
        out += f"; also validated for {', '.join(also)}"
    return out + "."


def induction_sentence(summary: dict) -> str:
    it = summary.get("induction_test")
    if not it or "validated" not in it:
        return ""
    passed = [f"{l}.{k}" for l, row in enumerate(it["validated"]) for k, ok in enumerate(row) if ok]
    losses = ""
    if "copy_drop" in it:
        losses = (f" (loss {it['loss_second_copy']:.2f} nats on the second copy of the repeated random sequences, "
                  f"{it['loss_reordered_half']:.2f} on the same letters reordered at the same positions)")
    if passed:
        return f"Head(s) {', '.join(passed)} pass the repeated-sequence induction test{losses}."
    return f"No head passes the repeated-sequence induction test{losses}."


def model_findings(summary: dict, top: int = TOP_HEADS) -> ModelFindings:
    """The opening of one model's report, from its summary (the summary.json contract)."""
    valid = sorted((h for h in summary["heads"] if h["validated"]), key=_conservative, reverse=True)
    return ModelFindings(count_sentence(summary), layers_sentence(summary),
                         tuple(head_sentence(summary, h) for h in valid[:top]), induction_sentence(summary))
