"""Where a run's batches come from: one small interface (BatchSource), so that the training loop never
knows whether it trains on a corpus or on a synthetic task.

A batch source gives
    batch(split, generator, rows)   inputs and targets (B, T), int64 on the CPU: the batch a step trains on
                                    (split "train", the run's generator) or an evaluation batch ("train" or
                                    "val", a generator of the evaluation's own). The whole global batch is
                                    always drawn from `generator`; `rows` keeps this process's share (DDP),
                                    so every process count sees the same global batches.
    whole(split)                    the whole split as consecutive windows (the final validation loss)
    describe()                      what the run trains on, for its start-up line
    identity                        stored in the checkpoint as "corpus": how to find the data again
    lang, heldout, prompt           the timeline's language and probe text; the sample's first characters
CorpusSource is the one for a text (a Bible or a --text file).
"""
from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
import torch

from charlens.data.corpora import Corpus
from charlens.data.tokenizer import Tokenizer

Split = Literal["train", "val"]
SPLITS: tuple[Split, ...] = ("train", "val")


class Windows(Protocol):
    """A split as a sequence of windows of `width` characters: inputs and targets of rows [start, stop)."""

    width: int

    def __len__(self) -> int: ...
    def rows(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]: ...


class BatchSource(Protocol):
    identity: dict
    lang: str
    heldout: str
    prompt: str

    def batch(self, split: Split, generator: torch.Generator, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]: ...
    def whole(self, split: Split) -> Windows: ...
    def describe(self) -> str: ...


def random_windows(ids: np.ndarray, block_size: int, batch_size: int, generator: torch.Generator,
                   rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` windows of `ids` at random starts (B, T) and the same windows shifted by one character,
    gathered in one indexing operation; `rows` keeps part of the batch (the generator draws all of it)."""
    starts = torch.randint(len(ids) - block_size, (batch_size,), generator=generator)[rows]
    windows = torch.from_numpy(ids[starts.numpy()[:, None] + np.arange(block_size + 1)].astype(np.int64))  # (B, T+1)
    return windows[:, :-1], windows[:, 1:]


class ConsecutiveWindows:
    """Non-overlapping windows of `width` characters from the start of `ids` (the spare end left out)."""

    def __init__(self, ids: np.ndarray, width: int) -> None:
        self.ids, self.width = ids, width

    def __len__(self) -> int:
        return (len(self.ids) - 1) // self.width

    def rows(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        stop, T = min(stop, len(self)), self.width
        chunk = torch.from_numpy(self.ids[start * T: stop * T + 1].astype(np.int64))
        return chunk[:-1].view(-1, T), chunk[1:].view(-1, T)


def to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on the device; to a GPU from pinned memory, so the copy overlaps the previous step."""
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    if device.type != "cpu":
        return x.to(device), y.to(device)
    return x, y


class CorpusSource:
    """Random windows of a corpus's training or validation text, as token ids."""

    def __init__(self, corpus: Corpus, tokenizer: Tokenizer, block_size: int, batch_size: int) -> None:
        self.ids = {split: tokenizer.encode(text, unknown="replace") for split, text in (("train", corpus.train), ("val", corpus.val))}
        self.block_size, self.batch_size = block_size, batch_size
        self.identity, self.lang, self.heldout, self.prompt = corpus.identity, corpus.lang, corpus.heldout, corpus.val[:1]
        self._described = f"{corpus.name}: {', '.join(f'{k} {v:,}' for k, v in corpus.sizes().items())} characters"

    def batch(self, split: Split, generator: torch.Generator, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        return random_windows(self.ids[split], self.block_size, self.batch_size, generator, rows)

    def whole(self, split: Split) -> ConsecutiveWindows:
        return ConsecutiveWindows(self.ids[split], self.block_size)

    def describe(self) -> str:
        return self._described
