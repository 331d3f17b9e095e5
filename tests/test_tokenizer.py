"""CharTokenizer: round trips, NFC, the unknown-character policy, and its checkpoint form."""
from __future__ import annotations

import numpy as np
import pytest

from charlens.data.tokenizer import UNKNOWN_CHAR, CharTokenizer, UnknownCharactersError, normalize, tokenizer_from_dict


def test_round_trip_and_ids():
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == [UNKNOWN_CHAR, " ", "d", "e", "h", "l", "o", "r", "w"]
    ids = tok.encode("hold")
    assert ids.dtype == np.uint16 and ids.tolist() == [4, 6, 5, 2]
    assert tok.decode(ids) == "hold"
    assert tok.vocab_size == 9


def test_nfc_gives_one_spelling_to_a_pointed_letter():
    decomposed, composed = "e\u0301", "\u00e9"
    tok = CharTokenizer.from_text(decomposed)
    assert tok.chars[1:] == [composed]
    assert tok.encode(decomposed).tolist() == tok.encode(composed).tolist() == [1]
    # Hebrew: shin + shin dot + qamats, typed in two orders, normalize the same way.
    assert normalize("\u05e9\u05c1\u05b8") == normalize("\u05e9\u05b8\u05c1")


def test_unknown_characters_are_named_or_replaced():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(UnknownCharactersError, match=r"2 character\(s\).*'x' \(U\+0078\), 'z' \(U\+007A\)"):
        tok.encode("axbz")
    assert tok.encode("axbz", unknown="replace").tolist() == [1, 0, 2, 0]
    assert tok.decode([1, 0]) == "a" + UNKNOWN_CHAR


def test_many_unknown_characters_are_summarized():
    tok = CharTokenizer.from_text("a")
    with pytest.raises(UnknownCharactersError, match=r"^25 character\(s\).*'k' \(U\+006B\) and 15 more$"):
        tok.encode("bcdefghijklmnopqrstuvwxyz")


def test_checkpoint_form_round_trips():
    tok = CharTokenizer.from_text("שָׁלוֹם world\n")
    d = tok.to_dict()
    assert d["kind"] == "char" and isinstance(d["chars"], str)
    again = tokenizer_from_dict(d)
    assert again.chars == tok.chars
    assert again.encode("שָׁלוֹם").tolist() == tok.encode("שָׁלוֹם").tolist()


def test_bad_vocabularies_and_kinds_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        CharTokenizer(["a", "a"])
    with pytest.raises(ValueError, match="unknown tokenizer kind 'bpe'"):
        tokenizer_from_dict({"kind": "bpe", "chars": "ab"})
