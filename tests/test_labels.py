"""Labels v3 known answers (issue 19): hand-made heads built from token ids (tests/handmade.py, never with the
detector functions), installed through blocks.L.attn.hook_pattern, analysed end to end.

- Content-blind heads (windows over offsets 0..k, exponential decays, pure offsets) get no word, line or class
  label, and no word, line or class detector validates for them: the structural control holds their offsets fixed.
- Two- and three-component mixtures get the mixture label, with decomposition shares within 0.05.
- Heads on the latest occurrence of one character get `key 'x'`, not its class; a head on the latest character
  of a class keeps the class label. English on a trained host, Hebrew on an untrained one."""
from __future__ import annotations

import pytest
import torch

from analyzer_helpers import make_checkpoint
from charlens.analysis.measures.detectors import REGISTRY
from charlens.analysis.runs.inputs import Settings, load_inputs
from charlens.analysis.runs.results import Summary
from charlens.analysis.runs.single import run_analysis
from charlens.data.charclasses import TABLES
from handmade import MIXTURES, as_head, decay, english_heads, ids_of, latest_of, latest_same_class, offset, window
from planted import plant

SETTINGS = Settings(n_windows=96, n_boot=300, induction_windows=16, decompose_windows=32)
# word, line and class detectors: every detector whose control is not uniform or prefix
NOT_POSITIONAL = {n for n, d in REGISTRY.items() if d.control in ("structure", "position")}


def analyse(ckpt, lang: str, heads: dict) -> dict[tuple[int, int], dict]:
    inputs = load_inputs(ckpt, SETTINGS)
    plant(inputs.model, inputs.tokenizer, lang, {lh: f(inputs.tokenizer) for lh, (_, f) in heads.items()})
    torch.set_num_threads(1)
    summary = Summary(run_analysis(inputs, SETTINGS)).to_dict()
    return {(h["layer"], h["head"]): h for h in summary["heads"]}


def shares(head: dict) -> dict[str, float]:
    """The head table's components, '0.50 offset_2 + 0.50 recent_space' -> {name: weight}."""
    return {name: float(w) for w, name in (part.split(" ") for part in head["components"].split(" + "))}


def parts_of(label: str) -> set[str]:
    return set(label.split(" + "))


def test_english_heads_on_a_trained_host(english_host):
    heads = analyse(english_host, "en", english_heads())
    for layer in (0, 1, 2):  # content-blind: windows, decays, pure offsets
        for h in range(8):
            head = heads[(layer, h)]
            assert not parts_of(head["behaviour"]) & NOT_POSITIONAL, (layer, h, head["behaviour"])
            assert not set(head["behaviours"]) & NOT_POSITIONAL, (layer, h, head["behaviours"])
    for k in range(1, 9):  # a pure offset head is that offset, all of it, and the decomposition accounts for it
        head = heads[(2, k - 1)]
        name = "previous_char" if k == 1 else f"offset_{k}"
        assert head["behaviour"] == name and head["kind"] == "detector"
        assert shares(head)[name] == pytest.approx(1.0, abs=0.01) and head["unexplained"] <= 0.05
    assert heads[(0, 1)]["behaviour"] == "local"  # spread over the local window 0..2
    for lh, want in MIXTURES.items():
        head = heads[lh]
        assert head["kind"] == "mixture" and head["behaviour"] == " + ".join(n for n in REGISTRY if n in want)
        got = shares(head)
        assert all(got.get(n, 0.0) == pytest.approx(w, abs=0.05) for n, w in want.items()), (lh, head["components"])
        assert head["unexplained"] <= 0.05
    assert heads[(3, 4)]["behaviour"] == "key 'e'" and heads[(3, 4)]["candidate"] == "vowel"
    assert heads[(3, 5)]["behaviour"] == "key 'h'" and heads[(3, 5)]["candidate"] == "consonant"
    assert heads[(3, 4)]["key_chars"][0]["char"] == "e" and heads[(3, 4)]["unexplained"] > 0.5  # no pattern is one letter
    assert heads[(3, 6)]["behaviour"] == "vowel"  # every vowel: the enrichment is spread over the class


def test_hebrew_single_letter_heads_and_content_blind_heads(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path, n_layer=1, n_head=8, n_embd=32, block_size=64, bible=True, lang="he")
    consonants = lambda tok: "".join(c for c in TABLES["he"]["consonant"] if c in tok.stoi)
    heads = analyse(ckpt, "he", {
        (0, 0): ("latest ר", lambda tok: as_head(latest_of(ids_of(tok, "ר")))),
        (0, 1): ("latest ו", lambda tok: as_head(latest_of(ids_of(tok, "ו")))),
        (0, 2): ("latest consonant", lambda tok: as_head(latest_of(ids_of(tok, consonants(tok))))),
        (0, 3): ("latest of the query's class", lambda tok: as_head(latest_same_class())),
        (0, 4): ("window 0..7", lambda tok: window(7)),
        (0, 5): ("offset 5", lambda tok: as_head(offset(5))),
        (0, 6): ("decay 4", lambda tok: decay(4))})
    assert heads[(0, 0)]["behaviour"] == "key 'ר'" and heads[(0, 0)]["candidate"] == "consonant"
    assert heads[(0, 1)]["behaviour"] == "key 'ו'" and heads[(0, 1)]["candidate"] == "vowel"
    assert heads[(0, 2)]["behaviour"] == "consonant"
    for h in (3, 4, 5, 6):  # no word or line label for heads that know where they look, not where words are
        assert not parts_of(heads[(0, h)]["behaviour"]) & NOT_POSITIONAL, heads[(0, h)]
        assert not {"same_word", "previous_word", "word_start", "line_start"} & set(heads[(0, h)]["behaviours"])
    assert heads[(0, 5)]["behaviour"] == "offset_5" and heads[(0, 7)]["behaviour"] == "none"
