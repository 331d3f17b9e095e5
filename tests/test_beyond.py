"""analyze.py with the beyond-attention flags: keys in summary.json, figures, report.md, and
one-line errors before any work."""
import json

import pytest

from charlens import analyze
from analyzer_helpers import make_checkpoint

FAST = ["--windows", "16", "--n-boot", "50", "--min-windows", "4", "--induction-windows", "4", "--beyond-windows", "8", "--quiet"]


def test_all_flags_add_their_keys_figures_and_sections(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path)
    out = tmp_path / "report"
    rc = analyze.main(["--ckpt", str(ckpt), "--out", str(out), *FAST, "--value-weighted", "--rollout", "--qk-map", "1.0",
                       "--ablation", "--ablation-mode", "mean", "--counterfactual", "And God said", "And God saw"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["settings"]["value_weighted"] is True and s["settings"]["ablation_mode"] == "mean"
    assert len(s["value_weighted"]["disagreement"]) == 2
    assert s["qk_map"]["layer"] == 1 and -1 <= s["qk_map"]["spearman_2d"] <= 1
    assert len(s["entropy"]["per_layer"]) == 2 and len(s["importance"]["raw"]) == len(s["importance"]["text"])
    assert s["counterfactual"]["n_aligned"] == len("And God sa")  # "And God sa" + "id"|"w"
    for head in s["heads"]:
        assert {"ablation_delta_loss", "ablation_delta_loss_targeted", "visible_but_unused"} <= set(head)
    for name in ("ablation", "counterfactual", "entropy", "importance", "rollout", "qk_map_L1H0",
                 "value_weighted_disagreement", "value_weighted_head"):
        assert (out / f"{name}.png").stat().st_size > 1000
    md = (out / "report.md").read_text()
    assert "## Beyond attention weights" in md and "visible but unused" in md


def test_sentences_of_different_lengths(tmp_path):
    """--sentences gives held-out windows of several lengths: the q/k map and the entropy by
    position use the longest ones, the rest still run on every window."""
    ckpt, _ = make_checkpoint(tmp_path)
    out = tmp_path / "report"
    rc = analyze.main(["--ckpt", str(ckpt), "--out", str(out), *FAST, "--min-windows", "1", "--value-weighted", "--rollout",
                       "--qk-map", "1.0", "--sentences", "And God said", "And God saw the light", "In the beginning"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["qk_map"]["n_windows"] == 1 and s["qk_map"]["n_pairs"] == 21 * 22 // 2
    assert (out / "qk_map_L1H0.png").stat().st_size > 1000


@pytest.mark.parametrize("flags, message", [
    (["--qk-map", "1"], "LAYER.HEAD"),
    (["--qk-map", "5.0"], "layers 0..1"),
    (["--counterfactual", "And God", " "], "two non-empty texts"),
    (["--counterfactual", "And God", "Zürich"], "text B"),
    (["--counterfactual", "And", "God"], "fewer than 2 aligned characters"),
    (["--ablation-tol", "-1"], "--ablation-tol"),
])
def test_bad_flags_fail_with_one_line(tmp_path, capsys, flags, message):
    ckpt, _ = make_checkpoint(tmp_path)
    out = tmp_path / "report"
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *FAST, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()
