"""Streaming attention extraction: windows of text -> the attention of every layer and head.

Windows are run in batches (eval mode, no gradients) and yielded one batch at a time; nothing is
kept between batches, so memory does not grow with the amount of text. Consecutive windows of
equal length share a batch (short --sentences windows keep their own length; no padding).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from charlens.model.hooks import attention_patterns, run_with_cache
from charlens.analysis.measures.detectors import CharBatch
from charlens.analysis.measures.value_weighted import row_normalize, value_weighted_attention
from charlens.data.charclasses import classify, features
from charlens.data.tokenizer import Tokenizer, UnknownPolicy
from charlens.model.transformer import TransformerLM


@dataclass
class AttentionBatch:
    attention: torch.Tensor  # (B, L, H, T, T) post-softmax, zero on future keys
    ids: torch.Tensor  # (B, T) long
    classes: torch.Tensor  # (B, T) long, codes into data.charclasses.CLASS_NAMES
    features: Optional[torch.Tensor]  # (B, T) long, data.charclasses.FEATURE_BITS (None: no character has one)
    texts: list[str]  # the B windows' characters

    @cached_property
    def chars(self) -> CharBatch:
        """What the detectors see of the batch (one object, so what detectors share is computed once)."""
        return CharBatch(self.ids, self.classes, self.features)

    def windows(self) -> Iterator[tuple[torch.Tensor, str, np.ndarray]]:
        """Per window: attention (L, H, T, T), text, class codes (T,) int8."""
        for b, text in enumerate(self.texts):
            yield self.attention[b], text, self.classes[b].numpy().astype(np.int8)


def _batches(windows: Sequence[str], batch_size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for w in windows:
        if batch and (len(batch) == batch_size or len(w) != len(batch[0])):
            yield batch
            batch = []
        batch.append(w)
    if batch:
        yield batch


def char_batch(tokenizer: Tokenizer, texts: Sequence[str], lang: str, unknown: UnknownPolicy = "replace") -> CharBatch:
    """Token ids, classes and feature bits of equal-length texts (classes and features looked up in one pass)."""
    shape = (len(texts), len(texts[0]))
    joined = "".join(texts)
    as_batch = lambda array: torch.from_numpy(np.asarray(array, dtype=np.int64).reshape(shape))
    return CharBatch(as_batch(np.stack([tokenizer.encode(t, unknown=unknown) for t in texts])), as_batch(classify(joined, lang)),
                     as_batch(features(joined, lang)))


def iter_char_batches(tokenizer: Tokenizer, windows: Sequence[str], lang: str, batch_size: int = 32) -> Iterator[CharBatch]:
    """The windows' characters in the batches `iter_attention` uses, without running a model."""
    for texts in _batches(windows, batch_size):
        yield char_batch(tokenizer, texts, lang)


@torch.no_grad()
def iter_attention(
    model: TransformerLM, tokenizer: Tokenizer, windows: Sequence[str], lang: str, batch_size: int = 32,
    unknown: UnknownPolicy = "replace", progress: bool = False, desc: str = "attention", value_weighted: bool = False,
) -> Iterator[AttentionBatch]:
    """Run `windows` (strings no longer than the block size) through `model` in batches and yield
    each batch's attention with its text and character classes."""
    model.eval()
    device = next(model.parameters()).device
    bar = tqdm(total=len(windows), desc=desc, unit="win", disable=not progress, leave=False)
    try:
        for texts in _batches(windows, batch_size):
            chars = char_batch(tokenizer, texts, lang, unknown)
            ids = chars.ids.to(device)
            if value_weighted:  # ||alpha_ij v_j W_O|| rows normalized (Kobayashi et al. 2020), see analysis.measures.value_weighted
                attention = row_normalize(value_weighted_attention(model, run_with_cache(model, ids, names=("v", "pattern"))))
            else:
                attention = attention_patterns(model, ids)
            yield AttentionBatch(attention.float().cpu(), chars.ids, chars.classes, chars.features, list(texts))
            bar.update(len(texts))
    finally:
        bar.close()
