"""External check of the composition scores: charlens (analysis.measures.circuits) against TransformerLens's
HookedTransformer.all_composition_scores on the same checkpoints. TransformerLens gets the raw weights and folds the
LayerNorms and centres the weights itself, so the check covers charlens's folding as well as its formula; the two
models' log-probabilities are compared too, to show the conversion is the same model.

TransformerLens is not a charlens dependency: run this in a scratch virtual environment that sees the installed torch
(TransformerLens 4 dropped HookedTransformer; 3.x installs without touching torch):

    python -m venv --system-site-packages /tmp/tl && /tmp/tl/bin/pip install "transformer-lens<4"
    PYTHONPATH=. /tmp/tl/bin/python bench/transformerlens_check.py checkpoints/induction.pt checkpoints/en.pt
"""
import sys

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from charlens.analysis.measures.circuits import composition, head_weights
from charlens.model.checkpoint import load_checkpoint, model_from_checkpoint


def tl_model(model):
    c = model.config
    H, C = c.n_head, c.n_embd
    d = C // H
    cfg = HookedTransformerConfig(n_layers=c.n_layer, d_model=C, n_ctx=c.block_size, d_head=d, n_heads=H,
                                  d_vocab=c.vocab_size, act_fn="gelu", attn_only=c.attn_only, d_mlp=4 * C,
                                  normalization_type="LN", positional_embedding_type="standard", default_prepend_bos=False)
    sd = {"embed.W_E": model.wte.weight, "pos_embed.W_pos": model.wpe.weight,
          "ln_final.w": model.ln_f.weight, "ln_final.b": torch.zeros(C),
          "unembed.W_U": model.lm_head.weight.T, "unembed.b_U": torch.zeros(c.vocab_size)}
    for l, block in enumerate(model.blocks):
        q, k, v = block.attn.c_attn.weight.split(C, dim=0)  # (C_out, C_in) each
        per_head = lambda w: w.T.reshape(C, H, d).permute(1, 0, 2)  # (H, C, d)
        sd.update({f"blocks.{l}.ln1.w": block.ln_1.weight, f"blocks.{l}.ln1.b": torch.zeros(C),
                   f"blocks.{l}.attn.W_Q": per_head(q), f"blocks.{l}.attn.W_K": per_head(k), f"blocks.{l}.attn.W_V": per_head(v),
                   f"blocks.{l}.attn.W_O": block.attn.c_proj.weight.T.reshape(H, d, C),
                   f"blocks.{l}.attn.b_Q": torch.zeros(H, d), f"blocks.{l}.attn.b_K": torch.zeros(H, d),
                   f"blocks.{l}.attn.b_V": torch.zeros(H, d), f"blocks.{l}.attn.b_O": torch.zeros(C)})
        if not c.attn_only:
            sd.update({f"blocks.{l}.ln2.w": block.ln_2.weight, f"blocks.{l}.ln2.b": torch.zeros(C),
                       f"blocks.{l}.mlp.W_in": block.mlp.c_fc.weight.T, f"blocks.{l}.mlp.b_in": torch.zeros(4 * C),
                       f"blocks.{l}.mlp.W_out": block.mlp.c_proj.weight.T, f"blocks.{l}.mlp.b_out": torch.zeros(C)})
    tl = HookedTransformer(cfg)
    tl.load_and_process_state_dict({k: v.detach().clone().float() for k, v in sd.items()}, fold_ln=True,
                                   center_writing_weights=True, center_unembed=True)
    return tl


def main() -> None:
    worst = 0.0
    for path in sys.argv[1:]:
        model = model_from_checkpoint(load_checkpoint(path))
        tl = tl_model(model)
        ids = torch.randint(1, model.config.vocab_size, (2, model.config.block_size), generator=torch.Generator().manual_seed(0))
        diff_logits = (tl(ids).log_softmax(-1) - model(ids)[0].log_softmax(-1)).abs().max().item()  # the same model
        w = head_weights(model)
        for mode in "QKV":
            ours = composition(w, mode.lower())
            theirs = tl.all_composition_scores(mode).double()  # zero where undefined; ours NaN there
            defined = ~torch.isnan(ours)
            diff = (ours[defined] - theirs[defined]).abs().max().item()
            worst = max(worst, diff)
            print(f"{path}: {mode}-composition over {int(defined.sum())} pairs: max |charlens - TransformerLens| = {diff:.2e} "
                  f"(scores {ours[defined].min():.3f}..{ours[defined].max():.3f}); log-probs differ by at most {diff_logits:.1e}")
    print(f"worst max abs difference: {worst:.2e}")


if __name__ == "__main__":
    main()
