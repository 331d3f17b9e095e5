"""Character classes per language, as plain tables.

Detectors are defined on classes, never on letters, so a new language is a new table.
Every character gets exactly one class; a character a table does not name is `other`.
All languages share the class list CLASS_NAMES (a class a language lacks simply never
occurs), so class codes and class-to-class matrices line up across languages.
"""
from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = ("vowel", "consonant", "upper", "digit", "space", "newline", "punctuation", "other")
CLASS_INDEX = {name: i for i, name in enumerate(CLASS_NAMES)}

_ASCII_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_COMMON = {"space": " \t", "newline": "\n\r", "digit": "0123456789",
           "punctuation": _ASCII_PUNCT + "\u2014\u2013\u2018\u2019\u201c\u201d\u2026"}  # dashes, curly quotes, ellipsis

# Class -> the characters in it. Upper-case English letters are their own class (`upper`).
TABLES: dict[str, dict[str, str]] = {
    "en": {
        **_COMMON,
        "vowel": "aeiou",
        "consonant": "bcdfghjklmnpqrstvwxyz",
        "upper": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    },
    "he": {
        **_COMMON,
        # The vowel letters (matres lectionis) and the niqqud vowel points (U+05B0-U+05BB, holam haser U+05BA, qamats
        # qatan U+05C7); the other points (dagesh, shin/sin dots, rafe) mark consonants.
        "vowel": "\u05d0\u05d4\u05d5\u05d9" + "".join(chr(c) for c in range(0x05B0, 0x05BC)) + "\u05c7",
        "consonant": "\u05d1\u05d2\u05d3\u05d6\u05d7\u05d8\u05da\u05db\u05dc\u05dd\u05de\u05df\u05e0\u05e1\u05e2\u05e3"
                     "\u05e4\u05e5\u05e6\u05e7\u05e8\u05e9\u05ea" + "\u05bc\u05bf\u05c1\u05c2",
        # maqaf, paseq, sof pasuq, geresh, gershayim, plus the common marks
        "punctuation": _COMMON["punctuation"] + "\u05be\u05c0\u05c3\u05f3\u05f4",
    },
}


# Character features beside the one class: sets of letters that a detector names (a letter may be in several).
# Hebrew: the one-letter prefixes (conjunction, article, prepositions, relative) and the word-final letter forms.
FEATURES: dict[str, dict[str, str]] = {
    "en": {},
    "he": {"prefix_letter": "\u05d5\u05d4\u05d1\u05dc\u05de\u05e9\u05db",  # ו ה ב ל מ ש כ
           "final_form": "\u05da\u05dd\u05df\u05e3\u05e5"},  # ך ם ן ף ץ
}
FEATURE_BITS = {"prefix_letter": 1, "final_form": 2}  # bit of each feature in `features()` codes

# Which language-specific detectors apply to each language (every other detector applies to all languages).
LANGUAGE_DETECTORS: dict[str, tuple[str, ...]] = {"en": ("capital",), "he": ("prefix_letter", "final_form")}


def class_map(lang: str) -> dict[str, int]:
    """Character -> class code for a language (KeyError-free: unknown languages are refused)."""
    if lang not in TABLES:
        raise ValueError(f"no character-class table for language {lang!r}; known: {', '.join(TABLES)}")
    return {ch: CLASS_INDEX[name] for name, chars in TABLES[lang].items() for ch in chars}


def classify(text: str, lang: str) -> np.ndarray:
    """Class code of every character of `text`, int8 (len(text),)."""
    table = class_map(lang)
    other = CLASS_INDEX["other"]
    return np.fromiter((table.get(c, other) for c in text), dtype=np.int8, count=len(text))


def features(text: str, lang: str) -> np.ndarray:
    """Feature bits (FEATURE_BITS) of every character of `text`, int8 (len(text),); 0 = none."""
    if lang not in TABLES:
        raise ValueError(f"no character-class table for language {lang!r}; known: {', '.join(TABLES)}")
    bits: dict[str, int] = {}
    for name, chars in FEATURES[lang].items():
        for ch in chars:
            bits[ch] = bits.get(ch, 0) | FEATURE_BITS[name]
    return np.fromiter((bits.get(c, 0) for c in text), dtype=np.int8, count=len(text))


_SHOWN = {" ": "␠", "\t": "\\t", "\n": "\\n", "\r": "\\r", "`": "\\`"}


def table_markdown() -> str:
    """The tables as one markdown table (for docs/analysis.md and report.md)."""
    rows = ["| class | " + " | ".join(TABLES) + " |", "|---|" + "---|" * len(TABLES)]
    for name in CLASS_NAMES:
        cells = []
        for lang in TABLES:
            chars = TABLES[lang].get(name, "")
            cells.append(" ".join(_SHOWN.get(c, c) for c in chars).replace("|", "\\|") or "—")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
