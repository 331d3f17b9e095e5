"""A UTF-8 text file read from disk piece by piece, so that memory stays flat in the file's size.

    text = TextFile("big.txt", progress=True)
    text.stats()                                        # one pass: checks, character count, sha256, language
    text.sample_windows("first", 128, 256, rng)         # reads only the sampled windows
    text.read(0, 1000)                                  # any range of characters

The text is the file decoded as UTF-8 (a leading byte-order mark dropped) and NFC-normalized, the
same string `data.corpora.read_text_file` returns; positions count its characters. The one pass
cuts the file into segments of about 64 KiB, each ending just before a space or newline: NFC never
composes across such a character, so normalizing segment by segment gives the whole text's NFC form.
It keeps one (character, byte) offset per segment, and a read decodes only the segments it needs.
(A run of 1 MiB without a space or newline is cut at a character boundary instead; only text with a
combining sequence exactly there could then differ from the whole-file NFC form.)
"""
from __future__ import annotations

import bisect
import hashlib
import os
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Literal

import numpy as np

from charlens.data.errors import CorpusError
from charlens.data.progress import progress
from charlens.data.tokenizer import normalize

BLOCK = 1 << 16  # bytes read at a time; segments are about this long
MAX_SEGMENT = 1 << 20  # a segment longer than this without a space or newline is cut anyway
BOM = b"\xef\xbb\xbf"
Half = Literal["first", "second"]


@dataclass(frozen=True)
class TextStats:
    n_chars: int
    chars: frozenset[str]  # the distinct characters (a tokenizer's vocabulary)
    sha256: str  # of the normalized text encoded as UTF-8 (a --text corpus's identity in checkpoints)
    lang: str  # "he" when most letters are Hebrew, else "en"


def char_counts(text: str) -> np.ndarray:
    """Occurrences of every code point in `text`, indexed by code point (numpy: set(text) would take
    ~50 ns a character)."""
    return np.bincount(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32))


def char_tally(text: str) -> dict[str, int]:
    """Occurrences of each distinct character of `text` (from char_counts)."""
    counts = char_counts(text)
    return {chr(c): int(counts[c]) for c in np.flatnonzero(counts)}


def letter_counts(counts: np.ndarray) -> tuple[int, int]:
    """(Hebrew letters, ASCII letters) among char_counts."""
    span = lambda lo, hi: int(counts[ord(lo):ord(hi) + 1].sum())
    return span("\u05d0", "\u05ea"), span("A", "Z") + span("a", "z")


def language_of(hebrew: int, latin: int) -> str:
    """'he' when most letters are Hebrew, else 'en' (the character classes to analyze a text with)."""
    return "he" if hebrew > latin else "en"


def window_starts(length: int, T: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Starts of up to `n` non-overlapping T-character windows of a `length`-character text, a seeded
    random choice in text order (the same draws as choosing from np.arange(0, length - T + 1, T))."""
    available = max(0, (length - T) // T + 1)
    return np.sort(rng.choice(available, size=min(n, available), replace=False)) * T


def _segments(f: BinaryIO, offset: int) -> Iterator[tuple[int, bytes]]:
    """(byte offset, bytes) of consecutive segments of f from `offset`, each cut just before a space or newline."""
    pending = b""
    while True:
        block = f.read(BLOCK)
        data = pending + block
        if not block:
            if data:
                yield offset, data
            return
        cut = max(data.rfind(b"\n"), data.rfind(b" "))
        if cut <= 0 and len(data) >= MAX_SEGMENT:
            cut = len(data) - 1
            while cut > 0 and data[cut] & 0xC0 == 0x80:  # back to the first byte of a UTF-8 character
                cut -= 1
        if cut <= 0:
            pending = data
            continue
        yield offset, data[:cut]
        offset, pending = offset + cut, data[cut:]


class TextFile:
    """A UTF-8 text file, checked and indexed in one pass (`stats`), then read by character ranges."""

    def __init__(self, path: str | os.PathLike, progress: bool = False) -> None:
        self.path = Path(path)
        self.progress = progress  # a progress bar on stderr while scanning (only on a terminal)
        self._stats: TextStats | None = None
        self._chars_at = array("q")  # character offset of each segment, then the total
        self._bytes_at = array("q")  # byte offset of each segment, then the file size
        self._signature: tuple[int, int] = (0, 0)

    def _open(self) -> BinaryIO:
        try:
            if not self.path.exists():
                raise CorpusError(f"text file not found: {self.path}")
            if not self.path.is_file():
                raise CorpusError(f"not a file: {self.path}")
            return open(self.path, "rb")
        except OSError as e:  # unreadable, or a name too long for the file system
            raise CorpusError(f"cannot read {self.path}: {e.strerror}") from None

    def stats(self) -> TextStats:
        """Read the file once: CorpusError if it is missing, unreadable, binary (NUL bytes), not UTF-8
        (naming the byte) or empty; else its character count, characters, sha256 and language."""
        if self._stats is None:
            with self._open() as f:
                self._stats = self._scan(f)
        return self._stats

    def _scan(self, f: BinaryIO) -> TextStats:
        st = os.fstat(f.fileno())
        self._signature = (st.st_size, st.st_mtime_ns)
        start = 3 if f.read(3) == BOM else 0
        f.seek(start)
        chars: set[str] = set()
        digest, n, hebrew, latin, blank = hashlib.sha256(), 0, 0, 0, True
        with progress(total=st.st_size, unit="B", unit_scale=True, desc=f"reading {self.path.name}", leave=False,
                      enabled=self.progress) as bar:
            try:
                for offset, raw in _segments(f, start):
                    text = self._decode(raw, offset)
                    self._chars_at.append(n)
                    self._bytes_at.append(offset)
                    n += len(text)
                    digest.update(text.encode())
                    counts = char_counts(text)
                    chars.update(map(chr, np.flatnonzero(counts)))
                    h, a = letter_counts(counts)
                    hebrew, latin, blank = hebrew + h, latin + a, blank and text.isspace()
                    bar.update(len(raw))
            except OSError as e:
                raise CorpusError(f"cannot read {self.path}: {e.strerror}") from None
        self._chars_at.append(n)
        self._bytes_at.append(st.st_size)
        if n == 0 or blank:
            raise CorpusError(f"{self.path} is empty")
        return TextStats(n, frozenset(chars), digest.hexdigest(), language_of(hebrew, latin))

    def _decode(self, raw: bytes, offset: int) -> str:
        if b"\x00" in raw:
            raise CorpusError(f"{self.path} looks binary (it holds NUL bytes); give a UTF-8 text file")
        try:
            return normalize(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise CorpusError(f"{self.path} is not valid UTF-8 (byte {offset + e.start}: {raw[e.start:e.start + 1]!r})") from None

    def read(self, start: int, stop: int) -> str:
        """Characters [start, stop) of the normalized text."""
        self.stats()
        with self._open() as f:
            return self._read(f, start, stop)

    def _read(self, f: BinaryIO, start: int, stop: int) -> str:
        st = os.fstat(f.fileno())
        if (st.st_size, st.st_mtime_ns) != self._signature:
            raise CorpusError(f"{self.path} changed while it was being read")
        start, stop = max(0, start), min(stop, self._chars_at[-1])
        first = bisect.bisect_right(self._chars_at, start) - 1
        pieces = []
        for k in range(first, len(self._chars_at) - 1):
            if self._chars_at[k] >= stop:
                break
            f.seek(self._bytes_at[k])
            text = self._decode(f.read(self._bytes_at[k + 1] - self._bytes_at[k]), self._bytes_at[k])
            pieces.append(text[max(0, start - self._chars_at[k]):stop - self._chars_at[k]])
        return "".join(pieces)

    def bounds(self, half: Half) -> tuple[int, int]:
        """Character range of the first or second half (the first holds n_chars // 2 characters)."""
        n = self.stats().n_chars
        return (0, n // 2) if half == "first" else (n // 2, n)

    def sample_windows(self, half: Half, T: int, n: int, rng: np.random.Generator) -> list[str]:
        """Up to `n` non-overlapping T-character windows of one half, a seeded random choice in text order:
        the windows `analysis.runs.inputs.sample_windows(text[half], T, n, rng)` gives on the whole text."""
        lo, hi = self.bounds(half)
        starts = window_starts(hi - lo, T, n, rng) + lo
        with self._open() as f:
            return [self._read(f, int(s), int(s) + T) for s in starts]


class FilteredText:
    """A TextFile's text with some characters removed (`--unknown-chars drop`), read in pieces: one pass
    tallies every character and how many each piece of PIECE characters keeps, then a range of the
    filtered text is read from the one or two pieces it lies in."""

    PIECE = 1 << 16

    def __init__(self, file: TextFile, removed: set[str]) -> None:
        self.file = file
        self._table = dict.fromkeys(map(ord, removed))
        self.tally: dict[str, int] = {}  # occurrences of every character of the unfiltered text
        self._kept_before = array("q", [0])  # filtered characters before each piece, then the total
        for start in range(0, file.stats().n_chars, self.PIECE):
            piece = char_tally(file.read(start, start + self.PIECE))
            for c, n in piece.items():
                self.tally[c] = self.tally.get(c, 0) + n
            self._kept_before.append(self._kept_before[-1] + sum(n for c, n in piece.items() if c not in removed))

    @property
    def n_chars(self) -> int:
        return self._kept_before[-1]

    @property
    def lang(self) -> str:
        """The filtered text's language, as TextStats.lang."""
        kept = {ord(c): n for c, n in self.tally.items() if ord(c) not in self._table}
        counts = np.zeros(max(kept, default=0) + 1, dtype=np.int64)
        counts[list(kept)] = list(kept.values())
        return language_of(*letter_counts(counts))

    def read(self, start: int, stop: int) -> str:
        """Characters [start, stop) of the filtered text."""
        first = bisect.bisect_right(self._kept_before, start) - 1
        pieces = []
        for k in range(first, len(self._kept_before) - 1):
            if self._kept_before[k] >= stop:
                break
            text = self.file.read(k * self.PIECE, (k + 1) * self.PIECE).translate(self._table)
            pieces.append(text[max(0, start - self._kept_before[k]):stop - self._kept_before[k]])
        return "".join(pieces)

    def sample_windows(self, half: Half, T: int, n: int, rng: np.random.Generator) -> list[str]:
        """As TextFile.sample_windows, on the filtered text."""
        lo, hi = (0, self.n_chars // 2) if half == "first" else (self.n_chars // 2, self.n_chars)
        return [self.read(int(s), int(s) + T) for s in window_starts(hi - lo, T, n, rng) + lo]
