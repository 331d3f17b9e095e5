"""Fixtures shared by the trainer tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from data.corpora import bible_corpus


@pytest.fixture(scope="session")
def text_file(tmp_path_factory) -> Path:
    """40k characters of the King James Bible as a --text corpus (a fresh copy per test session)."""
    path = tmp_path_factory.mktemp("corpus") / "kjv_part.txt"
    path.write_text(bible_corpus("en").train[:40_000], encoding="utf-8")
    return path
