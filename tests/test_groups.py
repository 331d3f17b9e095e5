"""Group comparison with seeds as the unit: a difference planted by hand in every seed of one group is
claimed with its sign, same-language seed groups yield nothing, a group of one says it cannot replicate,
and bad groups are refused with one line before any work."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from charlens import analyze
from charlens.analysis.runs.groups import compare_groups, model_quantities, vowel_consonant
from charlens.analysis.runs.inputs import Settings, load_inputs
from charlens.analysis.runs.results import Summary
from charlens.analysis.runs.single import run_analysis
from analyzer_helpers import make_checkpoint
from charlens.model.hooks import add_hook
from summary_fixture import make_summary

SETTINGS = Settings(n_windows=24, n_boot=100, induction_windows=4, min_windows=6)
QUICK = ["--windows", "24", "--n-boot", "100", "--induction-windows", "4", "--min-windows", "6", "--quiet"]


def previous_character(att: torch.Tensor) -> torch.Tensor:
    """Head 1 of the layer attends to i - 1 (row 0 to itself)."""
    T = att.size(-1)
    att = att.clone()
    att[:, 1] = torch.diag(torch.ones(T - 1), -1)
    att[:, 1, 0, 0] = 1.0
    return att


def analysed(path, plant: bool) -> tuple[dict, dict]:
    inputs = load_inputs(path, SETTINGS)
    if plant:
        add_hook(inputs.model, "blocks.1.attn.hook_pattern", previous_character)
    summary = Summary(run_analysis(inputs, SETTINGS))
    return summary.to_dict(), summary.examples


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Twelve freshly initialized tiny models on one corpus: seeds 0-3 analysed with a planted
    previous-character head (L1H1), seeds 0-3 without it, and seeds 4-7 without it."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("seeds")
    paths = [make_checkpoint(folder, seed=s)[0] for s in range(8)]
    return {"planted": [analysed(p, True) for p in paths[:4]], "plain": [analysed(p, False) for p in paths[:4]],
            "other": [analysed(p, False) for p in paths[4:]]}


def compare(a, b, alpha=0.05):
    return compare_groups(("A", "B"), ([s for s, _ in a], [s for s, _ in b]), ([e for _, e in a], [e for _, e in b]),
                          alpha=alpha)


def test_a_planted_head_is_claimed_with_its_sign_and_nothing_else(seeds):
    cmp = compare(seeds["planted"], seeds["other"])
    claimed = {q.key: q.difference.sign for q in cmp.quantities if q.verdict == "replicated"}
    # About heads: exactly one claim, the planted previous-character head (and so one more validated head).
    assert {k: v for k, v in claimed.items() if k.startswith(("count:", "depth:", "validated", "ablation:"))} == \
        {"validated_heads": 1, "count:previous_char": 1}
    # About attention as a whole, only what a head attending to i - 1 implies, with its sign: more mass at offset 1
    # and less elsewhere, a shorter distance, a lower entropy, and in English (letters alternate between vowels and
    # consonants) more vowel <-> consonant and less same-class attention. Nothing about induction or other behaviours.
    implied = {"offset:1": 1, "distance": -1, "entropy": -1, "class:vowel>vowel": -1, "class:vowel>consonant": 1,
               "class:consonant>vowel": 1, "class:consonant>consonant": -1, **{f"offset:{k}": -1 for k in (0, *range(2, 9))},
               # and, while word_start is measured against uniform attention, more word-start keying: the second
               # letter of each word attends to its first
               "keyed:word_start": 1}
    profile = {k: v for k, v in claimed.items() if k not in ("validated_heads", "count:previous_char")}
    assert all(implied.get(k) == v for k, v in profile.items()), {k: v for k, v in profile.items() if implied.get(k) != v}
    assert {"offset:1", "distance", "entropy"} <= set(profile)
    assert any(f.startswith("previous_char heads: A 1 heads (seeds: 1, 1, 1, 1), B 0 heads") for f in cmp.replicated)
    recurring = {h.head: h.recurs for h in cmp.agreement[0].heads}
    assert recurring["L1H1"] and cmp.agreement[0].behaviours["previous_char"]["seeds"] == 4
    assert cmp.agreement[0].behaviours["previous_char"]["first_layers"] == [1, 1, 1, 1]


def test_same_language_seed_groups_yield_nothing(seeds):
    for a, b in ((seeds["plain"], seeds["other"]), (seeds["plain"][:3], seeds["other"][:3])):
        cmp = compare(a, b)
        assert cmp.replicated == ()
        assert {q.verdict for q in cmp.quantities} <= {"not_replicated", "below_min_effect", "too_few_seeds", "undefined"}
    assert "3 vs 3 seeds the exact permutation test cannot reach p <= 0.05; 4 seeds per group can" in " ".join(cmp.notes)


def test_a_group_of_one_says_nothing_can_replicate(seeds):
    cmp = compare(seeds["planted"][:1], seeds["other"])
    assert cmp.replicated == () and {q.verdict for q in cmp.quantities} <= {"single_seed", "undefined"}
    assert "with one seed in a group nothing can be replicated" in cmp.notes[0]
    assert cmp.agreement[0].heads == ()  # nothing to match a single seed with


def test_quantities_use_each_languages_own_classes():
    he = make_summary("he", "he")
    ca = he["class_attention"]
    ca["classes"] = ["consonant", "vowel", "space", "punctuation"]  # Hebrew lists its classes in another order
    att = np.asarray(ca["discovery"])
    att[:, :] = 0.25
    att[0, 0, 1, 0], att[0, 0, 1, 1] = 0.9, 0.0  # L0H0: query vowel -> key consonant
    ca["discovery"] = att.tolist()
    vc = vowel_consonant(he)
    assert vc["mean_attention"][0, 1] == pytest.approx((0.9 + 5 * 0.25) / 6)  # vowel -> consonant, by name
    q = model_quantities(he)
    assert q["class:vowel>consonant"] == pytest.approx((0.9 + 5 * 0.25) / 6 / 0.25)
    assert q["count:previous_char"] == 2 and q["depth:previous_char"] == 0.0 and q["depth:punctuation"] is None


def test_compare_groups_end_to_end_and_the_pair_form(tmp_path, capsys):
    paths = [make_checkpoint(tmp_path, seed=s)[0] for s in range(4)]
    out = tmp_path / "groups"
    rc = analyze.main(["--compare", str(paths[0]), str(paths[1]), "--vs", str(tmp_path / "model[23].pt"), "--out", str(out), *QUICK])
    assert rc == 0, capsys.readouterr().err
    cmp = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert cmp["groups"]["model"]["models"] == ["model0", "model1"]  # the file names' common prefix names a group
    assert list(cmp["groups"]) == ["model", "model-2"] and cmp["findings"]["replicated"] == []
    for name in ("model0", "model1", "model2", "model3"):
        assert (out / name / "report.html").is_file()
        assert f'"live": [{{"name": "{name}", ' in (out / name / "report.html").read_text(encoding="utf-8")  # its live view
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "model3/report.html" in page and "No difference between" in page
    assert "## Replicated findings" in (out / "report.md").read_text(encoding="utf-8")
    pair = tmp_path / "pair"
    assert analyze.main(["--compare", str(paths[0]), str(paths[1]), "--out", str(pair), *QUICK]) == 0
    assert "nothing can be replicated" in json.loads((pair / "compare.json").read_text(encoding="utf-8"))["notes"][0]


@pytest.mark.parametrize("argv, message", [
    (["--compare", "{d}/model0.pt", "--vs", "{d}/nothing*.pt"], "--vs {d}/nothing*.pt: no checkpoint matches"),
    (["--compare", "{d}/model0.pt", "{d}/model1.pt", "--vs", "{d}/model1.pt"], "model1.pt is in both groups"),
    (["--compare", "{d}/model0.pt", "{d}/wide.pt", "--vs", "{d}/model1.pt"], "mixes architectures"),
    (["--compare", "{d}/model0.pt", "{d}/model9.pt", "--vs", "{d}/model1.pt"], "mixes corpora"),
    (["--compare", "{d}/model0.pt", "{d}/model1.pt", "{d}/model9.pt"], "--compare takes two checkpoints"),
    (["--vs", "{d}/model0.pt"], "--vs is the second group of --compare"),
])
def test_bad_groups_are_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    make_checkpoint(tmp_path, seed=0)
    make_checkpoint(tmp_path, seed=1)
    make_checkpoint(tmp_path, seed=9, text="Other words entirely, on another corpus. " * 8)
    wide, _ = make_checkpoint(tmp_path, seed=5, n_embd=48)
    wide.rename(tmp_path / "wide.pt")
    out = tmp_path / "o"
    rc = analyze.main([a.format(d=tmp_path) for a in argv] + ["--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message.format(d=tmp_path) in err[0], err
    assert not out.exists()
