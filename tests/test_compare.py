"""Comparison of two analyses: findings follow the numbers, vowel/consonant in each
language's own classes, parallel verse windows, and the files written."""
import json

import numpy as np
import pytest

from analysis.report.render import write_comparison_report
from analysis.runs.compare import compare_summaries, vowel_consonant
from analysis.runs.inputs import parallel_windows
from summary_fixture import make_examples, make_summary

EN_VALID = {"previous_char": [(0, 0), (1, 1)], "recent_space": [(0, 1)], "offset_3": [(1, 0)], "punctuation": []}
HE_VALID = {"previous_char": [(1, 0)], "recent_space": [], "offset_3": [(0, 2), (1, 1)], "punctuation": [],
            "space": [(0, 1)]}


def test_findings_are_written_from_the_numbers():
    en, he = make_summary("en", validated=EN_VALID), make_summary("he", "he", validated=HE_VALID)
    f = compare_summaries(en, he).findings
    assert f[0] == "en has 4 of 6 heads with a validated behaviour; he has 4 of 6."
    assert ("previous_char: in both — en 2 heads (layers 0, 1), he 1 head (layer 1); "
            "it first appears in an earlier layer in en than in he.") in f
    assert "recent_space: only in en — 1 head (layer 0); no validated head in he." in f
    assert "space: only in he — 1 head (layer 0); no validated head in en." in f
    assert "No validated head in either model for: punctuation." in f
    # Swapping the models swaps the statements: nothing is canned.
    g = compare_summaries(he, en).findings
    assert "recent_space: only in en — 1 head (layer 0); no validated head in he." in g
    assert ("previous_char: in both — he 1 head (layer 1), en 2 heads (layers 0, 1); "
            "it first appears in an earlier layer in en than in he.") in g
    # Changing a number changes the finding.
    he2 = make_summary("he", "he", validated={**HE_VALID, "recent_space": [(0, 0), (1, 2)]})
    f2 = compare_summaries(en, he2).findings
    assert "recent_space: in both — en 1 head (layer 0), he 2 heads (layers 0, 1)." in f2


def test_offset_and_locality_findings_quote_the_summaries():
    en, he = make_summary("en", validated=EN_VALID), make_summary("he", "he", validated=HE_VALID)
    cmp = compare_summaries(en, he)
    pa = np.mean(en["offset_profile"]["heldout"], axis=(0, 1))
    pb = np.mean(he["offset_profile"]["heldout"], axis=(0, 1))
    k = int(np.argmax(np.abs(pa - pb)))
    assert (f"Offset profiles (mean over heads) differ most at offset {k}: en {pa[k]:.3f}, he {pb[k]:.3f} "
            "of the attention.") in cmp.findings
    da, db = np.mean(en["head_metrics"]["mean_distance"]), np.mean(he["head_metrics"]["mean_distance"])
    assert any(s.startswith(f"Mean attention distance over all heads: en {da:.2f} characters, he {db:.2f}")
               for s in cmp.findings)
    assert cmp.models[0]["dominant_offset_counts"][1] >= 2  # the two previous-char heads peak at offset 1


def test_vowel_consonant_uses_each_languages_own_class_list():
    en = make_summary("en")
    he = make_summary("he", "he")
    # Hebrew's summary lists its classes in another order: the comparison must go by name.
    ca = he["class_attention"]
    ca["classes"] = ["consonant", "vowel", "space", "punctuation"]
    att = np.asarray(ca["discovery"])
    att[0, 0] = 0.25
    att[0, 0, 1, 0], att[0, 0, 1, 1] = 0.9, 0.0  # L0H0: query vowel -> key consonant, 0.9
    ca["discovery"] = att.tolist()
    vc = vowel_consonant(he)
    assert vc["classes"] == ["vowel", "consonant"]
    assert vc["strongest"] == {"head": "L0H0", "from": "vowel", "to": "consonant", "attention": 0.9,
                               "base_rate": 0.25, "ratio": pytest.approx(3.6)}
    np.testing.assert_allclose(vc["base_rate"], 0.25)
    np.testing.assert_allclose(vc["mean_attention"], att[:, :, [1, 0]][:, :, :, [1, 0]].mean((0, 1)))
    assert vowel_consonant(en)["strongest"]["head"] == "L1H2"
    del en["class_attention"]
    assert vowel_consonant(en) is None
    f = compare_summaries(en, he).findings
    assert "en: no vowel/consonant classes in its summary, so no vowel/consonant comparison." in f
    assert any(s.startswith("he (its own vowel and consonant classes): the strongest class preference is") for s in f)


def test_parallel_windows_start_at_the_same_verses_and_never_overlap():
    en = [(f"Ruth 1:{v}", f"verse {v} of ruth in english words") for v in range(1, 30)]
    he = [(f"Ruth 1:{v}", f"פסוק {v} ברות") for v in range(1, 30) if v != 4]  # one verse missing
    wa, wb, keys = parallel_windows(en, he, T=40, n=100)
    assert "Ruth 1:4" not in keys and len(wa) == len(wb) == len(keys) > 5
    en_d, he_d = dict(en), dict(he)
    for a, b, k in zip(wa, wb, keys):
        assert len(a) == len(b) == 40
        assert a.startswith(en_d[k]) and b.startswith(he_d[k])
    starts = [int(k.split(":")[1]) for k in keys]
    assert starts == sorted(starts) and all(y - x >= 2 for x, y in zip(starts, starts[1:]))  # 40 chars span > 1 verse
    wa2, _, keys2 = parallel_windows(en, he, T=40, n=3, seed=1)
    assert len(keys2) == 3 and set(keys2) <= set(keys)


def test_write_comparison_files(tmp_path):
    en, he = make_summary("en", validated=EN_VALID), make_summary("he", "he", validated=HE_VALID)
    cmp = compare_summaries(en, he)
    write_comparison_report(cmp, [en, he], [make_examples(["the cat sat on the mat. a dog r"]),
                            make_examples(["בראשית ברא אלהים את השמים ואת ה"], "he")], tmp_path,
                            links=[{"text": "en report", "href": "en/report.html"}])
    assert json.loads((tmp_path / "compare.json").read_text(encoding="utf-8"))["findings"] == list(cmp.findings)
    for name in ("compare_detector_maps", "compare_validated_counts", "compare_offset_profiles", "compare_class_preference"):
        assert (tmp_path / f"{name}.png").stat().st_size > 2000
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "space: only in he" in page and "en/report.html" in page and '"rtl": true' in page


def test_default_bibles_are_compared_on_the_same_verses():
    from types import SimpleNamespace

    from analysis.runs.inputs import AnalysisInputs, parallel_heldout
    from data.corpora import bible_corpus

    corpora = {lang: bible_corpus(lang) for lang in ("en", "he")}
    model = SimpleNamespace(config=SimpleNamespace(block_size=64))
    runs = [AnalysisInputs("x.pt", lang, lang, model, None, {}, None, None, corpus=c) for lang, c in corpora.items()]
    a, b = parallel_heldout(runs[0], runs[1], n_windows=20, seed=0)
    assert runs[0].heldout is None  # the inputs given are not changed: new ones are returned
    en_units, he_units = dict(corpora["en"].heldout_units), dict(corpora["he"].heldout_units)
    wa, wb = a.heldout.windows, b.heldout.windows
    assert len(wa) == len(wb) == 20
    for x, y in zip(wa, wb):
        keys = [k for k in en_units if x.startswith(en_units[k][:64]) and k in he_units and y.startswith(he_units[k][:64])]
        assert keys, f"windows {x[:30]!r} / {y[:30]!r} do not start at the same verse"
    files = [AnalysisInputs("x.pt", "f", "en", model, None, {}, None, None, corpus=None) for _ in range(2)]
    assert parallel_heldout(files[0], files[1], n_windows=20) is None


def test_analyze_compare_end_to_end(tmp_path):
    import analyze
    from analyzer_helpers import make_checkpoint

    a, _ = make_checkpoint(tmp_path, seed=1)
    b, _ = make_checkpoint(tmp_path, seed=2)
    out = tmp_path / "a_vs_b"
    rc = analyze.main(["--compare", str(a), str(b), "--out", str(out), "--windows", "12", "--n-boot", "50",
                       "--min-windows", "4", "--induction-windows", "4", "--quiet"])
    assert rc == 0
    for name in ("model1", "model2"):
        assert (out / name / "summary.json").is_file() and (out / name / "report.html").is_file()
        assert (out / name / "detector_maps.png").is_file()
    cmp = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert [m["name"] for m in cmp["models"]] == ["model1", "model2"]
    assert "model1/report.html" in (out / "report.html").read_text(encoding="utf-8")
    assert not list(tmp_path.glob(".a_vs_b*"))  # the staging folder is gone


def test_analyze_compare_bad_input_is_one_line(tmp_path, capsys):
    import analyze

    assert analyze.main(["--compare", str(tmp_path / "missing.pt"), str(tmp_path / "b.pt"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("analyze.py: error:")
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):
        analyze.main(["--compare", "only_one.pt"])
