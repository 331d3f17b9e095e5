"""The repeated-random-sequence test (Olsson et al. 2022) as part of induction validation.

Two repetition sets, drawn one after the other from the seeded generator (so they share no
sequence): a discovery set and a held-out set, `--induction-windows` sequences each, every one a
random sequence of T/2 letters of the model's vocabulary repeated twice. Letters, not the whole
vocabulary: with a few dozen symbols characters recur inside a sequence, which is what separates
matching a longer prefix from copying after any matching character (analysis.measures.induction).
Each head's prefix-matching score is scored against the prefix control and must clear the cut on
both sets (same rule as the detectors); the model's loss on each copy is reported beside it, and the loss at
the second copy's positions when the same first halves are followed by fresh letters (the copy drop's position
control, analysis.measures.copying).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from charlens.analysis.measures.copying import half_losses, unrepeated_control
from charlens.analysis.measures.induction import score_repeated
from charlens.analysis.measures.stats import ScoreAccumulator, SplitStats, split_stats, validated
from charlens.analysis.runs.inputs import AnalysisInputs, Settings
from charlens.data.charclasses import CLASS_INDEX, class_map
from charlens.data.tokenizer import Tokenizer
from charlens.model.hooks import run_with_cache

LETTER_CLASSES = ("vowel", "consonant")  # lower-case letters in English
MIN_POOL = 8  # fewer letters than this in the vocabulary: draw from the whole vocabulary instead


def letter_pool(tokenizer: Tokenizer, lang: str) -> torch.Tensor:
    """Token ids of the vocabulary's letters (the reserved unknown token never)."""
    table, codes = class_map(lang), {CLASS_INDEX[c] for c in LETTER_CLASSES}
    ids = [i for i in range(1, tokenizer.vocab_size) if table.get(tokenizer.decode([i])) in codes]
    return torch.tensor(ids if len(ids) >= MIN_POOL else range(1, tokenizer.vocab_size), dtype=torch.long)


@dataclass(frozen=True)
class RepeatedSequenceTest:
    discovery: SplitStats  # (1, L, H) arrays: the prefix-matching score as one detector
    heldout: SplitStats
    validated: np.ndarray  # (L, H)
    loss_first_copy: float
    loss_second_copy: float
    loss_fresh_half: float  # at the second copy's positions, with fresh letters instead of the copy
    n_windows: int  # per set
    length: int
    pool: int  # letters drawn from


def induction_test(inputs: AnalysisInputs, settings: Settings, alpha_test: float, rng: np.random.Generator) -> RepeatedSequenceTest:
    model, T = inputs.model.eval(), inputs.model.config.block_size
    half = T // 2
    gen = torch.Generator().manual_seed(settings.seed)
    pool = letter_pool(inputs.tokenizer, inputs.lang)
    stats, losses, fresh = [], [], []
    for k, _ in enumerate(("discovery", "heldout")):
        first = pool[torch.randint(len(pool), (settings.induction_windows, half), generator=gen)]
        ids = torch.cat([first, first], dim=1)  # (N, 2 * half)
        fresh.append(half_losses(model, unrepeated_control(ids, pool.tolist(), settings.seed + 3 + k),
                                 settings.batch_size)[1])
        acc = ScoreAccumulator()
        with torch.no_grad():
            for chunk in ids.split(settings.batch_size):
                cache = run_with_cache(model, chunk, names=("pattern",))
                logits, att = cache.logits, cache.stack("pattern")
                ws = score_repeated(att.float(), chunk, half)
                acc.add(ws.score.numpy(), ws.control.numpy(), ws.baseline.numpy())
                losses.append(torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), chunk[:, 1:], reduction="none"))
        stats.append(split_stats(*acc.arrays(), settings.min_selectivity, alpha_test, settings.n_boot, rng))
    loss = torch.cat(losses)  # (2N, 2 * half - 1): loss[:, p] is the loss of predicting position p + 1
    return RepeatedSequenceTest(
        stats[0], stats[1], validated(stats[0], stats[1], settings.min_selectivity, settings.min_windows)[0],
        float(loss[:, : half - 1].mean()), float(loss[:, half:].mean()), float(torch.cat(fresh).mean()),
        settings.induction_windows, 2 * half, len(pool))
