"""Corpora: the two Bibles split by the same books, --text files, their errors, and the cache."""
from __future__ import annotations

from pathlib import Path

import pytest

from charlens.data import corpora, textfile
from charlens.data.corpora import (CorpusError, bible_corpus, corpus_from_identity, detect_language, file_corpus,
                          write_bible_text)


@pytest.fixture(scope="module")
def en():
    return bible_corpus("en")


@pytest.fixture(scope="module")
def he():
    return bible_corpus("he")


def test_sizes_and_splits_of_the_default_corpora(en, he):
    assert en.name == "en" and he.name == "he" and (en.lang, he.lang) == ("en", "he")
    # Sizes reported in docs/training.md (characters).
    assert en.sizes() == {"train": 2_965_902, "val": 109_385, "heldout": 112_696}
    assert he.sizes() == {"train": 1_424_792, "val": 54_588, "heldout": 56_737}


def test_held_out_books_are_parallel_and_never_in_training(en, he):
    refs, he_refs = dict(en.heldout_units), dict(he.heldout_units)
    # Every Hebrew verse has its English verse under the same reference (Hebrew numbering);
    # the one KJV verse missing from the Hebrew text is marked as such.
    assert set(refs) - set(he_refs) == {"Nehemiah 7:67a"} and set(he_refs) <= set(refs)
    for ref, en_start, he_start in [("Jonah 2:1", "Now the LORD had prepared a great fish", "וימן יהוה דג גדול"),
                                    ("Nehemiah 3:33", "But it came to pass, that when Sanballat", "ויהי כאשר שמע סנבלט"),
                                    ("Nehemiah 7:68", "Their camels", "גמלים"),
                                    ("Nehemiah 10:1", "And because of all this", "ובכל־זאת")]:
        assert refs[ref].startswith(en_start) and he_refs[ref].startswith(he_start)
    assert refs["Ruth 1:1"].startswith("Now it came to pass in the days when the judges ruled")
    assert {ref.rsplit(" ", 1)[0] for ref in refs} == set(corpora.HELDOUT_BOOKS)
    for text in (refs["Ruth 1:16"], refs["Jonah 1:1"], dict(he.heldout_units)["Ruth 1:1"]):
        assert text not in en.train and text not in he.train
        assert text in en.heldout or text in he.heldout


def test_hebrew_has_no_cantillation_and_niqqud_only_when_asked(he):
    assert not corpora.CANTILLATION.search(he.train) and not corpora.NIQQUD.search(he.train)
    assert dict(he.heldout_units)["Ruth 1:1"].startswith("ויהי בימי שפט השפטים")
    pointed = bible_corpus("he", keep_niqqud=True)
    assert pointed.name == "he_niqqud" and pointed.identity["keep_niqqud"] is True
    assert corpora.NIQQUD.search(pointed.train) and not corpora.CANTILLATION.search(pointed.train)
    assert corpora.NIQQUD.sub("", dict(pointed.heldout_units)["Ruth 1:1"]) == dict(he.heldout_units)["Ruth 1:1"]


def test_drop_vowels_writes_english_as_an_abjad_keeping_words_and_verses(en):
    abjad = bible_corpus("en", drop_vowels=True)
    assert abjad.name == "en_novowel" and abjad.lang == "en" and abjad.identity["drop_vowels"] is True
    for split in ("train", "val", "heldout"):
        text, plain = getattr(abjad, split), getattr(en, split)
        assert not set(text) & set("aeiouAEIOU")
        assert text.count("y") == plain.count("y") > 0 and text.count("Y") == plain.count("Y")  # y stays
        lines, plain_lines = text.split("\n"), plain.split("\n")
        assert len(lines) == len(plain_lines)  # one verse a line, none lost
        for line, verse in zip(lines, plain_lines):  # every word kept, in order; vowel-only words have nothing left
            assert line.split(" ") == [w for w in (w.translate(corpora._NO_VOWELS) for w in verse.split(" ")) if w] or not verse
    assert dict(abjad.heldout_units)["Ruth 1:1"].startswith("Nw t cm t pss n th dys whn th jdgs rld")
    assert [k for k, _ in abjad.heldout_units] == [k for k, _ in en.heldout_units]  # the same verses line up
    assert corpus_from_identity(abjad.identity).train == abjad.train
    with pytest.raises(CorpusError, match="English only"):
        bible_corpus("he", drop_vowels=True)
    with pytest.raises(CorpusError, match="unusable corpus identity.*drop_vowels"):
        corpus_from_identity({**abjad.identity, "drop_vowels": "yes"})


def test_unknown_language_is_refused():
    with pytest.raises(CorpusError, match="unknown language 'fr'"):
        bible_corpus("fr")


def test_text_file_splits_off_the_last_tenth(tmp_path):
    path = tmp_path / "story.txt"
    text = "".join(f"line {i:05d} of a story\n" for i in range(1000))
    path.write_text(text, encoding="utf-8")
    c = file_corpus(path)
    cut = int(len(text) * 0.9)
    assert c.train == text[:cut] and c.val == c.heldout == text[cut:]
    assert c.name == "story" and c.lang == "en" and c.identity["kind"] == "file"
    assert corpus_from_identity(c.identity).train == c.train
    path.write_text(text.replace("story", "fable"), encoding="utf-8")
    with pytest.raises(CorpusError, match="changed since the checkpoint"):
        corpus_from_identity(c.identity)


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"", "is empty"),
    (b"   \n\n", "is empty"),
    (b"PK\x03\x04\x00\x00binary", "looks binary"),
    ("caf\u00e9".encode("latin-1") * 2000, "not valid UTF-8"),
    (b"short text\n" * 10, "at least"),
])
def test_bad_text_files_give_one_clear_line(tmp_path, content, message):
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CorpusError, match=message) as e:
        file_corpus(path)
    assert "\n" not in str(e.value)


def test_an_unreadable_text_file_gives_one_clear_line(tmp_path, monkeypatch):
    path = tmp_path / "corpus.txt"
    path.write_text("x" * 10_000, encoding="utf-8")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(textfile, "open", denied, raising=False)  # the file is opened in data/textfile.py
    with pytest.raises(CorpusError, match=r"^cannot read .*corpus\.txt: Permission denied$"):
        file_corpus(path)


def test_detect_language():
    assert detect_language("בראשית ברא אלהים, and some words") == "he"
    assert detect_language("In the beginning God created") == "en"


def test_cache_is_reused_and_a_changed_source_rebuilds(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARLENS_CACHE", str(tmp_path))
    builds = []
    build = lambda: builds.append(1) or {"train": f"built {len(builds)}"}
    assert corpora._cached({"name": "x", "sha256": "aaa"}, build) == {"train": "built 1"}
    assert corpora._cached({"name": "x", "sha256": "aaa"}, build) == {"train": "built 1"}
    assert len(builds) == 1
    assert corpora._cached({"name": "x", "sha256": "bbb"}, build) == {"train": "built 2"}
    assert len(list(tmp_path.glob("x-*.json"))) == 2 and not list(tmp_path.glob("*.tmp"))


def test_cache_lives_in_the_user_cache_dir_never_in_the_package(monkeypatch, tmp_path):
    monkeypatch.delenv("CHARLENS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert corpora.cache_dir() == tmp_path / "xdg" / "charlens"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert corpora.cache_dir() == tmp_path / "home" / ".cache" / "charlens"
    monkeypatch.setenv("CHARLENS_CACHE", str(tmp_path / "mine"))
    assert corpora.cache_dir() == tmp_path / "mine"
    package = Path(corpora.__file__).resolve().parent
    assert package not in corpora.cache_dir().resolve().parents


def test_write_bible_text_writes_one_verse_a_line(tmp_path, en):
    path = write_bible_text("en", tmp_path / "kjv.txt", old_testament_only=True)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "In the beginning God created the heaven and the earth."
    assert len(path.read_text(encoding="utf-8")) == sum(en.sizes().values())
