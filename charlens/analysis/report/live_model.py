"""The checkpoint's model, packed for report.html's live view: the page runs the forward pass itself
(templates/live_forward.js), so a reader can type any text offline and watch the heads.

What goes in: the weights as little-endian float16, base64, one blob in state_dict order (lm_head
left out: it is the token embedding, tied), the vocabulary (index = token id, id 0 the unknown
token), the language's character-class and feature tables and the names of the detectors that apply to
the language, so the page encodes and scores typed text as `data.tokenizer` (unknown='replace') and
`analysis.measures.detectors` do (raw scores and the uniform baseline: the positional control needs a
text split's frequencies, so selectivity is the analysis's).

The page's size is capped: a model whose float16 weights exceed `MAX_LIVE_BYTES` is left out and
the entry says why (the page shows the reason). Hand-set heads made of hooks cannot run in the page;
only weights travel, so a head the page should show must be made of weights.
"""
from __future__ import annotations

import base64

from charlens.analysis.measures.detectors import LOCAL_WINDOW, REGISTRY, detectors_for
from charlens.data.charclasses import CLASS_NAMES, FEATURE_BITS, FEATURES, class_map
from charlens.data.tokenizer import UNKNOWN_ID, Tokenizer
from charlens.model.transformer import TransformerLM

MAX_LIVE_BYTES = 4_000_000  # float16 weight bytes (2,000,000 parameters; the small preset has ~0.8M)
TIED = "lm_head.weight"  # the same tensor as wte.weight; sent once


def live_model(model: TransformerLM, tokenizer: Tokenizer, lang: str, name: str = "",
               max_bytes: int = MAX_LIVE_BYTES) -> dict:
    """The live-view entry for `model`: everything the page needs to run it, or {"omitted": why}.
    (`analysis.report.html.live_view` adds the report's head names and the text to open on.)"""
    cfg = model.config
    entry = {"name": name, "lang": lang}
    tensors = [(k, v.detach().cpu()) for k, v in model.state_dict().items() if k != TIED]
    n_params = sum(v.numel() for _, v in tensors)
    if 2 * n_params > max_bytes:
        return {**entry, "omitted": f"its {n_params:,} weights take {2 * n_params / 1e6:.1f} MB as float16, "
                                    f"above the page's cap of {max_bytes / 1e6:.1f} MB"}
    if tokenizer.kind != "char":
        return {**entry, "omitted": f"the page encodes characters only, not a {tokenizer.kind!r} tokenizer"}
    layout, blobs, offset = [], [], 0
    for key, value in tensors:
        blobs.append(value.float().numpy().astype("<f2").tobytes())
        layout.append({"name": key, "shape": list(value.shape), "offset": offset})
        offset += value.numel()
    chars = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)]
    return {**entry,
            "config": {k: getattr(cfg, k) for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")},
            "chars": chars, "unknown_id": UNKNOWN_ID,
            "class_names": list(CLASS_NAMES), "class_table": class_map(lang),
            "feature_table": {c: FEATURE_BITS[f] for f, chars in FEATURES[lang].items() for c in chars},
            "feature_bits": FEATURE_BITS, "local_window": LOCAL_WINDOW,
            "detectors": {n: REGISTRY[n].description for n in detectors_for(lang)},
            "tensors": layout, "weights": base64.b64encode(b"".join(blobs)).decode("ascii"),
            "weight_bytes": 2 * n_params}

