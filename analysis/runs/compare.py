"""Two analyses side by side (English vs Hebrew, or any two checkpoints).

`compare_summaries` turns two summary dicts into numbers — validated heads per
behaviour and where they sit, offset profiles, locality, the induction test, and
vowel/consonant attention in each language's own classes — and `findings` writes
sentences from those numbers only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

VOWEL_CONSONANT = ("vowel", "consonant")


def validated_heads(summary: dict) -> dict[str, list[tuple[int, int]]]:
    """Detector name -> validated (layer, head) pairs, for every detector of the summary."""
    return {d: [(int(l), int(h)) for l, h in zip(*np.nonzero(np.asarray(v["validated"], dtype=bool)))]
            for d, v in summary["detectors"].items()}


def vowel_consonant(summary: dict) -> Optional[dict]:
    """Class-to-class attention among the summary's own vowel and consonant classes.
    Returns the head-mean attention and base rate (2×2, rows: query class) and the head
    with the largest ratio over the base rate, or None where the classes are absent."""
    ca = summary.get("class_attention")
    if not ca or not all(c in ca["classes"] for c in VOWEL_CONSONANT):
        return None
    idx = [ca["classes"].index(c) for c in VOWEL_CONSONANT]
    att = np.asarray(ca["discovery"], dtype=float)[:, :, idx][:, :, :, idx]  # (L, H, 2, 2)
    base = np.asarray(ca["base_rate"], dtype=float)[np.ix_(idx, idx)]
    if not np.all(base > 0):
        return None
    ratio = att / base
    l, h, q, k = np.unravel_index(np.nanargmax(ratio), ratio.shape)
    return {"classes": list(VOWEL_CONSONANT), "mean_attention": np.nanmean(att, (0, 1)).tolist(),
            "base_rate": base.tolist(),
            "strongest": {"head": f"L{l}H{h}", "from": VOWEL_CONSONANT[q], "to": VOWEL_CONSONANT[k],
                          "attention": float(att[l, h, q, k]), "base_rate": float(base[q, k]),
                          "ratio": float(ratio[l, h, q, k])}}


def _mean(summary: dict, *keys: str) -> Optional[float]:
    value = summary
    for k in keys:
        if not isinstance(value, dict) or k not in value:
            return None
        value = value[k]
    arr = np.asarray(value, dtype=float)
    return float(np.nanmean(arr)) if arr.size else None


def model_numbers(summary: dict, split: str = "heldout") -> dict:
    """The per-model numbers the comparison rests on."""
    L, H = summary["model"]["n_layer"], summary["model"]["n_head"]
    heads = validated_heads(summary)
    out = {"name": summary.get("name"), "lang": summary.get("lang"), "n_heads": L * H,
           "validated_heads": sum(bool(h.get("validated")) for h in summary["heads"]),
           "behaviours": {d: {"count": len(v), "layers": sorted({l for l, _ in v}),
                              "heads": [f"L{l}H{h}" for l, h in v]} for d, v in heads.items()},
           "mean_attention_distance": _mean(summary, "head_metrics", "mean_distance"),
           "mean_normalized_entropy": _mean(summary, "head_metrics", "normalized_entropy"),
           "vowel_consonant": vowel_consonant(summary)}
    if "offset_profile" in summary:
        op = summary["offset_profile"]
        prof = np.asarray(op.get(split, op["discovery"]), dtype=float)  # (L, H, K+1)
        out["offsets"] = list(op["offsets"])
        out["mean_offset_profile"] = np.nanmean(prof, (0, 1)).tolist()
        dominant = np.asarray(op["offsets"])[np.nanargmax(prof, -1)]
        out["dominant_offset_counts"] = {int(k): int((dominant == k).sum()) for k in op["offsets"]}
    it = summary.get("induction_test") or {}
    if "loss_first_copy" in it and "loss_second_copy" in it:
        out["induction_loss"] = [it["loss_first_copy"], it["loss_second_copy"]]
    return out


@dataclass(frozen=True)
class Comparison:
    """Two models' numbers and the findings written from them (compare.json)."""

    models: tuple[dict, dict]
    split: str
    texts: tuple[Optional[dict], Optional[dict]]
    findings: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"models": list(self.models), "split": self.split, "texts": list(self.texts), "findings": list(self.findings)}


def compare_summaries(a: dict, b: dict, split: str = "heldout") -> Comparison:
    """Compare two summaries (the summary.json contract)."""
    na, nb = model_numbers(a, split), model_numbers(b, split)
    return Comparison((na, nb), split, (a.get("texts"), b.get("texts")), tuple(findings(na, nb)))


def _layers(layers: Sequence[int]) -> str:
    return ("layer " if len(layers) == 1 else "layers ") + ", ".join(map(str, layers))


def _heads(n: int) -> str:
    return f"{n} head" + ("" if n == 1 else "s")


def findings(a: dict, b: dict) -> list[str]:
    """Sentences from the numbers of `model_numbers`: nothing here is fixed text about
    what the models do; every claim is a comparison of two computed values."""
    A, B = a["name"], b["name"]
    out = [f"{A} has {a['validated_heads']} of {a['n_heads']} heads with a validated behaviour; "
           f"{B} has {b['validated_heads']} of {b['n_heads']}."]
    neither = []
    for d in dict.fromkeys(list(a["behaviours"]) + list(b["behaviours"])):
        x = a["behaviours"].get(d, {"count": 0, "layers": []})
        y = b["behaviours"].get(d, {"count": 0, "layers": []})
        if x["count"] and y["count"]:
            line = (f"{d}: in both — {A} {_heads(x['count'])} ({_layers(x['layers'])}), "
                    f"{B} {_heads(y['count'])} ({_layers(y['layers'])})")
            if min(x["layers"]) != min(y["layers"]):
                first, later = (A, B) if min(x["layers"]) < min(y["layers"]) else (B, A)
                line += f"; it first appears in an earlier layer in {first} than in {later}"
            out.append(line + ".")
        elif x["count"] or y["count"]:
            has, lacks, z = (A, B, x) if x["count"] else (B, A, y)
            out.append(f"{d}: only in {has} — {_heads(z['count'])} ({_layers(z['layers'])}); "
                       f"no validated head in {lacks}.")
        elif d in a["behaviours"] and d in b["behaviours"]:
            neither.append(d)
    if neither:
        out.append("No validated head in either model for: " + ", ".join(neither) + ".")
    if "mean_offset_profile" in a and "mean_offset_profile" in b and a["offsets"] == b["offsets"]:
        pa, pb = np.asarray(a["mean_offset_profile"]), np.asarray(b["mean_offset_profile"])
        k = int(np.nanargmax(np.abs(pa - pb)))
        out.append(f"Offset profiles (mean over heads) differ most at offset {a['offsets'][k]}: "
                   f"{A} {pa[k]:.3f}, {B} {pb[k]:.3f} of the attention.")
        for name, m in ((A, a), (B, b)):
            top = max(m["dominant_offset_counts"].items(), key=lambda kv: kv[1])
            out.append(f"In {name}, the most common strongest offset is {top[0]} ({_heads(top[1])} of {m['n_heads']}).")
    if a["mean_attention_distance"] is not None and b["mean_attention_distance"] is not None:
        nearer = A if a["mean_attention_distance"] < b["mean_attention_distance"] else B
        out.append(f"Mean attention distance over all heads: {A} {a['mean_attention_distance']:.2f} characters, "
                   f"{B} {b['mean_attention_distance']:.2f}; {nearer}'s heads look nearer in characters.")
    if a["mean_normalized_entropy"] is not None and b["mean_normalized_entropy"] is not None:
        out.append(f"Mean normalized attention entropy: {A} {a['mean_normalized_entropy']:.3f}, "
                   f"{B} {b['mean_normalized_entropy']:.3f} (1 = uniform over the visible characters).")
    for name, m in ((A, a), (B, b)):
        vc = m["vowel_consonant"]
        if vc is None:
            out.append(f"{name}: no vowel/consonant classes in its summary, so no vowel/consonant comparison.")
            continue
        s = vc["strongest"]
        mean, base = np.asarray(vc["mean_attention"]), np.asarray(vc["base_rate"])
        out.append(f"{name} (its own vowel and consonant classes): the strongest class preference is {s['head']}, "
                   f"{s['from']} → {s['to']} at {s['ratio']:.2f}× the base rate ({s['attention']:.3f} vs "
                   f"{s['base_rate']:.3f}); averaged over heads, vowels put {mean[0, 0]:.3f} of their attention on vowels "
                   f"(base rate {base[0, 0]:.3f}) and consonants {mean[1, 0]:.3f} (base rate {base[1, 0]:.3f}).")
    if "induction_loss" in a and "induction_loss" in b:
        out.append("Induction test (loss on the first vs second copy of a repeated random sequence): "
                   + "; ".join(f"{n} {m['induction_loss'][0]:.3f} → {m['induction_loss'][1]:.3f} nats"
                               for n, m in ((A, a), (B, b))) + ".")
    return out


def behaviour_rows(cmp: Comparison) -> list[dict]:
    """One table row per behaviour: validated head count and layers in each model."""
    a, b = cmp.models
    rows = []
    for d in dict.fromkeys(list(a["behaviours"]) + list(b["behaviours"])):
        row = {"behaviour": d}
        for m in (a, b):
            x = m["behaviours"].get(d)
            row[f"{m['name']} heads"] = x["count"] if x else None
            row[f"{m['name']} layers"] = x["layers"] if x else None
            row[f"{m['name']} which"] = x["heads"] if x else None
        rows.append(row)
    return rows
