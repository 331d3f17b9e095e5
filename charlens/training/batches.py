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
    metrics(model, device, autocast)  numbers of the source's own for every evaluation record (a synthetic task's
                                    accuracy where it can be predicted; a text has none)
    identity                        stored in the checkpoint as "corpus": how to find the data again
    lang, heldout, prompt           the timeline's language and probe text (a Text: its windows are read when
                                    sliced); the sample's first characters
CorpusSource is the one for a text (a Bible or a --text file). It holds the text only as token ids, encoded
piece by piece into arrays of the smallest type the vocabulary needs (1 byte a character up to 256 distinct
characters, else 2), so its memory grows with the text by the ids alone. training/task_source.py holds the
synthetic induction task's source and `source_for`, which picks the one a corpus needs.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Literal, Protocol

import numpy as np
import torch

from charlens.data.corpora import Corpus, Text
from charlens.data.progress import progress
from charlens.data.tokenizer import Tokenizer, ids_dtype
from charlens.model.transformer import TransformerLM

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
    heldout: Text
    prompt: str

    def batch(self, split: Split, generator: torch.Generator, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]: ...
    def whole(self, split: Split) -> Windows: ...
    def describe(self) -> str: ...
    def metrics(self, model: TransformerLM, device: torch.device, autocast: AbstractContextManager) -> dict[str, float]: ...


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

    def __init__(self, corpus: Corpus, tokenizer: Tokenizer, block_size: int, batch_size: int, show: bool = True) -> None:
        self.ids = {split: encode_split(corpus, split, tokenizer, show) for split in SPLITS}
        self.block_size, self.batch_size = block_size, batch_size
        self.identity, self.lang = corpus.identity, corpus.lang
        self.heldout: Text = corpus.text("heldout")
        self.prompt = corpus.read("val", 0, 1)
        self._described = f"{corpus.name}: {', '.join(f'{k} {v:,}' for k, v in corpus.sizes().items())} characters"

    def batch(self, split: Split, generator: torch.Generator, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        return random_windows(self.ids[split], self.block_size, self.batch_size, generator, rows)

    def whole(self, split: Split) -> ConsecutiveWindows:
        return ConsecutiveWindows(self.ids[split], self.block_size)

    def describe(self) -> str:
        return self._described

    def metrics(self, model: TransformerLM, device: torch.device, autocast: AbstractContextManager) -> dict[str, float]:
        """A text has no numbers of its own beside the losses."""
        return {}

def encode_split(corpus: Corpus, split: str, tokenizer: Tokenizer, show: bool = True) -> np.ndarray:
    """A split's token ids (characters outside the vocabulary as the unknown token), encoded piece by piece into
    one array of ids_dtype(vocabulary): no copy of the text is ever held whole."""
    ids = np.empty(corpus.size(split), dtype=ids_dtype(tokenizer.vocab_size))
    at = 0
    with progress(total=len(ids), desc=f"encoding the {split} text", unit="char", unit_scale=True, leave=False,
                  enabled=show) as bar:
        for piece in corpus.pieces(split):
            part = tokenizer.encode(piece, unknown="replace")
            assert len(part) == len(piece), "a corpus's text is NFC-normalized: encoding never changes its length"
            ids[at:at + len(part)] = part
            at += len(part)
            bar.update(len(part))
    return ids
