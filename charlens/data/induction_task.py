"""A synthetic task that only an induction circuit solves: uniform random letters in which a segment is
copied to a random later position (Olsson et al. 2022; Singh et al. 2024). The positive control of the
project: a small attention-only model trained on it grows a previous-character head and an induction head
within minutes on a CPU, so the detectors, the timeline and the circuit scores can be shown finding a
circuit that training grew, not only heads set by hand.

    task = InductionTask(length=64)                 # 26 letters, a 16-letter segment copied once
    batch = task.draw(64, generator)                # fresh training sequences: (64, 65) token ids
    batch.second_copy(64)                           # (64, 64) bool: predictions an induction head can make
    corpus = task_corpus(task)                      # its fixed sets as a Corpus (data.corpora): train, val, held-out

Each sequence is `length + 1` (training) or `length` (the fixed sets) letters; the segment of `segment`
letters at position a is copied to position b, with a + segment <= b and b + segment <= length, the pair (a, b)
uniform over all such pairs, so the offset b - a is random (with a fixed offset a positional head would
solve the task and learn nothing about induction). Letters outside the two copies are uniform and
independent, so a copied letter can be predicted only by finding the current letter's earlier occurrence
in the first copy and reading what followed it: the predictions of letters b + 1 .. b + segment - 1 (the
"second copy"; letter b itself follows a random letter).

With `follow` > 0 each sequence also has its own bigram map: every letter gets one random successor, and each
letter after the first is, with chance `follow`, its predecessor's successor instead of a fresh letter (then the
copy is written over the chain; the letter after the copy follows the letter the copy replaced). The map is
learnable only in context and only from the previous letter: the letters before an earlier occurrence say
nothing, so matching two or three letters, which a soft window over the previous characters serves and which
the copies alone reward, loses matches here. With `follow` = 0.5 a sharp previous-character head forms in layer
0 beside the induction heads (docs/timeline.md); with 0 the layer-0 heads stay windows.

Training draws come from the run's torch.Generator, fresh every step. The three fixed sets (the analyzer's
discovery windows, the trainer's evaluation, the held-out windows of the analyzer and the timeline) come
from numpy generators with fixed seeds of their own: another algorithm than torch's, so no training seed
can reproduce them. They are stored as texts of `length`-letter sequences laid end to end, so the windows
the analyzer and the timeline cut at multiples of the block size (data.textfile.window_starts) are exactly
the sequences.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

LETTERS = "abcdefghijklmnopqrstuvwxyz"
TASK_NAME = "induction"
SET_SEEDS = {"train": 2201, "val": 2202, "heldout": 2203}  # numpy seeds of the fixed sets (issue 22)
SET_SIZE = 512  # sequences in each fixed set
TASK_VERSION = 1  # bump when the draws below change: a checkpoint's identity then no longer matches
FOLLOW_RESOLUTION = 2**24  # a successor is followed when a draw in [0, 2**24) is below follow * 2**24
Draw = Callable[[int, tuple[int, ...]], torch.Tensor]  # draw(high, size): uniform integers in [0, high)


@dataclass(frozen=True)
class TaskBatch:
    """Sequences of token ids and where their copies are."""

    ids: torch.Tensor  # (B, N) long
    first: torch.Tensor  # (B,) start of the segment
    second: torch.Tensor  # (B,) start of its copy
    segment: int

    def rows(self, start: int, stop: int) -> "TaskBatch":
        """Sequences [start, stop)."""
        return TaskBatch(self.ids[start:stop], self.first[start:stop], self.second[start:stop], self.segment)

    def second_copy(self, n_predictions: int) -> torch.Tensor:
        """(B, n_predictions) bool: prediction p (of letter p + 1) is of a letter in the second copy that the first
        copy determines, b + 1 <= p + 1 <= b + segment - 1."""
        p = torch.arange(n_predictions, device=self.second.device)
        return (p >= self.second[:, None]) & (p < self.second[:, None] + self.segment - 1)


@dataclass(frozen=True)
class InductionTask:
    """The task's parameters; everything else follows from them."""

    length: int = 64  # letters a model sees (its block size)
    segment: int = 16  # letters copied
    letters: int = 26  # alphabet size: the first `letters` of LETTERS
    follow: float = 0.0  # chance that a letter is its predecessor's successor in this sequence (module docstring)

    def __post_init__(self) -> None:
        if not 1 <= self.letters <= len(LETTERS):
            raise ValueError(f"letters must be in 1..{len(LETTERS)}, got {self.letters}")
        if not 0.0 <= self.follow <= 1.0:
            raise ValueError(f"follow must be in [0, 1], got {self.follow}")
        if self.segment < 2:
            raise ValueError(f"the copied segment needs at least 2 letters, got {self.segment}")
        if 2 * self.segment > self.length:
            raise ValueError(f"two copies of {self.segment} letters do not fit in {self.length} letters")

    @property
    def alphabet(self) -> str:
        return LETTERS[: self.letters]

    def slots(self) -> int:
        """Positions a segment (and its copy) may start at: 0 .. length - segment."""
        return self.length - self.segment + 1

    def draw(self, n: int, generator: torch.Generator, extra: int = 1) -> TaskBatch:
        """`n` fresh sequences of `length + extra` letters as token ids 1..letters (CharTokenizer of the
        alphabet: id 0 is its unknown token), drawn from `generator` (a training run's)."""
        draw = lambda high, size: torch.randint(high, size, generator=generator)
        return self._assemble(draw, n, self.length + extra)

    def fixed_set(self, split: str) -> TaskBatch:
        """The fixed set `split` (train, val or heldout) of SET_SIZE sequences of `length` letters."""
        rng = np.random.default_rng(SET_SEEDS[split])
        draw = lambda high, size: torch.from_numpy(rng.integers(high, size=size))
        return self._assemble(draw, SET_SIZE, self.length)

    def _assemble(self, draw: Draw, n: int, width: int) -> TaskBatch:
        """Letters, then two distinct slots per row (uniform over pairs), then the successors (when `follow` > 0),
        then the copy, from one source of draws (with `follow` = 0 the draws of version 1, to the bit)."""
        letters = draw(self.letters, (n, width)).long()
        u, v = draw(self.slots(), (n,)).long(), draw(self.slots() - 1, (n,)).long()
        if self.follow > 0:
            letters = self._chain(letters, draw)
        v = v + (v >= u).long()  # a second slot, distinct from the first, uniform over the others
        first, second = torch.minimum(u, v), torch.maximum(u, v)
        index = torch.arange(width).expand(n, width)
        inside = (index >= second[:, None]) & (index < second[:, None] + self.segment)
        # letter by letter: an overlapping copy (offset < segment) repeats the letters before it with period offset
        index = torch.where(inside, first[:, None] + (index - second[:, None]) % (second - first)[:, None], index)
        return TaskBatch(letters.gather(1, index) + 1, first, second, self.segment)

    def _chain(self, letters: torch.Tensor, draw: Draw) -> torch.Tensor:
        """letters (n, width) with each letter after the first replaced, with chance `follow`, by its predecessor's
        successor: one random successor per letter and row (the row's own bigram map)."""
        n, width = letters.shape
        successor = draw(self.letters, (n, self.letters)).long()  # (n, letters)
        follows = draw(FOLLOW_RESOLUTION, (n, width)) < round(self.follow * FOLLOW_RESOLUTION)  # (n, width)
        out = letters.clone()
        for t in range(1, width):  # left to right: a successor is followed by its own successor
            out[:, t] = torch.where(follows[:, t], successor.gather(1, out[:, t - 1:t])[:, 0], out[:, t])
        return out

    def text(self, batch: TaskBatch) -> str:
        """The letters of a batch's sequences laid end to end."""
        table = np.frombuffer(self.alphabet.encode("ascii"), dtype=np.uint8)
        return table[batch.ids.reshape(-1).numpy() - 1].tobytes().decode("ascii")

    def texts(self) -> dict[str, str]:
        """train, val and heldout: the fixed sets as texts (module docstring)."""
        return {split: self.text(self.fixed_set(split)) for split in SET_SEEDS}

    def identity(self, texts: dict[str, str]) -> dict:
        """What a checkpoint stores to find the task again (data.corpora.Corpus.identity), with the sha256 of
        its fixed sets `texts`, so a changed generator is caught instead of silently analysing other sequences."""
        digest = hashlib.sha256("\n".join(texts[k] for k in SET_SEEDS).encode()).hexdigest()
        return {"kind": "task", "task": TASK_NAME, "version": TASK_VERSION, **asdict(self), "sha256": digest}


def task_from_identity(identity: dict) -> InductionTask:
    """The task a corpus identity of kind `task` names; ValueError saying what is wrong otherwise."""
    if identity.get("task") != TASK_NAME:
        raise ValueError(f"unknown task {identity.get('task')!r}")
    if identity.get("version") != TASK_VERSION:
        raise ValueError(f"task version {identity.get('version')!r}; this version of charlens draws version {TASK_VERSION}")
    fields = {k: identity.get(k) for k in ("length", "segment", "letters")}
    for key, value in fields.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 8192:
            raise ValueError(f"{key} must be an integer in [1, 8,192], got {value!r}")
    follow = identity.get("follow", 0.0)  # checkpoints from before the successors have none: 0
    if not isinstance(follow, (int, float)) or isinstance(follow, bool) or not 0 <= follow <= 1:
        raise ValueError(f"follow must be a number in [0, 1], got {follow!r}")
    return InductionTask(**fields, follow=float(follow))  # type: ignore[arg-type]  # checked above
