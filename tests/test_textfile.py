"""Streaming --text files (data/textfile.py): the same text, windows and errors as reading the whole
file, with memory flat in the file's size."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from charlens.analysis.runs.inputs import sample_windows
from charlens.data import textfile
from charlens.data.corpora import CorpusError, detect_language
from charlens.data.textfile import FilteredText, TextFile, window_starts

ROOT = Path(__file__).resolve().parents[1]
# Decomposed (NFD) Hebrew with niqqud and Latin accents: NFC changes their length, so segment
# boundaries in the wrong place would shift every later position.
VERSE = "בְּרֵאשִׁית בָּרָא אֱלֹהִים אֵת הַשָּׁמַיִם, cafe\u0301 na\u0131\u0308ve Zoe\u0308 !\n"


def reference(raw: bytes) -> str:
    """What the whole-file path computes: decode (dropping a BOM), then NFC."""
    return unicodedata.normalize("NFC", raw.decode("utf-8-sig"))


@pytest.fixture
def small_blocks(monkeypatch):
    """Segments of ~64 bytes instead of 64 KiB, so a small file has hundreds of segment boundaries."""
    monkeypatch.setattr(textfile, "BLOCK", 64)
    monkeypatch.setattr(textfile, "MAX_SEGMENT", 256)


def write(path: Path, raw: bytes) -> Path:
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("raw", [
    b"\xef\xbb\xbf" + unicodedata.normalize("NFD", VERSE * 300).encode(),  # BOM, decomposed text
    ("".join(f"line {i} of a story\n" for i in range(2000))).encode(),
    ("\u4e00\u4e8c\u4e09\u56db\u4e94" * 3000).encode(),  # no space or newline: cut at character boundaries
], ids=["decomposed-hebrew-and-latin", "ascii-lines", "no-spaces"])
def test_stats_ranges_and_windows_equal_the_whole_file_path(tmp_path, small_blocks, raw):
    path = write(tmp_path / "t.txt", raw)
    text = reference(raw)
    f = TextFile(path)
    st = f.stats()
    assert len(f._chars_at) > 100  # many segments, so the boundaries are exercised
    assert st.n_chars == len(text) and st.chars == frozenset(text)
    assert st.sha256 == hashlib.sha256(text.encode()).hexdigest() and st.lang == detect_language(text)
    cuts = np.random.default_rng(0).integers(0, len(text), size=(50, 2))
    for a, b in np.sort(cuts, axis=1).tolist() + [[0, len(text)], [len(text) - 1, len(text) + 5]]:
        assert f.read(a, b) == text[a:b]
    for T, n in [(16, 5), (64, 1000), (len(text) // 2, 3)]:
        mine, theirs = np.random.default_rng(7), np.random.default_rng(7)
        half = len(text) // 2
        assert f.sample_windows("first", T, n, mine) == sample_windows(text[:half], T, n, theirs)
        assert f.sample_windows("second", T, n, mine) == sample_windows(text[half:], T, n, theirs)


def test_hebrew_text_is_detected_and_normalized(tmp_path):
    path = write(tmp_path / "he.txt", unicodedata.normalize("NFD", VERSE * 50).encode())
    st = TextFile(path).stats()
    assert st.lang == "he" and "\ufb2a" not in st.chars and "\u05e9" in st.chars and "é" in st.chars


@pytest.mark.parametrize("raw, message", [
    (None, "text file not found: {path}"),
    (b"", "{path} is empty"),
    (b" \n\t\n" * 5000, "{path} is empty"),
    (b"PK\x03\x04\x00\x00binary", "{path} looks binary (it holds NUL bytes); give a UTF-8 text file"),
    (b"good text " * 10_000 + b"\x00", "{path} looks binary (it holds NUL bytes); give a UTF-8 text file"),
    (b"caf\xe9 au lait", "{path} is not valid UTF-8 (byte 3: b'\\xe9')"),
    (b"abc " * 50_000 + b"\xff", "{path} is not valid UTF-8 (byte 200000: b'\\xff')"),  # in a later segment
    (b"\xef\xbb\xbfabc \xc3", "{path} is not valid UTF-8 (byte 7: b'\\xc3')"),  # counted from the file's start
])
def test_bad_files_give_one_line(tmp_path, raw, message):
    path = tmp_path / "t.txt"
    if raw is not None:
        path.write_bytes(raw)
    with pytest.raises(CorpusError) as e:
        TextFile(path).stats()
    assert str(e.value) == message.format(path=path)


def test_a_folder_and_an_unreadable_file_give_one_line(tmp_path, monkeypatch):
    with pytest.raises(CorpusError, match=r"^not a file: "):
        TextFile(tmp_path).stats()
    path = write(tmp_path / "t.txt", b"some text\n")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(textfile, "open", denied, raising=False)
    with pytest.raises(CorpusError, match=r"^cannot read .*t\.txt: Permission denied$"):
        TextFile(path).stats()


def test_a_file_changed_after_the_scan_is_refused(tmp_path):
    path = write(tmp_path / "t.txt", b"one two three\n" * 100)
    f = TextFile(path)
    f.stats()
    path.write_bytes(b"four five six\n" * 120)
    with pytest.raises(CorpusError, match="changed while it was being read"):
        f.read(0, 10)


MEASURE = textwrap.dedent("""
    import sys
    import numpy as np
    from charlens.data.textfile import TextFile
    f = TextFile(sys.argv[1])
    rng = np.random.default_rng(0)
    windows = f.sample_windows("first", 128, 256, rng) + f.sample_windows("second", 128, 256, rng)
    assert len(windows) == 512 and all(len(w) == 128 for w in windows)
    # VmHWM, not ru_maxrss: a forked child's ru_maxrss starts at its parent's (pytest's) size.
    peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(f.stats().n_chars, peak)
""")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="peak memory is read from /proc/self/status (Linux)")
def test_memory_is_flat_in_the_file_size(tmp_path):
    """Peak RSS of a process that scans a file and samples 2 x 256 windows: 50 MB vs 5 MB of text."""
    line = (VERSE + "In the beginning God created the heaven and the earth.\n").encode()
    peaks = {}
    for mb in (5, 50):
        path = tmp_path / f"{mb}.txt"
        repeats = mb * 10**6 // len(line)
        path.write_bytes(line * repeats)
        out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
        assert int(out[0]) == repeats * len(reference(line))  # characters
        peaks[mb] = int(out[1])  # KiB
    print(f"peak memory: {peaks[5] / 1024:.1f} MiB for 5 MB of text, {peaks[50] / 1024:.1f} MiB for 50 MB")  # shown with -s
    assert peaks[50] <= 1.10 * peaks[5], peaks


def test_filtered_text_reads_any_range_across_pieces(tmp_path, monkeypatch):
    """--unknown-chars drop in pieces: every range equals the same range of the whole filtered text."""
    monkeypatch.setattr(FilteredText, "PIECE", 7)  # many pieces, ranges across their edges
    path = write(tmp_path / "t.txt", ("abXc dYe f" * 13 + "בראשית X").encode())
    whole = reference(path.read_bytes()).replace("X", "").replace("Y", "")
    filtered = FilteredText(TextFile(path), {"X", "Y"})
    assert filtered.n_chars == len(whole) and filtered.tally["X"] == 14 and filtered.lang == "en"
    for start, stop in [(0, 5), (3, 40), (6, 7), (50, len(whole)), (0, len(whole)), (len(whole) - 1, len(whole) + 3)]:
        assert filtered.read(start, stop) == whole[start:stop]
    rng, rng2 = np.random.default_rng(3), np.random.default_rng(3)
    half = len(whole) // 2
    assert filtered.sample_windows("second", 9, 4, rng) == [whole[half + s:half + s + 9] for s in window_starts(len(whole) - half, 9, 4, rng2)]
