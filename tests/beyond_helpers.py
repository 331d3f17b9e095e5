"""Small models and hand-set attention shared by the beyond-attention tests."""
from __future__ import annotations

import torch

from charlens.model.transformer import ModelConfig, TransformerLM
from charlens.model.hooks import add_hook


def tiny_model(seed: int = 0, n_layer: int = 2, n_head: int = 2, n_embd: int = 16, vocab_size: int = 12,
               block_size: int = 32) -> TransformerLM:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
    return TransformerLM(cfg).eval()


def previous_char_pattern(T: int) -> torch.Tensor:
    """(T, T) attention to i-1 (position 0 attends to itself)."""
    A = torch.zeros(T, T)
    A[0, 0] = 1.0
    A[torch.arange(1, T), torch.arange(T - 1)] = 1.0
    return A


def set_head_pattern(model: TransformerLM, layer: int, head: int, make) -> None:
    """Replace one head's pattern by `make(T) -> (T, T)` (other heads keep the model's own)."""
    def hook(att: torch.Tensor) -> torch.Tensor:
        att = att.clone()
        att[:, head] = make(att.size(-1)).to(att)
        return att
    add_hook(model, f"blocks.{layer}.attn.hook_pattern", hook)
