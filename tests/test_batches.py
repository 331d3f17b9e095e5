"""The corpus batch source (issue #18 item 13): the text is held only as token ids of the smallest type the
vocabulary needs, encoded piece by piece, equal to encoding the whole text at once; peak memory grows with the
text by the ids alone."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from charlens.data.corpora import PIECE, bible_corpus, file_corpus
from charlens.data.textfile import TextFile
from charlens.data.tokenizer import CharTokenizer
from charlens.training.batches import CorpusSource, random_windows

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("lang", ["en", "he"])
def test_ids_equal_the_whole_texts_encoding(lang):
    corpus = bible_corpus(lang)
    tokenizer = CharTokenizer(sorted(corpus.chars()))
    source = CorpusSource(corpus, tokenizer, 128, 4, show=False)
    for split in ("train", "val"):
        whole = tokenizer.encode(corpus.read(split), unknown="replace")
        assert source.ids[split].dtype == np.uint8 and np.array_equal(source.ids[split], whole)
    # the batches the loop draws: the same windows as from the whole text's ids
    x, _ = source.batch("train", torch.Generator().manual_seed(5))
    train_ids = tokenizer.encode(corpus.read("train"), unknown="replace")
    assert torch.equal(x, random_windows(train_ids, 128, 4, torch.Generator().manual_seed(5))[0])


def test_a_text_file_is_never_read_whole_and_a_large_vocabulary_gets_two_bytes(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    alphabet = [chr(c) for c in range(0x4E00, 0x4E00 + 300)] + [" ", "\n"]  # 302 characters: beyond uint8
    path = tmp_path / "wide.txt"
    path.write_text("".join(rng.choice(alphabet, size=3 * PIECE + 12345)), encoding="utf-8")
    corpus = file_corpus(path, 32)
    tokenizer = CharTokenizer(sorted(corpus.chars()))
    spans: list[int] = []
    read = TextFile.read
    monkeypatch.setattr(TextFile, "read", lambda self, a, b: spans.append(b - a) or read(self, a, b))
    source = CorpusSource(corpus, tokenizer, 32, 4, show=False)
    assert max(spans) <= PIECE and sum(spans) == corpus.size("train") + corpus.size("val") + 1  # + the sample's prompt
    assert source.ids["train"].dtype == np.uint16
    monkeypatch.setattr(TextFile, "read", read)
    assert np.array_equal(source.ids["val"], tokenizer.encode(path.read_text(encoding="utf-8")[corpus.size("train"):]))


def peak_rss_mib(text: Path, out: Path) -> float:
    """Peak resident memory of train.py training 1 step on `text` (its own process)."""
    code = ("import resource, runpy, sys; sys.argv = sys.argv[1:]\n"
            "try:\n    runpy.run_path('train.py', run_name='__main__')\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    argv = ["train.py", "--text", str(text), "--preset", "tiny", "--max-iters", "1", "--eval-iters", "1", "--no-timeline",
            "--sample-chars", "0", "--threads", "1", "--out", str(out)]
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1]) / 1024


def test_peak_memory_grows_with_the_text_by_the_ids_alone(tmp_path):
    """12 million characters more of an ASCII text: 12 MB more of uint8 ids, not the 8 bytes a character of int64
    ids plus copies of the text that the trainer used to hold (measured: 497 MiB at 5 MB, 888 MiB at 50 MB)."""
    kjv = bible_corpus("en").train
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text(kjv[:1_000_000], encoding="utf-8")
    large.write_text((kjv * 5)[:13_000_000], encoding="utf-8")
    growth = peak_rss_mib(large, tmp_path / "l.pt") - peak_rss_mib(small, tmp_path / "s.pt")
    assert growth < 12_000_000 / 2**20 + 20, growth  # the ids, and 20 MiB for the allocator's noise
