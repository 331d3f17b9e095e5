import numpy as np

from charlens.data.charclasses import CLASS_INDEX, CLASS_NAMES, TABLES, classify, table_markdown
from charlens.data.corpora import bible_corpus


def names(text: str, lang: str) -> list[str]:
    return [CLASS_NAMES[c] for c in classify(text, lang)]


def test_english_classes():
    assert names("Ab e1 .\n", "en") == ["upper", "consonant", "space", "vowel", "digit", "space", "punctuation", "newline"]


def test_hebrew_classes_final_forms_vowel_letters_niqqud_and_punctuation():
    # final kaf/mem/nun/pe/tsadi are consonants; alef, he, vav, yod are the vowel letters
    assert set(names("ךםןףץ", "he")) == {"consonant"}
    assert set(names("אהוי", "he")) == {"vowel"}
    assert names("\u05b8\u05bc", "he") == ["vowel", "consonant"]  # qamats is a vowel point, dagesh marks a consonant
    assert set(names("\u05be\u05c3\u05f3\u05f4\u05c0", "he")) == {"punctuation"}  # maqaf, sof pasuq, geresh, gershayim, paseq


def test_every_character_has_exactly_one_class():
    for lang, table in TABLES.items():
        chars = [c for cls in table.values() for c in cls]
        assert len(chars) == len(set(chars)), lang


def test_default_corpora_characters_are_all_classified():
    for lang in ("en", "he"):
        corpus = bible_corpus(lang)
        chars = "".join(sorted(set(corpus.train + corpus.heldout)))
        codes = classify(chars, lang)
        unclassified = [c for c, k in zip(chars, codes) if k == CLASS_INDEX["other"]]
        assert unclassified == [], (lang, unclassified)


def test_unknown_character_is_other_and_dtype_is_int8():
    codes = classify("é", "en")
    assert codes.dtype == np.int8 and CLASS_NAMES[codes[0]] == "other"


def test_table_markdown_lists_every_class():
    md = table_markdown()
    for name in CLASS_NAMES:
        assert f"| {name} |" in md
