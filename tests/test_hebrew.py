"""Hebrew in figures: right-to-left display order, and every glyph drawn by a font that has it."""
import io
import os
import unicodedata
import warnings
from functools import lru_cache

from matplotlib import font_manager, ft2font

from charlens.analysis.report.figures.attention import attention_heatmap
from charlens.analysis.report.figures.base import style
from charlens.analysis.report.hebrew import char_label, display, font_families, is_rtl
from summary_fixture import HEBREW, drawn_texts, hand_attention


@lru_cache(maxsize=None)
def _font(path: str) -> ft2font.FT2Font:
    return ft2font.FT2Font(path)


def missing_glyphs(text: str, font_path: str) -> list[str]:
    """The characters of `text` that the font at `font_path` has no glyph for
    (whitespace and control characters, which draw nothing, are not counted)."""
    font = _font(font_path)
    return sorted({c for c in text if not c.isspace() and unicodedata.category(c) != "Cc"
                   and font.get_char_index(ord(c)) == 0})



def font_paths() -> list[str]:
    """The regular-weight file of each family in `font_families()`."""
    return [os.fspath(font_manager.findfont(font_manager.FontProperties(family=family))) for family in font_families()]


def uncovered(text: str) -> list[str]:
    """Characters that no font in the fallback chain can draw (empty boxes)."""
    paths = font_paths()
    missing = set(text)
    for path in paths:
        missing &= set(missing_glyphs("".join(missing), path))
    return sorted(c for c in missing if not c.isspace() and unicodedata.category(c) != "Cc")


def test_bidi_display_order():
    assert is_rtl("שלום") and not is_rtl("hello, world")
    assert display("שלום") == "םולש"  # drawn left to right, so stored reversed
    assert display("L0H1: שלום עולם") == "L0H1: םלוע םולש"  # the Latin part keeps its order
    assert display("abc") == "abc"
    assert char_label(" ") == "␣" and char_label("\n") == "⏎" and char_label("\u05b8") == "◌\u05b8"


def test_hebrew_heatmap_glyphs_resolve_to_a_font_that_covers_them():
    att = hand_attention(HEBREW, [["prev"]])[0, 0]
    with style(), warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" when it draws a box
        fig = attention_heatmap(att, HEBREW, title="L0H0: " + HEBREW[:10])
        texts = drawn_texts(fig)
        fig.savefig(io.BytesIO(), format="png")
    hebrew_labels = [t for t in texts if is_rtl(t.get_text())]
    assert len(hebrew_labels) >= len(set(HEBREW) - {" "})  # tick labels and the title
    for t in hebrew_labels:
        chain = [font_manager.findfont(font_manager.FontProperties(family=f)) for f in t.get_fontproperties().get_family()]
        for c in set(t.get_text()):
            assert any(not missing_glyphs(c, str(path)) for path in chain), f"no font in {chain} draws {c!r}"
    title = next(t.get_text() for t in texts if t.get_text().startswith("L0H0"))
    assert title == "L0H0: " + HEBREW[:10][::-1]  # right to left on screen
    assert uncovered(HEBREW + "\u05b8\u05bc") == [] and font_paths()
