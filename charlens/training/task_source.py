"""The synthetic induction task (data.induction_task) as a batch source (training/batches.py): fresh sequences
every step, evaluation on the task's fixed sets, and the task's own numbers in every evaluation record.

    source = source_for(corpus, tokenizer, settings)   # TaskSource for a task corpus, CorpusSource for a text

Training batches are `batch_size` new sequences of block_size + 1 letters from the run's generator (a resumed
run continues the same stream, as on a corpus); an evaluation's "train" batches are new sequences from the
evaluation's own generator (the same ones at every evaluation), its "val" batches rows of the fixed val set;
the final whole-split loss runs over every sequence of the fixed val set. `metrics` gives every evaluation
record the loss and accuracy (argmax) on the val set's second copies: the predictions only an induction
circuit can make.
"""
from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from torch.nn import functional as F

from charlens.data.corpora import Corpus, Text
from charlens.data.induction_task import SET_SIZE, TaskBatch, task_from_identity
from charlens.data.tokenizer import Tokenizer
from charlens.model.transformer import TransformerLM
from charlens.training.batches import BatchSource, CorpusSource, Split, to_device
from charlens.training.config import TrainSettings

METRIC_ROWS = 128  # sequences per forward pass of `metrics`


def is_task(corpus: Corpus) -> bool:
    return corpus.identity.get("kind") == "task"


def source_for(corpus: Corpus, tokenizer: Tokenizer, s: TrainSettings) -> BatchSource:
    """The batch source a corpus needs: the task's for a synthetic task, else random windows of the text."""
    if is_task(corpus):
        return TaskSource(corpus, s.batch_size)
    return CorpusSource(corpus, tokenizer, s.block_size, s.batch_size)


class TaskSequences:
    """A fixed set as windows (training/batches.Windows): each sequence's first length - 1 letters and their targets."""

    def __init__(self, batch: TaskBatch) -> None:
        self.ids, self.width = batch.ids, batch.ids.shape[1] - 1

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        part = self.ids[start:stop]
        return part[:, :-1], part[:, 1:]


class TaskSource:
    """Sequences of the induction task named by a task corpus's identity."""

    def __init__(self, corpus: Corpus, batch_size: int) -> None:
        self.task = task_from_identity(corpus.identity)
        self.batch_size = batch_size
        self.identity, self.lang, self.prompt = corpus.identity, corpus.lang, corpus.read("val", 0, 1)
        self.heldout: Text = corpus.heldout
        self.val = self.task.fixed_set("val")

    def batch(self, split: Split, generator: torch.Generator, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        if split == "train":
            ids = self.task.draw(self.batch_size, generator).ids[rows]
        else:
            ids = self.val.ids[torch.randint(SET_SIZE, (self.batch_size,), generator=generator)[rows]]
        return ids[:, :-1], ids[:, 1:]

    def whole(self, split: Split) -> TaskSequences:
        return TaskSequences(self.val if split == "val" else self.task.fixed_set("train"))

    def describe(self) -> str:
        t = self.task
        return (f"induction task: {t.length + 1}-letter sequences of {t.letters} letters drawn every step, a {t.segment}-"
                f"letter segment copied to a random later position" +
                (f", each letter its predecessor's successor with chance {t.follow:g}" if t.follow else "") +
                f"; fixed sets of {SET_SIZE} sequences")

    @torch.inference_mode()
    def metrics(self, model: TransformerLM, device: torch.device, autocast: AbstractContextManager) -> dict[str, float]:
        """Loss and accuracy on the second copies of the fixed val set (data.induction_task.TaskBatch.second_copy)."""
        was_training = model.training
        model.eval()
        loss_sum, hits, n = 0.0, 0.0, 0
        try:
            for start in range(0, SET_SIZE, METRIC_ROWS):
                part = self.val.rows(start, start + METRIC_ROWS)
                x, y = to_device(part.ids[:, :-1], part.ids[:, 1:], device)
                second = part.second_copy(x.shape[1]).to(device)
                with autocast:
                    logits, _ = model(x)
                loss_sum += float(F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none")[second].sum())
                hits += float((logits.argmax(-1) == y)[second].sum())
                n += int(second.sum())
        finally:
            model.train(was_training)
        return {"second_copy_loss": loss_sum / n, "second_copy_accuracy": hits / n}
