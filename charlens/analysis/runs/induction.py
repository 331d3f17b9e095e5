"""The repeated-random-sequence test (Olsson et al. 2022) as part of induction validation.

Two repetition sets, drawn one after the other from the seeded generator (so they share no
sequence): a discovery set and a held-out set, `--induction-windows` sequences each, every one a
random sequence of T/2 letters of the model's vocabulary repeated twice. Letters, not the whole
vocabulary: with a few dozen symbols characters recur inside a sequence, which is what separates
matching a longer prefix from copying after any matching character (analysis.measures.induction).
Each head's prefix-matching score is scored against the prefix control and must clear the cut on
both sets (same rule as the detectors).

Beside it, the model's copy drop, on a sample of its own: COPY_SEQUENCES sequences written twice against the
same first halves followed by their letters reordered (analysis.measures.copying), with its standard error.
Loss only (no attention is kept), and many more sequences than the attention sets: every model of a group
comparison is measured on the same draw, so the draw's error is common to all seeds of a group and the seed-level
test cannot see it; at 256 sequences its standard error is about 0.02 nats for an English Bible model (per-sequence
spread about 0.35 nats) and 0.01 for a Hebrew one, well below the quantity's minimum effect (0.1 nats); 64 shared
sequences against fresh letters made a spurious English-vs-Hebrew difference (docs/analysis.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from charlens.analysis.measures.ablation import repeated_random_windows
from charlens.analysis.measures.copying import CopyLosses, copy_losses, reordered_control
from charlens.analysis.measures.induction import score_repeated
from charlens.analysis.measures.stats import ScoreAccumulator, SplitStats, split_stats, validated
from charlens.analysis.runs.inputs import AnalysisInputs, Settings
from charlens.data.charclasses import CLASS_INDEX, class_map
from charlens.data.tokenizer import Tokenizer
from charlens.model.hooks import run_with_cache

LETTER_CLASSES = ("vowel", "consonant")  # lower-case letters in English
MIN_POOL = 8  # fewer letters than this in the vocabulary: draw from the whole vocabulary instead
COPY_SEQUENCES = 256  # sequences of the copy drop's sample (loss only)


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
    copy: CopyLosses  # the copy drop's sample: COPY_SEQUENCES sequences and their reordered controls
    n_windows: int  # per set
    length: int
    pool: int  # letters drawn from


def induction_test(inputs: AnalysisInputs, settings: Settings, alpha_test: float, rng: np.random.Generator) -> RepeatedSequenceTest:
    model, T = inputs.model.eval(), inputs.model.config.block_size
    half = T // 2
    gen = torch.Generator().manual_seed(settings.seed)
    pool = letter_pool(inputs.tokenizer, inputs.lang)
    stats = []
    for _ in ("discovery", "heldout"):
        first = pool[torch.randint(len(pool), (settings.induction_windows, half), generator=gen)]
        ids = torch.cat([first, first], dim=1)  # (N, 2 * half)
        acc = ScoreAccumulator()
        with torch.no_grad():
            for chunk in ids.split(settings.batch_size):
                att = run_with_cache(model, chunk, names=("pattern",)).stack("pattern")
                ws = score_repeated(att.float(), chunk, half)
                acc.add(ws.score.numpy(), ws.control.numpy(), ws.baseline.numpy())
        stats.append(split_stats(*acc.arrays(), settings.min_selectivity, alpha_test, settings.n_boot, rng))
    copies = repeated_random_windows(pool.tolist(), COPY_SEQUENCES, 2 * half - 1, settings.seed + 3)  # (N, 2 * half)
    copy = copy_losses(model, copies, reordered_control(copies, settings.seed + 4), settings.batch_size)
    return RepeatedSequenceTest(
        stats[0], stats[1], validated(stats[0], stats[1], settings.min_selectivity, settings.min_windows)[0],
        copy, settings.induction_windows, 2 * half, len(pool))
