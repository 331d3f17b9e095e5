"""Hebrew (and any right-to-left) text in matplotlib figures.

matplotlib draws a string's characters in memory order, left to right, so a Hebrew
title comes out mirrored; `display` reorders it for the screen with the Unicode bidi
algorithm (python-bidi). And matplotlib's default font may lack Hebrew glyphs, which
draws empty boxes; `FONT_FAMILIES` lists fonts that have them (DejaVu Sans ships with
matplotlib and covers Hebrew letters and niqqud) and `missing_glyphs` checks a font.
"""
from __future__ import annotations

import os
import unicodedata
from functools import lru_cache

from bidi.algorithm import get_display
from matplotlib import font_manager, ft2font

# Tried in order by matplotlib's per-glyph font fallback; the first one covers Hebrew.
FONT_FAMILIES = ["DejaVu Sans", "Noto Sans Hebrew", "FreeSans", "Arial"]

# Characters that draw nothing get a visible stand-in on axes and in the head view.
VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "↵"}


def is_rtl(text: str) -> bool:
    """True when the text holds a right-to-left letter (Hebrew, Arabic, ...)."""
    return any(unicodedata.bidirectional(c) in ("R", "AL") for c in text)


def display(text: str) -> str:
    """The text in the visual order a left-to-right renderer must draw it in."""
    return get_display(text) if is_rtl(text) else text


def char_label(c: str) -> str:
    """A visible label for one character: whitespace gets a symbol, a lone combining
    mark (a niqqud point cut off from its letter) sits on a dotted circle."""
    if c in VISIBLE:
        return VISIBLE[c]
    if unicodedata.combining(c):
        return "◌" + c
    return c


def snippet(text: str, limit: int = 40) -> str:
    """A short one-line excerpt of a text for titles (logical order: pass the whole
    title through `display` once, just before drawing)."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat


@lru_cache(maxsize=None)
def _font(path: str) -> ft2font.FT2Font:
    return ft2font.FT2Font(path)


def missing_glyphs(text: str, font_path: str) -> list[str]:
    """The characters of `text` that the font at `font_path` has no glyph for
    (whitespace and control characters, which draw nothing, are not counted)."""
    font = _font(font_path)
    return sorted({c for c in text if not c.isspace() and unicodedata.category(c) != "Cc"
                   and font.get_char_index(ord(c)) == 0})


def font_families() -> list[str]:
    """The installed `FONT_FAMILIES`, in fallback order: what figures set as font.family."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return [family for family in FONT_FAMILIES if family in installed]


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
