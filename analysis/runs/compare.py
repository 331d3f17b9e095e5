"""Two analyses side by side (English vs Hebrew, or any two checkpoints).

`compare_summaries` turns two summary dicts into numbers — validated heads per
behaviour and where they sit, offset profiles, locality, the induction test, and
vowel/consonant attention in each language's own classes — and `findings` writes
sentences from those numbers only. `parallel_windows` picks held-out windows that
start at the same verses in both Bibles, so both models read the same passages.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from analysis.report.figures.base import class_preference, detector_maps, head_names, offset_profiles, save, style, validated_counts
from analysis.report.html import figure_entries, first_validated, head_view, write_page
from analysis.runs.single import TextSplit
from data.corpora import corpus_from_identity

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


def compare_summaries(a: dict, b: dict, split: str = "heldout") -> dict:
    """Both models' numbers and the findings written from them (compare.json)."""
    na, nb = model_numbers(a, split), model_numbers(b, split)
    result = {"models": [na, nb], "split": split, "texts": [a.get("texts"), b.get("texts")]}
    result["findings"] = findings(na, nb)
    return result


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


def behaviour_rows(cmp: dict) -> list[dict]:
    """One table row per behaviour: validated head count and layers in each model."""
    a, b = cmp["models"]
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


def parallel_windows(units_a: Sequence[tuple[str, str]], units_b: Sequence[tuple[str, str]], T: int, n: int,
                     seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """Held-out windows of T characters that start at the same verse in both texts.
    Both texts are the verses whose references ("Ruth 1:1") appear in both, joined by
    newlines in the order of `units_a`; windows do not overlap in either text; a seeded
    choice of at most `n` of them. Returns (windows_a, windows_b, starting references)."""
    b_text = dict(units_b)
    keys = [k for k, _ in units_a if k in b_text]
    a_text = dict(units_a)
    texts, starts = [], []
    for source in (a_text, b_text):
        pos, start = 0, {}
        for k in keys:
            start[k] = pos
            pos += len(source[k]) + 1
        texts.append("\n".join(source[k] for k in keys) + "\n")
        starts.append(start)
    chosen, ends = [], [0, 0]
    for k in keys:
        s = [starts[0][k], starts[1][k]]
        if all(s[i] >= ends[i] and s[i] + T <= len(texts[i]) for i in range(2)):
            chosen.append(k)
            ends = [s[0] + T, s[1] + T]
    if len(chosen) > n:
        pick = np.sort(np.random.default_rng(seed).choice(len(chosen), n, replace=False))
        chosen = [chosen[i] for i in pick]
    return ([texts[0][starts[0][k]:starts[0][k] + T] for k in chosen],
            [texts[1][starts[1][k]:starts[1][k] + T] for k in chosen], chosen)


def write_comparison(a: dict, b: dict, examples_a: Optional[dict], examples_b: Optional[dict], out_dir: Path | str,
                     links: Sequence[dict] = (), split: str = "heldout") -> dict:
    """compare.json, the comparison figures and report.html into `out_dir` (which must exist)."""
    out_dir = fig_dir = Path(out_dir)
    cmp = compare_summaries(a, b, split)
    (out_dir / "compare.json").write_text(json.dumps(cmp, ensure_ascii=False, indent=1), encoding="utf-8")
    A, B = a.get("name", "A"), b.get("name", "B")
    made = []

    def add(name: str, title: str, fig, caption: str) -> None:
        save(fig, fig_dir / name)
        made.append({"name": name, "title": title, "file": f"{name}.png", "caption": caption})

    with style():
        add("compare_detector_maps", "Detector score maps side by side", detector_maps([a, b], split),
            f"Each detector's {split} score minus the uniform baseline, {A} and {B} next to each other; boxed: validated.")
        add("compare_validated_counts", "Validated heads per behaviour", validated_counts([a, b]),
            "How many heads of each model have each behaviour validated, and in which layers.")
        if "offset_profile" in a and "offset_profile" in b:
            profiles = {s.get("name", k): (s["offset_profile"]["offsets"],
                                           s["offset_profile"].get(split, s["offset_profile"]["discovery"]))
                        for k, s in (("A", a), ("B", b))}
            add("compare_offset_profiles", "Offset profiles overlaid",
                offset_profiles(profiles, f"mean attention by relative offset: {A} vs {B}"),
                "Every head's mean attention at each offset, both models drawn in the same panel.")
        if "class_attention" in a and "class_attention" in b:
            add("compare_class_preference", "Character-class preference, each in its own classes",
                class_preference([a, b]),
                "Each model's most class-selective head: log2 of class-to-class attention over the base rate, "
                "in that language's own character classes.")
    views = []
    for s, ex in ((a, examples_a), (b, examples_b)):
        if ex is not None and len(ex.get("text", [])):
            views.append(head_view(ex, s.get("name", ""), head_names(s), start=first_validated(s)))
    data = {"title": f"charlens: {A} vs {B}",
            "findings": cmp["findings"],
            "findings_note": "Written from the numbers in compare.json (validated heads, offset profiles, class "
                             "attention, head metrics); nothing here is fixed text.",
            "links": list(links),
            "tables": [{"title": "Validated heads per behaviour", "rows": behaviour_rows(cmp)}],
            "figures": figure_entries(made, fig_dir),
            "views": views}
    write_page(data, out_dir / "report.html")
    return cmp


def use_parallel_verses(inputs_a, inputs_b, n_windows: int, seed: int = 0) -> bool:
    """When both analyses read the default Bibles, replace their held-out windows by
    windows that start at the same held-out verses (`parallel_windows`), each in its own
    language. `inputs_*` are `analysis.runs.single.AnalysisInputs`. Returns whether it did."""
    identities = [i.state.get("corpus") or {} for i in (inputs_a, inputs_b)]
    if not all(ident.get("kind") == "bible" for ident in identities):
        return False
    ca, cb = (corpus_from_identity(ident) for ident in identities)
    T = min(inputs_a.model.config.block_size, inputs_b.model.config.block_size)
    wa, wb, keys = parallel_windows(ca.heldout_units, cb.heldout_units, T, n_windows, seed)
    for inputs, windows, corpus, other in ((inputs_a, wa, ca, cb), (inputs_b, wb, cb, ca)):
        inputs.heldout = TextSplit(f"{corpus.name} held-out verses, {len(keys)} windows starting at the same "
                                   f"verses as in {other.name} ({keys[0]} ... {keys[-1]})" if keys else "none",
                                   windows, sum(map(len, windows)), unknown="replace")
    return True
