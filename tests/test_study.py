"""The script-control study end to end: hand-made summaries of the four conditions with a script effect, a language
effect and nothing, through run_study and the report files; then the CLI on tiny models of the four default-Bible
conditions with snapshots (--study --stages), and the one-line refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest

from charlens import analyze, train
from charlens.analysis.report.render import write_study_report
from charlens.analysis.runs.study import run_study
from summary_fixture import make_summary

QUICK = ["--windows", "16", "--n-boot", "50", "--induction-windows", "4", "--min-windows", "4", "--quiet",
         "--no-live-model", "--decompose-windows", "8"]


def summaries(distance: dict[str, float], entropy: dict[str, float]) -> dict[str, list[dict]]:
    """Four seeds per condition; every head's mean distance and entropy set per condition (plus a small seed spread)."""
    out: dict[str, list[dict]] = {}
    for c in ("en", "en_novowel", "he_niqqud", "he"):
        out[c] = []
        for seed in range(4):
            s = make_summary(f"{c}_s{seed}", "en" if c.startswith("en") else "he")
            L, H = np.asarray(s["head_metrics"]["mean_distance"]).shape
            s["head_metrics"]["mean_distance"] = np.full((L, H), distance[c] + 0.01 * seed).tolist()
            s["head_metrics"]["normalized_entropy"] = np.full((L, H), entropy[c] + 0.001 * seed).tolist()
            out[c].append(s)
    return out


def test_a_script_and_a_language_finding_are_told_apart_in_the_report(tmp_path):
    # distance: longer without written vowels (script); entropy: higher in Hebrew whatever the script (language)
    data = summaries(distance={"en": 5, "en_novowel": 9, "he_niqqud": 5, "he": 9},
                     entropy={"en": 0.5, "en_novowel": 0.5, "he_niqqud": 0.6, "he": 0.6})
    study = run_study(data, {c: [None] * 4 for c in data})
    verdicts = {a.key: a.verdict for a in study.attributions}
    assert verdicts["distance"] == "script" and verdicts["entropy"] == "language"
    assert {v for k, v in verdicts.items() if k not in ("distance", "entropy")} == {"no_finding"}  # the rest is equal
    (out := tmp_path / "study").mkdir()
    write_study_report(study, out)
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "- **script**: mean attention distance: higher in he; follows the script" in text
    assert "- **language**: mean normalized attention entropy (1 = uniform): higher in he; follows the language" in text
    assert "en vs en_novowel holds, he_niqqud vs he holds, en_novowel vs he does not, en vs he_niqqud does not" in text
    saved = json.loads((out / "study.json").read_text(encoding="utf-8"))
    assert {a["key"]: a["verdict"] for a in saved["attribution"]} == verdicts
    assert saved["conditions"]["he_niqqud"] == [f"he_niqqud_s{k}" for k in range(4)]
    assert (out / "study_attribution.png").is_file() and (out / "en_vs_he" / "compare.json").is_file()
    assert "script" in (out / "report.html").read_text(encoding="utf-8")


def test_no_difference_attributes_nothing():
    same = {"en": 5, "en_novowel": 5, "he_niqqud": 5, "he": 5}
    study = run_study(summaries(same, {c: 0.5 for c in same}), {c: [None] * 4 for c in same})
    assert study.findings() == [] and all(a.verdict == "no_finding" for a in study.attributions)
    assert any("Same-condition null groups" in n for n in study.notes)


@pytest.fixture(scope="module")
def four_conditions(tmp_path_factory):
    """One tiny seed of each condition, 8 steps, a snapshot at step 3 (each model's report costs seconds: one seed)."""
    folder = tmp_path_factory.mktemp("study")
    for flags in (["--lang", "en"], ["--lang", "en", "--drop-vowels"], ["--lang", "he"], ["--lang", "he", "--keep-niqqud"]):
        out = folder / f"{'_'.join(f.strip('-') for f in flags[1:])}.pt"  # en.pt, en_drop-vowels.pt, ...
        assert train.main([*flags, "--preset", "tiny", "--max-iters", "8", "--seeds", "1", "--seed-procs", "1",
                           "--snapshots", "2", "--sample-chars", "0", "--out", str(out), "--threads", "1"]) == 0
    return folder


def test_the_study_command_end_to_end(four_conditions, tmp_path, capsys):
    out = tmp_path / "report"
    # the glob also matches the snapshots (en_s0.step3.pt): they are stages of their model, not more seeds
    assert analyze.main(["--study", str(four_conditions / "*_s*.pt"), "--stages", "--out", str(out), *QUICK]) == 0
    study = json.loads((out / "study.json").read_text(encoding="utf-8"))
    assert study["conditions"] == {"en": ["en_s0"], "en_novowel": ["en_drop-vowels_s0"], "he_niqqud": ["he_keep-niqqud_s0"],
                                   "he": ["he_s0"]}
    assert study["findings"] == [] and any("nothing can be replicated" in n for n in study["notes"])
    assert {a["verdict"] for a in study["attribution"]} == {"no_finding"}
    assert study["stages"]["steps"] == [3, 8] and study["stages"]["findings"] == []
    for model in ("en_s0", "en_drop-vowels_s0", "he_s0", "he_keep-niqqud_s0"):
        assert (out / model / "report.html").is_file()
    assert (out / "en_s0" / "stages" / "step3.json").is_file() and not (out / "en_drop-vowels_s0" / "stages").exists()
    stage = json.loads((out / "en_s0" / "stages" / "step3.json").read_text(encoding="utf-8"))
    final = json.loads((out / "en_s0" / "summary.json").read_text(encoding="utf-8"))
    assert "copying" not in stage and "copying" in final  # a stage leaves out the copying ablation, which no quantity reads
    assert stage["induction_test"]["copy_sequences"] == 256  # the copy drop's quantity is still there
    held = {m: json.loads((out / m / "summary.json").read_text(encoding="utf-8"))["texts"]["heldout"]["source"]
            for m in ("en_s0", "en_drop-vowels_s0", "he_keep-niqqud_s0")}
    assert all("windows starting at the same verses as in" in s for s in held.values())
    assert len({s.split("(")[-1] for s in held.values()}) == 1  # the same verses in every condition
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "## Every quantity in the four conditions" in text and "## Findings across training" in text
    assert (out / "stages_all.png").is_file() and "## Findings across training" in (out / "en_vs_he" / "report.md").read_text()


def test_study_refusals(four_conditions, tmp_path, capsys):
    from analyzer_helpers import make_checkpoint

    other, _ = make_checkpoint(tmp_path, seed=0)  # a model of a --text corpus
    for pick, message in ((["en_s*.pt", "he_s*.pt", "he_keep-niqqud_s*.pt"],
                           "needs models of all four conditions; none of en_novowel"),
                          (["*_s?.pt", str(other)], "takes models of the four default-Bible conditions")):
        out = tmp_path / "r"
        argv = ["--study", *[p if p.startswith("/") else str(four_conditions / p) for p in pick], "--out", str(out)]
        assert analyze.main([*argv, *QUICK]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not out.exists()
    assert analyze.main(["--ckpt", str(other), "--stages"]) == 2
    assert "--stages works with --compare or --study" in capsys.readouterr().err


def test_a_glob_leaves_out_the_snapshots_of_the_checkpoints_it_matches(tmp_path):
    from charlens.groupcli import expand_group

    for name in ("en_s0.pt", "en_s0.step3.pt", "en_s0.step30.pt", "en_s1.pt", "lone.step5.pt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.rsplit("/", 1)[1] for p in expand_group([str(tmp_path / "en_s*.pt")], "--vs")] == ["en_s0.pt", "en_s1.pt"]
    assert [p.rsplit("/", 1)[1] for p in expand_group([str(tmp_path / "*.step*.pt")], "--vs")] == \
        ["en_s0.step3.pt", "en_s0.step30.pt", "lone.step5.pt"]  # without their checkpoint in the match: kept
    assert expand_group([str(tmp_path / "en_s0.step3.pt")], "--vs") == [str(tmp_path / "en_s0.step3.pt")]
