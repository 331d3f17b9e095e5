"""Hebrew (and any right-to-left) text in matplotlib figures.

matplotlib draws a string's characters in memory order, left to right, so a Hebrew
title comes out mirrored; `display` reorders it for the screen with the Unicode bidi
algorithm (python-bidi). And matplotlib's default font may lack Hebrew glyphs, which
draws empty boxes; `FONT_FAMILIES` lists fonts that have them (DejaVu Sans ships with
matplotlib and covers Hebrew letters and niqqud; tests/test_hebrew.py checks that every glyph resolves).
"""
from __future__ import annotations

import unicodedata

from bidi.algorithm import get_display
from matplotlib import font_manager

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


def font_families() -> list[str]:
    """The installed `FONT_FAMILIES`, in fallback order: what figures set as font.family."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return [family for family in FONT_FAMILIES if family in installed]
