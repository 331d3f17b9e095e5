"""Known-answer tests of the whole analysis: hand-set heads are found (and nothing else), untrained
models get no validated head beyond chance, and a briefly trained model grows a previous-character head."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from charlens.analysis.report.render import write_analysis_report
from charlens.analysis.runs.inputs import Settings, load_inputs
from charlens.analysis.runs.results import Summary
from charlens.analysis.runs.single import most_class_selective, run_analysis
from analyzer_helpers import make_checkpoint
from charlens.analysis.measures.ablation import repeated_random_windows
from charlens.analysis.measures.detectors import detectors_for
from charlens.analysis.measures.induction import score_repeated
from charlens.analysis.measures.positional import StratumCounts
from charlens.analysis.measures.scoring import score_windows
from charlens.analysis.measures.stats import per_test_alpha, split_stats, validated as stat_validated
from charlens.analysis.runs.extract import char_batch
from charlens.analysis.runs.inputs import sample_windows
from charlens.data.corpora import bible_corpus
from charlens.data.tokenizer import CharTokenizer
from charlens.model.hooks import attention_patterns
from charlens.model.transformer import ModelConfig, TransformerLM
from planted import KNOWN, latest, mix, plant, targets, uniform
from summary_fixture import make_summary

FAST = dict(n_windows=96, n_boot=300, induction_windows=16, decompose_windows=32)


def test_planted_heads_get_exactly_their_labels(tmp_path):
    """Precision and recall 1: every planted head gets its label (one-character copier: not induction; word-start
    head: not a class; 0.38 on itself: self), and the model's own untrained heads get none."""
    ckpt, _ = make_checkpoint(tmp_path, n_layer=2, n_head=6, n_embd=24, block_size=64, bible=True)
    settings = Settings(**FAST)
    inputs = load_inputs(ckpt, settings)
    names = list(KNOWN)
    where = {(k // 6, k % 6): name for k, name in enumerate(names)}  # 10 planted heads, L1H4 and L1H5 left as they are
    plant(inputs.model, inputs.tokenizer, "en", {lh: KNOWN[name][0] for lh, name in where.items()})
    summary = Summary(run_analysis(inputs, settings)).to_dict()
    got = {(h["layer"], h["head"]): h["behaviour"] for h in summary["heads"] if h["validated"]}
    assert got == {lh: KNOWN[name][1] for lh, name in where.items()}
    heads = {(h["layer"], h["head"]): h for h in summary["heads"]}
    for lh, name in where.items():
        h = heads[lh]
        assert h["margin"] > 0 and not h["borderline"], (name, h)
        assert not {"vowel", "consonant", "capital"} & set(h["behaviours"]), (name, h["behaviours"])
    assert heads[(0, 3)]["candidate"] == "prefix_match_3" and heads[(0, 4)]["candidate"] == "prefix_match_4"
    assert heads[(0, 5)]["behaviours"] == ["prefix_match_1"]
    ind = summary["induction_test"]
    assert ind["validated"][0][3] and ind["validated"][0][4] and not ind["validated"][0][5]  # the copier fails it
    assert heads[(1, 2)]["selectivity"] == pytest.approx((0.38 - 0.0615) / (1 - 0.0615), abs=0.01)  # self, T = 64
    # the decomposition names what was planted: half previous character, half uniform
    assert heads[(1, 3)]["components"].startswith(("0.50 previous_char + 0.50 uniform", "0.50 uniform + 0.50 previous_char"))
    assert heads[(1, 3)]["unexplained"] < 0.01


def test_word_start_heads_are_not_vowel_heads_in_hebrew(tmp_path):
    """Word-initial Hebrew letters are often vowel letters (ו ה א י): a head on word starts, even one that spreads
    most of its mass uniformly, is a word-start head, not a vowel head, once its positions are accounted for."""
    ckpt, _ = make_checkpoint(tmp_path, n_layer=1, n_head=3, n_embd=24, block_size=64, bible=True, lang="he")
    settings = Settings(**FAST)
    inputs = load_inputs(ckpt, settings)
    word_start = latest(targets("word_start"))
    plant(inputs.model, inputs.tokenizer, "he", {(0, 0): word_start, (0, 1): mix((0.45, latest(targets("word_start"), "uniform")),
                                                                                   (0.55, uniform))})
    summary = Summary(run_analysis(inputs, settings)).to_dict()
    heads = summary["heads"]
    assert [h["behaviour"] for h in heads] == ["word_start", "word_start", "none"]
    vowel = summary["detectors"]["vowel"]["heldout"]
    assert vowel["score"][0][0] > vowel["baseline"][0][0] + 0.05  # more vowel mass than uniform attention ...
    assert abs(vowel["selectivity"][0][0]) < 0.1  # ... but not beyond its positions


def test_untrained_models_get_no_validated_head():
    """False positives over 20 freshly initialized models (2 x 4 heads, every English detector and the repeated-sequence
    test on both splits, 32 windows each): the analysis's scoring and rule, without the report. None may validate,
    and none comes near the cut."""
    corpus = bible_corpus("en")
    tok = CharTokenizer.from_text(corpus.train + corpus.heldout)
    names = detectors_for("en")
    rng = np.random.default_rng(0)
    splits = {k: sample_windows(text, 32, 32, rng) for k, text in (("discovery", corpus.train), ("heldout", corpus.heldout))}
    chars = {k: char_batch(tok, w, "en") for k, w in splits.items()}
    counts = {k: StratumCounts(names) for k in splits}
    for k, c in counts.items():
        c.add(chars[k])
    alpha = per_test_alpha(0.05, (len(names) + 1) * 8)
    validated, tests, highest = 0, 0, -1.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: on a shared CPU, spinning threads cost more than they give
    try:
        for seed in range(20):
            torch.manual_seed(seed)
            model = TransformerLM(ModelConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=4, n_embd=32)).eval()
            stats = []
            with torch.no_grad():
                for k in splits:
                    att = attention_patterns(model, chars[k].ids)
                    ws = score_windows(att, chars[k], names, counts[k].frequencies())
                    stats.append(split_stats(ws.score.numpy(), ws.control.numpy(), ws.baseline.numpy(), 0.3, alpha, 200, rng))
                    ids = repeated_random_windows(range(1, tok.vocab_size), 16, 32, seed=seed)[:, :32]
                    att = attention_patterns(model, ids)
                    ws = score_repeated(att, ids, 16)
                    stats.append(split_stats(ws.score.numpy(), ws.control.numpy(), ws.baseline.numpy(), 0.3, alpha, 200, rng))
            flags = np.concatenate([stat_validated(stats[0], stats[2], 0.3, 10), stat_validated(stats[1], stats[3], 0.3, 10)])
            validated += int(flags.sum())
            tests += flags.size
            highest = max([highest] + [float(np.nanmax(s.bound[..., 0])) for s in stats])
    finally:
        torch.set_num_threads(threads)
    assert tests == 20 * 2 * 4 * (len(names) + 1) == 20 * 8 * 27
    assert validated == 0 and highest < 0.05  # the lower bound of no head comes within 0.25 of the cut


def test_briefly_trained_model_grows_a_previous_character_head(second_order_checkpoint, tmp_path):
    """Text made by a second-order rule: each character is the one two places back plus 1 or 2 (mod 8), so
    the next character can only be predicted by looking at the previous one; a previous-character head must grow."""
    ckpt = second_order_checkpoint
    settings = Settings(n_windows=64, n_boot=300, induction_windows=8)
    (tmp_path / "report").mkdir()
    summary = write_analysis_report(Summary(run_analysis(load_inputs(ckpt, settings), settings)), tmp_path / "report")
    prev = [h for h in summary["heads"] if h["behaviour"] == "previous_char"]
    assert prev, [(h["candidate"], round(h["score"], 2)) for h in summary["heads"]]
    assert all(h["heldout_score"] > 0.4 and h["confidence"] > 0.5 for h in prev)
    saved = json.loads((tmp_path / "report" / "summary.json").read_text(encoding="utf-8"))
    assert saved["heads"] == json.loads(json.dumps(summary["heads"]))
    assert {"summary.json", "heads.csv", "report.md", "report.html", "attention_examples.npz"} <= {p.name for p in (tmp_path / "report").iterdir()}


def test_offset_profile_names_the_offsets_of_the_chosen_detectors(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path)
    settings = Settings(n_windows=16, n_boot=50, induction_windows=4, detectors=["offset_3", "space", "self"])
    profile = run_analysis(load_inputs(ckpt, settings), settings).offset_profile
    assert profile["offsets"] == [0, 3] and np.array(profile["discovery"]).shape == (2, 2, 2)


def test_class_selective_head_is_found():
    s = make_summary()
    ca = s["class_attention"]
    best = most_class_selective(np.asarray(ca["discovery"]), np.asarray(ca["base_rate"]))
    (l, h), ratio = best["head"], np.asarray(best["log2_ratio"])
    assert (l, h) == (1, 2)  # the fixture makes the last head attend within its own class
    assert ratio.shape == (4, 4)
    off_diagonal = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(np.diag(ratio), np.log2((0.7 + 0.3 / 4 + 1e-4) / (0.25 + 1e-4)))
    np.testing.assert_allclose(ratio[off_diagonal], np.log2((0.3 / 4 + 1e-4) / (0.25 + 1e-4)))
