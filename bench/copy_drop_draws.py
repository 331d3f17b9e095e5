"""How precise is a model's copy drop, and which control holds it steady? (docs/analysis.md, "Who copies in context")

    python bench/copy_drop_draws.py checkpoints/en_s0.pt checkpoints/he_s0.pt --draws 3 --sequences 128

For each checkpoint and each of --draws independent draws of --sequences random letter sequences written twice (the
letters of the checkpoint's language, half the block size each, as in analysis.measures.copying), the copy drop
against two controls that hold the second copy's positions fixed: the same first half followed by its own letters
reordered (the analyzer's control) and followed by fresh letters; each with its standard error over the sequences and
the per-sequence spread (standard deviation) of the paired difference. Also the position drop (first copy minus the
reordered half). The spread between draws is what a group comparison would inherit if every model were measured on
one draw of this size.
"""
from __future__ import annotations

import argparse

import torch

from charlens.analysis.measures.ablation import repeated_random_windows
from charlens.analysis.measures.copying import CopyLosses, copy_losses, reordered_control
from charlens.analysis.runs.induction import letter_pool
from charlens.data.tokenizer import tokenizer_from_dict
from charlens.model.checkpoint import load_checkpoint, model_from_checkpoint


def fresh_control(ids: torch.Tensor, pool: list[int], seed: int) -> torch.Tensor:
    """The same first halves followed by fresh letters from `pool`."""
    half, out = ids.shape[1] // 2, ids.clone()
    draw = torch.randint(len(pool), (len(ids), ids.shape[1] - half), generator=torch.Generator().manual_seed(seed))
    out[:, half:] = torch.as_tensor(pool)[draw]
    return out


def described(c: CopyLosses) -> str:
    spread = (c.reordered - c.second).std(ddof=1)
    return f"{c.drop:+.3f} ± {c.drop_se:.3f} (spread {spread:.2f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+", help="charlens checkpoints (.pt)")
    p.add_argument("--draws", type=int, default=3, help="independent draws per checkpoint")
    p.add_argument("--sequences", type=int, default=128, help="random letter sequences per draw")
    args = p.parse_args()
    torch.set_num_threads(1)
    for path in args.checkpoints:
        state = load_checkpoint(path)
        model = model_from_checkpoint(state).eval()
        lang = state["corpus"].get("lang", "en") if isinstance(state.get("corpus"), dict) else "en"
        pool = letter_pool(tokenizer_from_dict(state["tokenizer"]), lang).tolist()
        T = model.config.block_size - model.config.block_size % 2
        for draw in range(args.draws):
            ids = repeated_random_windows(pool, args.sequences, T - 1, 100 + draw)
            reordered = copy_losses(model, ids, reordered_control(ids, 200 + draw))
            fresh = copy_losses(model, ids, fresh_control(ids, pool, 300 + draw))
            print(f"{path} draw {draw}: copy drop against reordered letters {described(reordered)}, against fresh "
                  f"letters {described(fresh)}; position drop {reordered.position_drop:+.3f} "
                  f"({args.sequences} sequences, {lang} letters)", flush=True)


if __name__ == "__main__":
    main()
