"""Streaming attention extraction: windows of text -> the attention of every layer and head.

Windows are run in batches (eval mode, no gradients) and yielded one batch at a time; nothing is
kept between batches, so memory does not grow with the amount of text. Consecutive windows of
equal length share a batch (short --sentences windows keep their own length; no padding).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from model.hooks import run_with_cache
from analysis.measures.value_weighted import row_normalize, value_weighted_attention
from data.charclasses import classify
from data.tokenizer import Tokenizer, UnknownPolicy
from model.transformer import TransformerLM


@dataclass
class AttentionBatch:
    attention: torch.Tensor  # (B, L, H, T, T) post-softmax, zero on future keys
    ids: torch.Tensor  # (B, T) long
    classes: torch.Tensor  # (B, T) long, codes into data.charclasses.CLASS_NAMES
    texts: list[str]  # the B windows' characters

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
            ids = torch.from_numpy(np.stack([tokenizer.encode(t, unknown=unknown).astype(np.int64) for t in texts])).to(device)
            classes = torch.from_numpy(np.stack([classify(t, lang) for t in texts]).astype(np.int64))
            if value_weighted:  # ||alpha_ij v_j W_O|| rows normalized (Kobayashi et al. 2020), see analysis.measures.value_weighted
                attention = row_normalize(value_weighted_attention(model, run_with_cache(model, ids, names=("v", "pattern"))))
            else:
                _, _, attention = model(ids, return_attention=True)
            yield AttentionBatch(attention.float().cpu(), ids.cpu(), classes, list(texts))
            bar.update(len(texts))
    finally:
        bar.close()
