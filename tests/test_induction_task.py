"""The synthetic induction task (data.induction_task): copies where they should be, random offsets uniform
over the allowed pairs, the second-copy positions, fixed sets distinct from training draws, and the task as
a corpus a checkpoint can name."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from charlens.data.corpora import CorpusError, check_identity, corpus_from_identity, task_corpus
from charlens.data.induction_task import SET_SIZE, InductionTask
from charlens.data.textfile import window_starts
from charlens.data.tokenizer import CharTokenizer


def test_the_segment_is_copied_to_a_later_position_inside_the_window():
    task = InductionTask(length=20, segment=5)
    batch = task.draw(500, torch.Generator().manual_seed(0))
    assert batch.ids.shape == (500, 21) and batch.ids.min() >= 1 and batch.ids.max() <= 26
    for row, a, b in zip(batch.ids.tolist(), batch.first.tolist(), batch.second.tolist()):
        assert a < b and b + 5 <= 20  # later, both inside the first `length` letters
        assert all(row[b + t] == row[b + t - (b - a)] for t in range(5))  # every copied letter repeats the one b - a back
        if b - a >= 5:
            assert row[b:b + 5] == row[a:a + 5]  # apart: the segment itself
        else:
            assert row[b:b + 5] == [row[a + t % (b - a)] for t in range(5)]  # overlapping: period b - a


def test_copy_positions_are_uniform_over_every_allowed_pair():
    task = InductionTask(length=12, segment=3)
    batch = task.draw(45_000, torch.Generator().manual_seed(1))
    counts = Counter(zip(batch.first.tolist(), batch.second.tolist()))
    allowed = {(a, b) for a in range(12) for b in range(a + 1, 10)}
    assert set(counts) == allowed and len(allowed) == 45
    assert 850 < min(counts.values()) and max(counts.values()) < 1150  # 1,000 each; 3 sigma is about 95
    offsets = Counter((batch.second - batch.first).tolist())
    assert sorted(offsets) == list(range(1, 10))  # every offset from 1 to 9: no fixed gap a positional head could use


def test_letters_outside_the_copy_are_uniform_and_fresh_every_draw():
    task = InductionTask(length=64, segment=16, letters=10)
    g = torch.Generator().manual_seed(2)
    one, two = task.draw(256, g), task.draw(256, g)
    assert not torch.equal(one.ids, two.ids)
    freq = torch.bincount(one.ids[:, :8].reshape(-1), minlength=11)[1:].double() / (256 * 8)  # letters 1..10
    assert freq.min() > 0.07 and freq.max() < 0.13  # 0.1 each


def test_second_copy_marks_the_predictions_the_first_copy_determines():
    task = InductionTask(length=32, segment=6)
    batch = task.draw(200, torch.Generator().manual_seed(3), extra=0)
    x, y = batch.ids[:, :-1], batch.ids[:, 1:]
    mask = batch.second_copy(31)
    assert mask.sum(1).tolist() == [5] * 200  # segment - 1: the copy's first letter follows a random one
    gap = (batch.second - batch.first)[:, None].expand(-1, 31)
    p = torch.arange(31).expand(200, -1)
    source = batch.ids.gather(1, (p + 1 - gap).clamp_min(0))
    assert torch.equal(y[mask], source[mask])  # every marked target is the letter after its match in the first copy
    assert torch.equal(x.gather(1, (p - gap).clamp_min(0))[mask], x[mask])  # whose preceding letter matches the query


def test_without_successors_the_draws_are_version_1s_to_the_bit():
    # the digests of the fixed sets as drawn before --task-follow existed: old checkpoints find their task again
    assert task_corpus(InductionTask(length=64)).identity["sha256"] == \
        "15459a6d648266a1517611c80439057fec7d9b1a5ba9d8250ac7233c1505395c"
    assert task_corpus(InductionTask(length=16, segment=4, letters=4)).identity["sha256"] == \
        "96d19d4adfb65248a255485bfaa42624405b46511da37667e3d0f20adfe26b85"
    old = {k: v for k, v in task_corpus(InductionTask(length=64)).identity.items() if k != "follow"}
    assert corpus_from_identity(old).heldout == task_corpus(InductionTask(length=64)).heldout


def _transitions(batch, length: int) -> list[tuple[int, int, int]]:
    """(row, letter, next letter) for every pair of neighbours that the copy did not write."""
    out = []
    for r, (row, b) in enumerate(zip(batch.ids.tolist(), batch.second.tolist())):
        out += [(r, row[t - 1], row[t]) for t in range(1, length) if not b <= t <= b + batch.segment]
    return out


def test_with_follow_each_letter_is_followed_by_its_rows_own_successor_at_that_rate():
    always = InductionTask(length=64, segment=8, letters=10, follow=1.0)
    half = InductionTask(length=64, segment=8, letters=10, follow=0.5)
    chains, mixed = (t.draw(400, torch.Generator().manual_seed(5)) for t in (always, half))
    successor: dict[tuple[int, int], set[int]] = {}
    for r, a, b in _transitions(chains, 64):
        successor.setdefault((r, a), set()).add(b)
    assert all(len(v) == 1 for v in successor.values())  # follow 1: one successor per letter and row
    assert len({next(iter(v)) for (r, a), v in successor.items() if a == 1}) == 10  # and a different map per row
    pairs = [(r, a, b) for r, a, b in _transitions(mixed, 64) if (r, a) in successor]
    share = np.mean([b in successor[(r, a)] for r, a, b in pairs])
    assert abs(share - (0.5 + 0.5 / 10)) < 0.01  # half follow, and a fresh letter hits the successor 1 time in 10
    assert torch.equal(chains.first, mixed.first) and torch.equal(chains.second, mixed.second)
    gap = (mixed.second - mixed.first)[:, None]
    p = torch.arange(65).expand(400, -1)
    inside = (p >= mixed.second[:, None]) & (p < mixed.second[:, None] + 8)
    assert torch.equal(mixed.ids[inside], mixed.ids.gather(1, (p - gap).clamp_min(0))[inside])  # the copy is still there


def test_fixed_sets_are_fixed_distinct_and_never_drawn_in_training():
    task = InductionTask(length=16, segment=4, letters=4)
    sets = {k: task.fixed_set(k) for k in ("train", "val", "heldout")}
    assert torch.equal(sets["heldout"].ids, task.fixed_set("heldout").ids)
    rows = {k: {tuple(r) for r in v.ids.tolist()} for k, v in sets.items()}
    assert len(rows["heldout"]) == SET_SIZE and not rows["heldout"] & rows["val"] and not rows["heldout"] & rows["train"]
    for seed in (0, 1, 2201, 2203):  # 2201 and 2203 are the numpy seeds of two fixed sets
        g = torch.Generator().manual_seed(seed)
        drawn = {tuple(r[:16]) for _ in range(20) for r in task.draw(64, g).ids.tolist()}
        assert not drawn & rows["heldout"] and not drawn & rows["val"]


def test_the_task_is_a_corpus_a_checkpoint_names_and_finds_again():
    task = InductionTask(length=64)
    corpus = task_corpus(task)
    assert corpus.name == "induction" and corpus.lang == "en"
    assert corpus.sizes() == {"train": 64 * SET_SIZE, "val": 64 * SET_SIZE, "heldout": 64 * SET_SIZE}
    tokenizer = CharTokenizer(sorted(corpus.chars()))
    assert tokenizer.vocab_size == 27
    ids = torch.from_numpy(tokenizer.encode(corpus.heldout).astype("int64")).view(SET_SIZE, 64)
    assert torch.equal(ids, task.fixed_set("heldout").ids)  # the task's ids are the tokenizer's
    # windows cut at multiples of the block size, as the analyzer and the timeline cut them, are whole sequences
    starts = window_starts(len(corpus.heldout), 64, 32, np.random.default_rng(0))
    assert all(s % 64 == 0 for s in starts)
    again = corpus_from_identity(corpus.identity)
    assert (again.train, again.val, again.heldout) == (corpus.train, corpus.val, corpus.heldout)


@pytest.mark.parametrize("change, message", [({"sha256": "0" * 64}, "changed since the checkpoint was trained"),
                                             ({"version": 99}, "task version 99"),
                                             ({"segment": 40}, "do not fit"), ({"letters": 0}, "letters must be"),
                                             ({"follow": 1.5}, "follow must be"), ({"follow": "x"}, "follow must be"),
                                             ({"task": "sorting"}, "unknown task")])
def test_a_damaged_task_identity_is_refused_in_one_line(change, message):
    identity = {**task_corpus(InductionTask(length=64)).identity, **change}
    with pytest.raises((CorpusError, ValueError), match=message):
        check_identity(identity)
        corpus_from_identity(identity)
