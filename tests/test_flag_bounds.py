"""Unbounded flags (issue #14, class 3): every numeric flag of train.py has a range, shown in --help
and checked before any work, and a run whose memory estimate exceeds the memory available is refused."""
from __future__ import annotations

import re

import pytest

from charlens import train
from charlens.training import config
from charlens.training.config import SETTING_RANGES

SEED_RANGE = "[0, 9,223,372,036,854,775,806]"


@pytest.fixture
def no_corpus(monkeypatch):
    """Fail the test if the corpus is read: range checks come first."""
    def read(*args, **kwargs):
        raise AssertionError("the corpus was read before the flags were checked")

    monkeypatch.setattr(train, "bible_corpus", read)


@pytest.mark.parametrize("flag, value, message", [
    ("--block-size", "1000000", "must be an integer in [1, 8,192], got 1000000"),
    ("--n-embd", "10000000", "must be an integer in [1, 8,192], got 10000000"),
    ("--n-layer", "100000", "must be an integer in [1, 256], got 100000"),
    ("--n-head", "1000", "must be an integer in [1, 256], got 1000"),
    ("--batch-size", "100000000", "must be an integer in [1, 65,536], got 100000000"),
    ("--seed", "-1", f"must be an integer in {SEED_RANGE}, got -1"),
    ("--seed", str(2**64), f"must be an integer in {SEED_RANGE}, got 18446744073709551616"),
    ("--max-iters", str(10**10), "must be an integer in [1, 1,000,000,000], got 10000000000"),
    ("--warmup-iters", "-1", "must be an integer in [0, 1,000,000,000], got -1"),
    ("--eval-interval", "0", "must be an integer in [1, 1,000,000,000], got 0"),
    ("--eval-iters", "1000000", "must be an integer in [1, 100,000], got 1000000"),
    ("--threads", "5000", "must be an integer in [1, 1,024], got 5000"),
    ("--sample-chars", "1000000", "must be an integer in [0, 100,000], got 1000000"),
    ("--lr", "11", "must be a number in (0, 10], got 11.0"),
    ("--lr", "0", "must be a number in (0, 10], got 0.0"),
    ("--min-lr", "inf", "must be a number in [0, 10], got inf"),
    ("--weight-decay", "1000", "must be a number in [0, 100], got 1000.0"),
    ("--beta2", "1", "must be a number in [0, 1), got 1.0"),
    ("--grad-clip", "-1", "must be a number in [0, 1,000,000], got -1.0"),
    ("--dropout", "-0.1", "must be a number in [0, 1), got -0.1"),
])
def test_out_of_range_flags_are_refused_before_any_work(no_corpus, tmp_path, capsys, flag, value, message):
    assert train.main(["--lang", "en", f"{flag}={value}", "--out", str(tmp_path / "m.pt")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"train.py: error: {flag} {message}"]
    assert list(tmp_path.iterdir()) == []


def test_help_gives_every_numeric_flags_range(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, _ in train.NUMERIC_FLAGS + [("threads", ""), ("sample-chars", "")]:
        assert re.search(rf"--{name} \S+ .*?in {re.escape(str(SETTING_RANGES[name.replace('-', '_')]))}", text), name


def test_a_run_larger_than_the_memory_available_is_refused(tmp_path, capsys, monkeypatch):
    """Within every range, yet 256 layers of width 8,192 need terabytes; with 16 GiB available: refused."""
    monkeypatch.setattr(config, "available_memory", lambda: 16 * 2**30)
    argv = ["--lang", "en", "--n-layer", "256", "--n-embd", "8192", "--n-head", "8", "--block-size", "8192",
            "--out", str(tmp_path / "m.pt")]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    found = re.fullmatch(r"train\.py: error: this run needs about ([\d,.]+) GiB of memory \(model, AdamW state, activations "
                         r"of --batch-size 32 x --block-size 8192, corpus as token ids\), more than the 16\.0 GiB "
                         r"available; lower --batch-size, --block-size, --n-embd or --n-layer", err[0])
    assert len(err) == 1 and found, err
    assert float(found.group(1).replace(",", "")) > 3000  # 16 bytes x 206e9 parameters alone
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(config, "available_memory", lambda: 2**20)  # 1 MiB: even the tiny preset is refused
    assert train.main(["--lang", "en", "--preset", "tiny", "--out", str(tmp_path / "m.pt")]) == 2
    assert "more than the 0.0 GiB available" in capsys.readouterr().err
