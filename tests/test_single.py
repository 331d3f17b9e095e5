"""Known-answer tests of the whole analysis: hand-set heads are found (and nothing else), untrained
models get no validated head beyond chance, and a briefly trained model grows a previous-character head."""
from __future__ import annotations

import json
from typing import Callable, Optional

import numpy as np
import pytest
import torch

from analysis.report.render import write_analysis_report
from analysis.runs.inputs import Settings, load_inputs
from analysis.runs.results import Summary
from analysis.runs.single import most_class_selective, run_analysis
from analyzer_helpers import make_checkpoint
from summary_fixture import make_summary
from model.hooks import add_hook

FAST = dict(n_windows=96, n_boot=300, induction_windows=8)

KeyOfRow = Callable[[str, int], Optional[int]]  # (window text, query i) -> the key attended, None = uniform


def previous(text: str, i: int) -> Optional[int]:
    return i - 1 if i >= 1 else None


def recent_space(text: str, i: int) -> Optional[int]:
    return max((j for j in range(i) if text[j] in " \n"), default=None)


def offset_3(text: str, i: int) -> Optional[int]:
    return i - 3 if i >= 3 else None


def induction(text: str, i: int) -> Optional[int]:
    earlier = [p for p in range(i - 1) if text[p] == text[i]]
    return earlier[-1] + 1 if earlier else None


def hand_pattern(text: str, key_of_row: KeyOfRow) -> torch.Tensor:
    T = len(text)
    A = torch.zeros(T, T)
    for i in range(T):
        j = key_of_row(text, i)
        if j is None:
            A[i, : i + 1] = 1.0 / (i + 1)
        else:
            A[i, j] = 1.0
    return A


def set_heads(model, tokenizer, heads: dict[tuple[int, int], KeyOfRow]) -> None:
    """Replace the named heads' patterns (through the hook point blocks.L.attn.hook_pattern) by hand-set ones
    computed from the window's characters; the other heads keep the model's own attention."""
    seen = {}
    model.register_forward_pre_hook(lambda m, args: seen.__setitem__("ids", args[0]))
    for layer in {l for l, _ in heads}:
        def hook(att: torch.Tensor, layer: int = layer) -> torch.Tensor:
            att = att.clone()
            texts = [tokenizer.decode(row) for row in seen["ids"]]
            for (l, h), key_of_row in heads.items():
                if l == layer:
                    att[:, h] = torch.stack([hand_pattern(t, key_of_row) for t in texts])
            return att
        add_hook(model, f"blocks.{layer}.attn.hook_pattern", hook)


def test_hand_set_heads_are_found_exactly(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path, n_layer=2, n_head=3, n_embd=24, bible=True)
    settings = Settings(**FAST)
    inputs = load_inputs(ckpt, settings)
    planted = {(0, 0): previous, (0, 1): recent_space, (1, 0): offset_3, (1, 1): induction}
    set_heads(inputs.model, inputs.tokenizer, planted)
    summary = Summary(run_analysis(inputs, settings)).to_dict()
    found = {(h["layer"], h["head"]): h for h in summary["heads"] if h["validated"]}
    assert {k: h["behaviour"] for k, h in found.items()} == {
        (0, 0): "previous_char", (0, 1): "recent_space", (1, 0): "offset_3", (1, 1): "induction"}
    # Attending the most recent space is attending a space: the broader detector holds too, and nothing else does.
    assert {k: set(h["behaviours"]) for k, h in found.items()} == {
        (0, 0): {"previous_char"}, (0, 1): {"recent_space", "space"}, (1, 0): {"offset_3"}, (1, 1): {"induction"}}
    prev = found[(0, 0)]
    assert prev["score"] == pytest.approx(1.0) and prev["heldout_score"] == pytest.approx(1.0)
    assert prev["confidence"] == 1.0 and prev["n_windows"] == summary["texts"]["heldout"]["n_windows"]
    assert summary["offset_profile"]["discovery"][1][0][3] == pytest.approx(1.0)  # head 1.0 puts all its mass at offset 3
    assert summary["head_metrics"]["mean_distance"][0][0] == pytest.approx(1.0)
    # The planted head also stands out in the standard repeated-random-sequence test. It is below 1 because
    # a character that recurs inside a random sequence sends it to the latest occurrence, not the copy.
    ind = summary["induction_test"]
    others = [s for l, row in enumerate(ind["score"]) for h, s in enumerate(row) if (l, h) != (1, 1)]
    assert ind["score"][1][1] > 0.6 > 10 * max(others + [ind["baseline"]])


def test_untrained_models_get_no_validated_head(tmp_path):
    """False-positive rate over several seeds: every head x detector test of a freshly initialized model."""
    validated, tests = 0, 0
    for seed in range(4):
        ckpt, _ = make_checkpoint(tmp_path, seed=seed, n_layer=2, n_head=4, bible=True)
        settings = Settings(seed=seed, **FAST)
        summary = Summary(run_analysis(load_inputs(ckpt, settings), settings)).to_dict()
        for d in summary["detectors"].values():
            flags = np.array(d["validated"])
            validated += int(flags.sum())
            tests += flags.size
    assert tests == 4 * 2 * 4 * 17
    assert validated / tests <= 0.05 / (2 * 4 * 17)  # the per-test alpha: with 544 tests, at most 0 false positives


def test_briefly_trained_model_grows_a_previous_character_head(tmp_path):
    """Text made by a second-order rule: each character is the one two places back plus 1 or 2 (mod 8), so
    the next character can only be predicted by looking at the previous one; a previous-character head must grow."""
    train = pytest.importorskip("train")
    rng = np.random.default_rng(0)
    x = [0, 1]
    for _ in range(12000):
        x.append((x[-2] + 1 + int(rng.integers(2))) % 8)
    text_path = tmp_path / "rule.txt"
    text_path.write_text("".join("abcdefgh"[v] for v in x), encoding="utf-8")
    ckpt = tmp_path / "rule.pt"
    rc = train.main(["--text", str(text_path), "--preset", "tiny", "--max-iters", "150", "--lr", "1e-2", "--batch-size", "32",
                     "--eval-interval", "150", "--eval-iters", "2", "--out", str(ckpt), "--seed", "0", "--sample-chars", "0"])
    assert rc == 0
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
