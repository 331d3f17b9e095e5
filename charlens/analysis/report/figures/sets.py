"""The standard figure set of one analysis."""
from __future__ import annotations

from typing import Optional

import numpy as np

from charlens.analysis.report.figures.attention import HEATMAP_CHARS, attention_heatmap, flow_graph, heads_grid, rollout_graph
from charlens.analysis.report.figures.base import FigureWriter, head_names, style
from charlens.analysis.report.figures.heads import (behaviour_summary, class_preference, detector_maps, offset_profiles,
                                           similarity_figure)
from charlens.analysis.report.figures.timeline import every_head_figure, timeline_figure
from charlens.analysis.report.hebrew import snippet


def analysis_figures(summary: dict, examples: Optional[dict], out: FigureWriter) -> list[dict]:
    """Draw the standard figures of one analysis (`summary`: the summary.json contract; `examples`:
    the content of attention_examples.npz, or None) and return their entries."""
    add = out.add
    names = head_names(summary)
    with style():
        add("behaviours", "Head behaviour summary", behaviour_summary(summary),
            "Primary validated behaviour of every head; opacity and percentage give its confidence "
            "(share of windows on which the behaviour holds).")
        split = "heldout" if all("heldout" in d for d in summary["detectors"].values()) else "discovery"
        add("detector_maps", "Detector selectivity maps", detector_maps([summary], split),
            f"Each detector's {split} selectivity: the share of the possible gain over the detector's control the head "
            "achieves (1 = all its mass on the targets, 0 = no better than the control); boxed heads are validated.")
        if "offset_profile" in summary:
            op = summary["offset_profile"]
            add("offset_profiles", "Offset profiles",
                offset_profiles({summary.get("name", ""): (op["offsets"], op.get(split, op["discovery"]))}),
                "Mean attention each head puts at each relative offset (0 = the character itself).")
        if "class_attention" in summary:
            add("class_preference", "Character-class preference", class_preference([summary]),
                "Class-to-class attention of the most class-selective head over the base rate, "
                "in this language's own character classes.")
        if examples is not None and len(examples.get("text", [])):
            att = np.asarray(examples["attention"], dtype=np.float32)
            text = str(examples["text"][0])
            L, H = att.shape[1:3]
            first = att[0, :, :, : len(text), : len(text)]  # shorter texts are zero-padded
            # A prefix of a causal window keeps its attention rows exact: the heatmaps show
            # the first HEATMAP_CHARS characters, so that every character can be labelled.
            short = text[:HEATMAP_CHARS]
            part = f" (first {len(short)} of {len(text)} characters)" if len(short) < len(text) else ""
            best = _most_validated_head(summary)
            add("heatmap", f"Attention heatmap, L{best[0]}H{best[1]}",
                attention_heatmap(first[best[0], best[1], : len(short), : len(short)], short,
                                  f"L{best[0]}H{best[1]} ({names[best[0] * H + best[1]]}): " + snippet(text, 30) + part),
                "One head on one text: each row is a query character, each column a key it may attend to.", svg=True)
            add("heads_grid", "All heads on one text", heads_grid(first[:, :, : len(short), : len(short)], short, names),
                "Every head's attention on the same text (rows: queries, columns: keys).")
            if summary.get("head_similarity"):
                D = np.asarray(summary["head_similarity"]["distance"], dtype=float)
                labels = [f"L{l}H{h} {names[l * H + h]}" if names[l * H + h] != "none" else f"L{l}H{h}"
                          for l in range(L) for h in range(H)]
                add("similarity", "Head similarity", similarity_figure(D, labels),
                    "Mean Jensen–Shannon distance between heads' attention rows on the same inputs, "
                    "clustered (average linkage); heads that behave alike sit together.")
            add("flow_head", f"Attention flow graph, L{best[0]}H{best[1]}",
                flow_graph(first, text, best[0], best[1]),
                "Characters as nodes, lines weighted by the head's attention from each query (below) to its keys (above).")
            add("flow_rollout", "Attention flow rolled out across layers", rollout_graph(first, text),
                "The last character's attention followed down through every layer (head average plus residual); "
                "the bottom row's shading is its attention rollout over the input characters.")
        timeline = summary.get("timeline") or {}
        if timeline.get("recorded"):
            add("timeline", "Heads forming during training", timeline_figure(timeline),
                f"Selectivity on the probe set at {len(timeline['steps'])} recorded steps (log axis): the loss, the strongest "
                f"head per behaviour, and every validated head's labels (thick: its label in the head table); dashed: the "
                f"cut {timeline['cut']}; dotted: the formation step (from there on past the cut at every record). "
                + " ".join(h["sentence"] for h in timeline["heads"] if h["primary"]))
            if timeline.get("every_head"):
                add("timeline_heads", "Every head over training, per behaviour", every_head_figure(timeline),
                    "For each label a head of the final model has: every head's selectivity for it on the probe set "
                    "(grey), the heads that end with the label in colour; dashed: the cut.")
    return out.entries

def _most_validated_head(summary: dict) -> tuple[int, int]:
    """The head with the highest held-out score among validated heads (else layer 0 head 0)."""
    best, key = (0, 0), -1.0
    for head in summary["heads"]:
        if head.get("validated") and float(head.get("heldout_score") or 0) > key:
            best, key = (head["layer"], head["head"]), float(head.get("heldout_score") or 0)
    return best
