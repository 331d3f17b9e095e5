"""Character batches and hand-made attention for the detector, scoring and decomposition tests."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from charlens.analysis.measures.detectors import CharBatch
from charlens.data.charclasses import classify, features
from charlens.data.tokenizer import CharTokenizer


def batch(texts: str | Sequence[str], lang: str = "en") -> CharBatch:
    """A CharBatch of equal-length texts (one text: a batch of one), ids from the texts' own characters."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    tok = CharTokenizer.from_text("".join(texts))
    stack = lambda arrays: torch.from_numpy(np.stack(arrays).astype(np.int64))
    return CharBatch(stack([tok.encode(t) for t in texts]), stack([classify(t, lang) for t in texts]),
                     stack([features(t, lang) for t in texts]))


def one_hot_attention(T: int, key_of_row: Callable[[int], int]) -> torch.Tensor:
    """(1, 1, 1, T, T): row i attends only to key_of_row(i)."""
    A = torch.zeros(1, 1, 1, T, T)
    for i in range(T):
        A[0, 0, 0, i, key_of_row(i)] = 1.0
    return A
