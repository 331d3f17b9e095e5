"""Figures: drawn from data (summary dicts, attention arrays, characters), checked for
what they show; Hebrew must come out right to left and in a font that has its glyphs."""
import numpy as np
import torch
from matplotlib.patches import Rectangle

from charlens.analysis.report.figures.attention import flow_graph, rollout_graph
from charlens.analysis.report.figures.base import FigureWriter, style
from charlens.analysis.report.figures.heads import behaviour_summary, detector_maps, offset_profiles
from charlens.analysis.report.figures.sets import analysis_figures
from charlens.analysis.measures.flow import layer_mixing, query_flow
from charlens.analysis.report.hebrew import char_label
from charlens.analysis.measures.rollout import attention_rollout
from summary_fixture import HEBREW, drawn_texts, KINDS, hand_attention, make_examples, make_summary



def test_detector_maps_show_selectivity_and_box_validated_heads():
    s = make_summary(validated={"previous_char": [(0, 0), (1, 2)], "brand_new_detector": [(1, 1)]})
    with style():
        fig = detector_maps([s], "heldout")
    maps = [ax for ax in fig.axes if ax.get_title() in s["detectors"]]
    assert [ax.get_title() for ax in maps] == ["previous_char", "brand_new_detector"]
    for ax in maps:
        d = s["detectors"][ax.get_title()]
        shown = ax.images[0].get_array()
        np.testing.assert_allclose(shown, d["heldout"]["selectivity"])
        boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
        boxed = sorted((int(p.get_y() + 0.5), int(p.get_x() + 0.5)) for p in boxes)
        assert boxed == sorted(zip(*np.nonzero(d["validated"])))


def test_side_by_side_maps_have_one_panel_per_detector_and_model():
    en, he = make_summary("en"), make_summary("he", "he", validated={"previous_char": [(0, 1)], "space": []})
    fig = detector_maps([en, he])
    titles = {ax.get_title() for ax in fig.axes if ax.axison and ax.images}
    assert "previous_char · en" in titles and "previous_char · he" in titles
    assert "space · he" in titles and "space · en" not in titles  # a detector one side lacks is left blank


def test_behaviour_summary_names_each_head():
    s = make_summary()
    fig = behaviour_summary(s)
    texts = [t.get_text() for t in drawn_texts(fig)]
    for head in s["heads"]:
        if head["validated"]:
            assert any(t.startswith(head["behaviour"] + "\n95%") for t in texts)
    assert sum(t == "no validated\nbehaviour" for t in texts) == sum(not h["validated"] for h in s["heads"])


def test_offset_profiles_overlay_one_line_per_model_in_every_head_panel():
    en, he = make_summary("en"), make_summary("he", "he")
    fig = offset_profiles({"en": (en["offset_profile"]["offsets"], en["offset_profile"]["heldout"]),
                           "he": (he["offset_profile"]["offsets"], he["offset_profile"]["heldout"])})
    panels = [ax for ax in fig.axes if ax.get_title().startswith("L")]
    assert len(panels) == 6 and all(len(ax.lines) == 2 for ax in panels)
    np.testing.assert_allclose(panels[0].lines[0].get_ydata(), en["offset_profile"]["heldout"][0][0])


def test_query_flow_ends_in_the_rollout_row():
    text = "the cat sat on the mat"
    att = hand_attention(text, KINDS)  # (L, H, T, T)
    q = len(text) - 1
    nodes, edges = query_flow(att, q)
    np.testing.assert_allclose(nodes.sum(1), 1.0)
    rollout = attention_rollout(torch.tensor(att)).numpy()
    np.testing.assert_allclose(nodes[0], rollout[q], atol=1e-12)
    np.testing.assert_allclose(edges[-1][q], layer_mixing(att)[-1][q])  # top level: the query's own row


def test_flow_graphs_draw_rtl_text_mirrored():
    text = HEBREW[:30]  # shorter than FLOW_CHARS: drawn whole
    att = hand_attention(text, [["prev", "space"]])
    fig = flow_graph(att, text, 0, 0)
    first = [t for t in drawn_texts(fig) if t.get_text() == text[0]]
    last = [t for t in drawn_texts(fig) if t.get_text() == char_label(text[-1])]
    assert first[0].get_position()[0] > last[0].get_position()[0]  # first letter on the right
    assert len(fig.axes[0].collections[0].get_segments()) == len(text)  # one edge per query row
    fig = rollout_graph(att, text)
    assert len(fig.axes[0].get_yticklabels()) == 2  # input and one layer


def test_write_figures_writes_every_figure(tmp_path):
    s = make_summary()
    ex = make_examples(["the cat sat on the mat. a dog r", "in the beginning god created th"])
    made = analysis_figures(s, ex, FigureWriter(tmp_path))
    names = {m["name"] for m in made}
    assert {"behaviours", "detector_maps", "offset_profiles", "class_preference", "heatmap", "heads_grid",
            "similarity", "flow_head", "flow_rollout"} <= names
    for m in made:
        assert (tmp_path / m["file"]).stat().st_size > 2000 and m["caption"]
    assert (tmp_path / "heatmap.svg").is_file()
    without = analysis_figures(s, None, FigureWriter(tmp_path))
    assert "heatmap" not in {m["name"] for m in without}
