"""Word-level heads before and after the structural control (issue 19): which heads validate for the word, line and
separator detectors against uniform attention (the old rule's control for same_word, previous_word, word_start,
line_start and recent_space) and against the structural control (the head's own offset profile), with selectivity.

    python bench/word_heads.py checkpoints/en_s*.pt checkpoints/he_s*.pt [--windows 256] [--seed 0]

Each checkpoint is analysed on the analyzer's own windows (discovery from the training text, held-out from the
held-out books, `--windows` each, `--seed`), with the analyzer's statistics: the lower end of the selectivity's
bootstrap interval above the cut on both splits, Bonferroni over every detector of the language and the
repeated-sequence test, for every head. Only the control differs between the two columns.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from charlens.analysis.measures.positional import StratumCounts  # noqa: E402
from charlens.analysis.measures.scoring import score_windows  # noqa: E402
from charlens.analysis.measures.stats import ScoreAccumulator, per_test_alpha, split_stats, validated  # noqa: E402
from charlens.analysis.measures.structural import structural_names  # noqa: E402
from charlens.analysis.runs.extract import iter_attention, iter_char_batches  # noqa: E402
from charlens.analysis.runs.inputs import Settings, load_inputs  # noqa: E402


def compare(ckpt: str, settings: Settings) -> dict[str, tuple[list, list]]:
    """Per structural detector: [(layer, head, g)] validated against uniform attention, and against the structural control."""
    inputs = load_inputs(ckpt, settings)
    cfg = inputs.model.config
    L, H = cfg.n_layer, cfg.n_head
    every = settings.detectors_for(inputs.lang)
    names = structural_names(every)
    rng = np.random.default_rng(settings.seed)
    alpha = per_test_alpha(settings.alpha, (len(every) + 1) * L * H)  # as the analysis counts its tests
    stats = {}
    for key, split in (("discovery", inputs.discovery), ("heldout", inputs.heldout)):
        counts = StratumCounts(names)
        for chars in iter_char_batches(inputs.tokenizer, split.windows, inputs.lang, settings.batch_size):
            counts.add(chars)
        frequencies, acc = counts.frequencies(), ScoreAccumulator()
        for batch in iter_attention(inputs.model, inputs.tokenizer, split.windows, inputs.lang, settings.batch_size):
            ws = score_windows(batch.attention, batch.chars, names, frequencies)
            acc.add(ws.score.numpy(), ws.control.numpy(), ws.baseline.numpy())
        score, control, uniform = acc.arrays()
        stats[key] = {kind: split_stats(score, c, uniform, settings.min_selectivity, alpha, settings.n_boot, rng)
                      for kind, c in (("uniform", np.broadcast_to(uniform[:, :, None, None], score.shape)), ("structure", control))}
    out = {}
    for d, name in enumerate(names):
        out[name] = tuple([(l, h, float(stats["discovery"][kind].selectivity[d, l, h]))
                           for l, h in zip(*np.nonzero(validated(stats["discovery"][kind], stats["heldout"][kind],
                                                                 settings.min_selectivity, settings.min_windows)[d]))]
                          for kind in ("uniform", "structure"))
    return out


def heads_text(heads: list) -> str:
    return f"{len(heads):2d}" + (": " + ", ".join(f"{l}.{h} {g:.2f}" for l, h, g in heads) if heads else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--windows", type=int, default=256, help="windows per split (the analyzer's --windows)")
    p.add_argument("--seed", type=int, default=0, help="window and bootstrap seed (the analyzer's --seed)")
    args = p.parse_args()
    torch.set_num_threads(1)
    settings = Settings(n_windows=args.windows, seed=args.seed)
    for ckpt in args.checkpoints:
        print(f"{ckpt}: heads validated (layer.head selectivity), cut {settings.min_selectivity}")
        print(f"  {'detector':14s} {'against uniform attention':48s} against the head's own offset profile")
        for name, (old, new) in compare(ckpt, settings).items():
            print(f"  {name:14s} {heads_text(old):48s} {heads_text(new)}")


if __name__ == "__main__":
    main()
