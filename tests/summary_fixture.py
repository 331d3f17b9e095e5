"""Synthetic analysis results that follow the data contract (summary.json and
attention_examples.npz), built from hand-set attention patterns, for the tests of
figures, the HTML report and the comparison."""
from __future__ import annotations

import numpy as np

from charlens.analysis.runs.single import head_similarity, most_class_selective

EN_CLASSES = ["vowel", "consonant", "space", "punctuation"]
HE_CLASSES = EN_CLASSES  # shared names (as data.charclasses has them), different letters in each class


def hand_attention(text: str, kinds: list[list[str]]) -> np.ndarray:
    """(L, H, T, T) attention where head (l, h) follows rule kinds[l][h]:
    'prev' (i-1), 'self', 'space' (most recent earlier space), 'offset3', 'uniform'.
    A row whose target does not exist attends to position 0."""
    T = len(text)
    L, H = len(kinds), len(kinds[0])
    att = np.zeros((L, H, T, T))
    last_space = -1
    for i in range(T):
        targets = {"prev": i - 1, "self": i, "space": last_space, "offset3": i - 3}
        for l in range(L):
            for h in range(H):
                if kinds[l][h] == "uniform":
                    att[l, h, i, : i + 1] = 1.0 / (i + 1)
                else:
                    att[l, h, i, max(targets[kinds[l][h]], 0)] = 1.0
        if text[i] == " ":
            last_space = i
    return att


def make_summary(name: str = "en", lang: str = "en", n_layer: int = 2, n_head: int = 3,
                 validated: dict | None = None, extra_head_keys: bool = False) -> dict:
    """A summary dict with the contract's keys; `validated` maps a detector name to the
    (layer, head) pairs validated for it (each gets a high score and selectivity)."""
    L, H = n_layer, n_head
    validated = validated if validated is not None else {"previous_char": [(0, 0), (1, 1)], "recent_space": [(0, 1)],
                                                         "offset_3": [(1, 0)], "punctuation": []}
    rng = np.random.default_rng(len(name))
    detectors = {}
    for det, heads in validated.items():
        baseline = np.full((L, H), 0.1)
        score = baseline + rng.uniform(-0.03, 0.03, (L, H))
        mask = np.zeros((L, H), bool)
        for l, h in heads:
            score[l, h], mask[l, h] = 0.9, True
        g = (score - baseline) / (1 - baseline)
        split = {"score": score.tolist(), "baseline": baseline.tolist(), "control": baseline.tolist(), "selectivity": g.tolist(),
                 "selectivity_ci": np.stack([g - 0.02, g + 0.02], -1).tolist(),
                 "confidence": np.where(mask, 0.95, 0.1).tolist(), "n_windows": np.full((L, H), 40).tolist(), "n_scored": 40}
        detectors[det] = {"description": f"targets of {det}", "control": "uniform", "discovery": split, "heldout": split,
                          "validated": mask.tolist()}
    heads = []
    for l in range(L):
        for h in range(H):
            behaviours = [d for d, hs in validated.items() if (l, h) in hs]
            b = behaviours[0] if behaviours else "none"
            g = 0.89 if behaviours else 0.0
            entry = {"layer": l, "head": h, "behaviour": b, "kind": "detector" if behaviours else "none",
                     "candidate": behaviours[0] if behaviours else "self",
                     "validated": bool(behaviours), "borderline": False, "selectivity": g, "heldout_selectivity": g - 0.02,
                     "margin": g - 0.32, "margin_se": (g - 0.3) / 0.01, "score": 0.9 if behaviours else 0.1,
                     "heldout_score": 0.88 if behaviours else 0.1, "baseline": 0.1, "confidence": 0.95 if behaviours else 0.0,
                     "n_windows": 40, "components": f"0.90 {b}" if behaviours else "1.00 uniform",
                     "unexplained": 0.05, "key_chars": [{"char": " ", "mass": 0.3, "control": 0.2}] if behaviours else [],
                     "behaviours": behaviours}
            if extra_head_keys:
                entry["ablation_delta_loss"] = round(0.01 * (l * H + h), 4)
            heads.append(entry)
    K = 8
    profile = rng.dirichlet(np.ones(K + 1), (L, H))
    for det, hs in validated.items():
        if det.startswith("offset_") or det == "previous_char":
            k = 1 if det == "previous_char" else int(det.split("_")[1])
            for l, h in hs:
                profile[l, h] = 0.02
                profile[l, h, k] = 1 - 0.02 * K
    classes = EN_CLASSES if lang == "en" else HE_CLASSES
    C = len(classes)
    base = np.full((C, C), 1.0 / C)
    cls = np.broadcast_to(base, (L, H, C, C)).copy()
    cls[L - 1, H - 1] = np.eye(C) * 0.7 + 0.3 / C  # one class-selective head
    return {
        "schema": 6, "checkpoint": f"checkpoints/{name}.pt", "name": name, "lang": lang,
        "model": {"n_layer": L, "n_head": H, "n_embd": 24, "block_size": 32},
        "settings": {"window": 32, "min_selectivity": 0.3, "alpha": 0.05, "n_boot": 200, "min_windows": 10},
        "texts": {"discovery": {"source": "train", "n_windows": 40, "n_chars": 1280},
                  "heldout": {"source": "heldout", "n_windows": 40, "n_chars": 1280}},
        "detectors": detectors,
        "heads": heads,
        "offset_profile": {"offsets": list(range(K + 1)), "discovery": profile.tolist(), "heldout": profile.tolist()},
        "class_attention": {"classes": classes, "discovery": cls.tolist(), "base_rate": base.tolist(),
                            "most_selective": most_class_selective(cls, base)},
        "head_metrics": {"mean_distance": rng.uniform(1, 10, (L, H)).tolist(),
                         "normalized_entropy": rng.uniform(0, 1, (L, H)).tolist(),
                         "first_position": rng.uniform(0, 0.2, (L, H)).tolist()},
        "induction_test": {"score": np.zeros((L, H)).tolist(), "baseline": 0.05, "validated": np.zeros((L, H), bool).tolist(),
                           "loss_first_copy": 3.1, "loss_second_copy": 3.0, "loss_reordered_half": 3.05,
                           "copy_drop": 0.05, "copy_drop_se": 0.02, "copy_sequences": 256},
        "decomposition": {"basis": ["previous_char", "uniform"], "weights": np.full((L, H, 2), 0.5).tolist(),
                          "unexplained": np.full((L, H), 0.05).tolist(), "n_windows": {"discovery": 40, "heldout": 40}},
        "salient_patterns": [{"layer": 0, "head": 0, "from": "h", "to": "t", "weight": 0.97, "context": "the"}],
        "head_similarity": head_similarity(make_examples([SIMILARITY_TEXT])) if (L, H) == (2, 3) else None,
    }


HEBREW = "בראשית ברא אלהים את השמים ואת הארץ׃ והארץ היתה"


def drawn_texts(fig) -> list:
    """Every visible, non-empty text artist of a drawn figure."""
    from matplotlib.text import Text
    fig.canvas.draw()
    return [t for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]


KINDS = [["prev", "space", "offset3"], ["offset3", "prev", "uniform"]]  # the heads of make_examples
SIMILARITY_TEXT = "the cat sat on the mat. a dog r"


def make_examples(texts: list[str], lang: str = "en", kinds: list[list[str]] = KINDS) -> dict:
    """The content of attention_examples.npz for hand-set heads on `texts` (equal lengths)."""
    att = np.stack([hand_attention(t, kinds) for t in texts]).astype(np.float16)
    classes = EN_CLASSES if lang == "en" else HE_CLASSES
    cls = np.array([[2 if c == " " else 3 if c in ".,;:" else 0 if c in "aeiou" else 1 for c in t] for t in texts],
                   dtype=np.int8)
    return {"attention": att, "text": np.array(texts), "classes": cls, "class_names": np.array(classes),
            "lang": np.array(lang)}
