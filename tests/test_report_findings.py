"""Reports open with what they found: the paragraph built from the numbers (how many heads, which behaviours in which
layers, the most selective heads with a sentence each), the head map beside it, settings and provenance collapsed at
the end, heads-table rows one line tall; the comparison page opens with its replicated findings next to a figure
with every seed a point. Known answers from hand-made summaries; the pages checked in Debian's headless Chromium."""
from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from matplotlib.collections import PathCollection

from charlens.analysis.report.figures.base import FigureWriter
from charlens.analysis.report.figures.groups import findings_figure, group_figures
from charlens.analysis.report.findings import model_findings
from charlens.analysis.report.html import write_group_page, write_html_report
from charlens.analysis.report.markdown import group_markdown, report_markdown
from charlens.analysis.report.figures.sets import analysis_figures
from charlens.analysis.runs.groups import compare_groups
from summary_fixture import make_examples, make_summary

LONG = "0.31 word_start + 0.23 self + 0.21 consonant + " * 6  # would wrap a table row onto several lines


def summary() -> dict:
    """make_summary's 2 x 3 model (previous_char 0.0 and 1.1, recent_space 0.1, offset_3 1.0) with 1.1 the most
    selective head, 0.2 borderline, and one long cell."""
    s = make_summary()
    s["settings"].update(n_tests=24, alpha_per_test=0.05 / 24)
    s["induction_test"].update(heldout={"selectivity": np.zeros((2, 3)).tolist()}, n_windows=4, length=32, letters=26)
    h11 = s["heads"][4]
    h11.update(selectivity=0.93, heldout_selectivity=0.95, margin=0.61, heldout_score=0.96)
    s["detectors"]["previous_char"]["heldout"]["control"][1][1] = 0.125
    s["heads"][2].update(borderline=True, candidate="space")
    s["heads"][3]["components"] = LONG
    return s


def test_the_paragraph_counts_the_heads_and_places_each_behaviour_in_its_layers():
    found = model_findings(summary())
    assert found.count.startswith("4 of 6 heads have a validated behaviour: for each, the lower end of its selectivity "
                                  "interval is above the cut 0.3 on discovery text (train, 40 windows)")
    assert "Borderline, reported but not labelled (the interval contains the cut): 0.2 (space)." in found.count
    assert found.layers == ("By layer, layer 0: previous_char (0.0) and recent_space (0.1); "
                            "layer 1: offset_3 (1.0) and previous_char (1.1).")
    assert found.induction == ("No head passes the repeated-sequence induction test (loss 3.00 nats on the second copy "
                               "of the repeated random sequences, 3.05 on the same letters reordered at the same positions).")
    assert found.paragraph() == " ".join((found.count, found.layers, found.induction))


def test_the_most_selective_heads_get_a_sentence_each_with_their_numbers():
    heads = model_findings(summary()).heads
    assert len(heads) == 3 and heads[0].startswith("Head 1.1 (previous_char): ")
    assert heads[0] == ("Head 1.1 (previous_char): on held-out text 0.96 of its attention falls on targets of "
                        "previous_char, where uniform causal attention would put 0.12; selectivity 0.95 held out "
                        "(0.93 on discovery text), the lower end of its interval 0.61 above the cut.")
    assert [h.split(" (")[0] for h in heads[1:]] == ["Head 0.0", "Head 0.1"]  # ties keep the layer order


def test_no_validated_head_names_the_closest_and_labels_outside_the_detectors_keep_their_numbers():
    s = make_summary(validated={"previous_char": []})
    s["heads"][5].update(candidate="previous_char", selectivity=0.27, heldout_selectivity=0.25)
    found = model_findings(s)
    assert found.count.startswith("No head of the 6 has a validated behaviour")
    assert found.count.endswith("the closest is head 1.2 (previous_char), with selectivity 0.27 on discovery text "
                                "and 0.25 held out.")
    assert found.layers == "" and found.heads == ()
    mixture = make_summary()
    mixture["heads"][0].update(behaviour="offset_2 + recent_space", candidate="offset_2 + recent_space")
    sentence = model_findings(mixture, top=6).heads
    assert any(h.startswith("Head 0.0 (offset_2 + recent_space): selectivity 0.87 held out") for h in sentence)


def test_report_md_opens_with_the_findings_and_the_head_map_and_ends_with_collapsed_settings():
    md = report_markdown(summary(), head_map="behaviours.png")
    lines = md.splitlines()
    assert lines[0] == "# Attention heads of `en` (en)" and lines[2].startswith("4 of 6 heads have a validated behaviour")
    order = [md.index(x) for x in ("4 of 6 heads", "The most selective heads:", "- Head 1.1 (previous_char)",
                                   "![the primary validated behaviour of every head](behaviours.png)", "## Heads",
                                   "## Character classes", "<details><summary>Settings and provenance</summary>",
                                   "| setting: n_boot | 200 |", "</details>")]
    assert order == sorted(order)
    assert md.rstrip().endswith("</details>")
    assert md.count("checkpoints/en.pt") == 1  # provenance once, inside the collapsed block


def test_report_html_opens_with_findings_beside_the_head_map_with_one_line_rows(tmp_path, browser):
    s = summary()
    figures = analysis_figures(s, make_examples(["the cat sat on the mat. a dog r"]), FigureWriter(tmp_path))
    page = write_html_report(s, make_examples(["the cat sat on the mat. a dog r"]), figures, tmp_path / "report.html")
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page.read_text(encoding="utf-8"), re.S).group(1))
    assert [f["name"] for f in data["findings_figures"]] == ["behaviours"]
    assert "behaviours" not in [f["name"] for f in data["figures"]]  # shown once, beside the findings
    browser.get(page.as_uri())
    sections = [e.get_attribute("id") for e in browser.find_elements("css selector", "main > section")]
    assert sections[0] == "findings" and sections[1] == "table-0" and sections[-1] == "provenance"
    lead = browser.find_element("css selector", "#findings p.lead").text
    assert lead.startswith("4 of 6 heads have a validated behaviour") and "layer 1: offset_3 (1.0)" in lead
    items = browser.find_elements("css selector", "#findings ul.findings li")
    assert len(items) == 3 and items[0].text.startswith("Head 1.1 (previous_char)")
    text = browser.find_element("css selector", "#findings .findings-text").rect
    figure = browser.find_element("css selector", "#findings .findings-figures img").rect
    assert figure["x"] >= text["x"] + text["width"] and figure["width"] > 200  # beside the sentences, not under them
    details = browser.find_element("id", "provenance-details")
    assert details.get_attribute("open") is None and "checkpoints/en.pt" in details.get_attribute("textContent")
    rows = browser.find_elements("css selector", "#table-0 tbody tr")
    heights = [r.rect["height"] for r in rows]
    assert len(rows) == 6 and max(heights) - min(heights) < 1 and max(heights) < 32  # one line each
    long_cell = [c for c in rows[3].find_elements("tag name", "td") if c.get_attribute("title") == LONG]
    assert long_cell and long_cell[0].rect["width"] < 400  # cut in the row, whole on hover
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def group(validated: list) -> list[dict]:
    return [make_summary(f"m{k}", validated={"previous_char": heads}) for k, heads in enumerate(validated)]


@pytest.fixture(scope="module")
def comparison():
    """Four seeds with a previous-character head against four without: the count replicates."""
    a, b = group([[(0, 0)], [(0, 0)], [(1, 1)], [(0, 0)]]), group([[], [], [], []])
    for k, s in enumerate(b):  # distinct names in the second group
        s["name"] = f"n{k}"
    return compare_groups(("A", "B"), (a, b), ([None] * 4, [None] * 4))


def test_the_findings_figure_has_one_panel_per_replicated_finding_with_every_seed_a_point(comparison):
    found = [q for q in comparison.quantities if q.verdict == "replicated"]
    assert [q.key for q in found][:1] == ["validated_heads"] and "count:previous_char" in [q.key for q in found]
    fig = findings_figure(comparison)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == len(found)
    for k, (ax, q) in enumerate(zip(axes, found)):
        assert ax.get_title().startswith(f"{k + 1}. {q.label}")
        points = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if isinstance(c, PathCollection)])
        assert sorted(points) == sorted(q.difference.values_a + q.difference.values_b)  # every seed a point
    nothing = compare_groups(("A", "B"), (group([[]] * 2), group([[]] * 2)), ([None] * 2, [None] * 2))
    assert findings_figure(nothing) is None and "group_findings" not in group_figures(nothing)
    assert list(group_figures(comparison))[0] == "group_findings"


def test_the_comparison_opens_with_numbered_findings_beside_their_figure(tmp_path, comparison, browser):
    figures = FigureWriter(tmp_path)
    for name, (title, fig, caption) in group_figures(comparison).items():
        figures.add(name, title, fig, caption)
    md = group_markdown(comparison, findings_figure="group_findings.png")
    first = md.index("## Replicated findings")
    assert md.index("1. validated heads (any behaviour): A 1 heads") > first
    assert md.index("![the replicated findings, every seed a point](group_findings.png)") < md.index("## Not replicated")
    page = write_group_page(comparison, figures.entries, tmp_path / "report.html")
    browser.get(page.as_uri())
    sections = [e.get_attribute("id") for e in browser.find_elements("css selector", "main > section")]
    assert sections[0] == "findings"
    items = browser.find_elements("css selector", "#findings ol.findings li")
    assert len(items) == len(comparison.replicated) and items[0].text == comparison.replicated[0]
    text = browser.find_element("css selector", "#findings .findings-text").rect
    figure = browser.find_element("css selector", "#findings .findings-figures img").rect
    assert figure["x"] >= text["x"] + text["width"] and abs(figure["y"] - text["y"]) < 80  # side by side, level
    shown = [f.get_attribute("id") for f in browser.find_elements("css selector", "#figures figure")]
    assert "figure-group_findings" not in shown and shown  # the other figures stay in Figures


def test_a_summary_is_not_changed_by_writing_its_report(tmp_path):
    s = summary()
    before = copy.deepcopy(s)
    report_markdown(s, head_map="behaviours.png")
    model_findings(s)
    assert s == before
