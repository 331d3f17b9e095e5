"""Fixtures shared by the trainer and analyzer tests."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from charlens.data.corpora import bible_corpus

if os.environ.get("PYTEST_XDIST_WORKER"):  # tests side by side (the README's -n 2): one thread each, for the tests
    os.environ["OMP_NUM_THREADS"] = "1"  # and the processes they start, not two threads each on two cores
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def text_file(tmp_path_factory) -> Path:
    """40k characters of the King James Bible as a --text corpus (a fresh copy per test session)."""
    path = tmp_path_factory.mktemp("corpus") / "kjv_part.txt"
    path.write_text(bible_corpus("en").train[:40_000], encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def second_order_checkpoint(tmp_path_factory) -> Path:
    """A tiny model trained 150 steps (timeline recorded) on text where each character is the one two places
    back plus 1 or 2 (mod 8): only a head that reads the previous character can predict the next one."""
    from charlens import train

    folder = tmp_path_factory.mktemp("second_order")
    rng = np.random.default_rng(0)
    x = [0, 1]
    for _ in range(12000):
        x.append((x[-2] + 1 + int(rng.integers(2))) % 8)
    text = folder / "rule.txt"
    text.write_text("".join("abcdefgh"[v] for v in x), encoding="utf-8")
    out = folder / "rule.pt"
    assert train.main(["--text", str(text), "--preset", "tiny", "--max-iters", "150", "--lr", "1e-2", "--batch-size", "32",
                       "--eval-interval", "150", "--eval-iters", "2", "--out", str(out), "--seed", "0", "--sample-chars", "0"]) == 0
    return out


@pytest.fixture(scope="session")
def english_host(tmp_path_factory) -> Path:
    """A 4 x 8 model (block 64) trained briefly on the English Bible (120 steps, no timeline): a trained host
    for heads planted through their hook points (tests/test_labels.py)."""
    from charlens import train

    out = tmp_path_factory.mktemp("host") / "host_en.pt"
    assert train.main(["--lang", "en", "--preset", "tiny", "--n-layer", "4", "--n-head", "8", "--n-embd", "32",
                       "--block-size", "64", "--max-iters", "120", "--lr", "1e-2", "--batch-size", "16",
                       "--eval-interval", "120", "--eval-iters", "2", "--no-timeline", "--out", str(out), "--seed", "0",
                       "--sample-chars", "0"]) == 0
    return out


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium for the page tests (tests/chromium.py); skipped, with the reason, where it is
    not installed. A module may define its own (test_live_report.py records the performance log)."""
    from chromium import CHROMEDRIVER, CHROMIUM, MISSING, chromium

    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(MISSING)
    with chromium() as driver:
        yield driver
