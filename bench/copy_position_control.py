"""Is a model's copy drop on repeated random letters copying, or an effect of position? The analyzer's copy drop
(summary.json `copying.drop`, `induction_test` loss_first_copy - loss_second_copy) compares the second copy of a
random letter sequence written twice with its first copy, which sits at earlier positions. A model far from home on
random letters (a Bible model puts 6-7 nats on each) can lower its loss along the sequence whatever the letters are.
The control holds everything but the repetition fixed: the same first half followed by fresh letters instead of the
copy. Copying proper = loss on the fresh second half - loss on the second copy, paired by sequence.

    python bench/copy_position_control.py checkpoints/he_s0.pt checkpoints/induction.pt
    python bench/copy_position_control.py checkpoints/*_s?.pt --sequences 512

Positions and letters as in analysis.measures.copying (the letters of the checkpoint's language, half the block size
written twice); one line per checkpoint with the drop on the repeated and on the unrepeated sequences and the copying
proper with its standard error over the sequences.
"""
from __future__ import annotations

import argparse
import math

import torch

from charlens.analysis.measures.copying import copy_losses
from charlens.analysis.runs.induction import letter_pool
from charlens.data.tokenizer import tokenizer_from_dict
from charlens.model.checkpoint import load_checkpoint, model_from_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+", help="charlens checkpoints (.pt)")
    p.add_argument("--sequences", type=int, default=256, help="random letter sequences per checkpoint")
    p.add_argument("--seed", type=int, default=1, help="seed of the letters")
    args = p.parse_args()
    torch.set_num_threads(1)
    for path in args.checkpoints:
        state = load_checkpoint(path)
        model = model_from_checkpoint(state).eval()
        lang = state["corpus"].get("lang", "en") if isinstance(state.get("corpus"), dict) else "en"
        pool = letter_pool(tokenizer_from_dict(state["tokenizer"]), lang)
        half = model.config.block_size // 2
        g = torch.Generator().manual_seed(args.seed)
        first, fresh = (pool[torch.randint(len(pool), (args.sequences, half), generator=g)] for _ in range(2))
        repeated = copy_losses(model, torch.cat([first, first], 1))
        control = copy_losses(model, torch.cat([first, fresh], 1))
        proper = control.second - repeated.second  # paired: the same first half
        se = proper.std(ddof=1) / math.sqrt(len(proper))
        print(f"{path}: drop on the repeated sequences {repeated.drop:.3f} nats, on the unrepeated {control.drop:.3f}; "
              f"copying proper {proper.mean():.3f} +- {se:.3f} (1 SE, {len(proper)} sequences, {lang} letters)", flush=True)


if __name__ == "__main__":
    main()
