"""Record what every attention layer sees and computes, TransformerLens-style.

`run_with_cache(model, idx)` runs the model once and returns an `ActivationCache` holding,
per layer, the attention input (the output of `ln_1`), q, k, v (B, nh, T, hs), the pattern
actually used (B, nh, T, T) and the per-head outputs z = pattern @ v (B, nh, T, hs).

Nothing here re-implements the forward pass: the input is caught by a forward pre-hook on
the attention module, the pattern and z by wrapping the module's own `pattern_hook` and
`head_output_hook` (any hook already installed still runs first), and q, k, v come from the
module's own `qkv` method. The cache therefore cannot drift from the model.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Literal

import torch

from model.transformer import TransformerLM

ActivationName = Literal["input", "q", "k", "v", "pattern", "z"]
ACTIVATION_NAMES: tuple[str, ...] = ("input", "q", "k", "v", "pattern", "z")


@dataclass
class ActivationCache:
    """Activations keyed `blocks.{layer}.attn.{name}`; `stack(name)` gives (B, L, ...)."""

    tokens: torch.Tensor  # (B, T)
    logits: torch.Tensor  # (B, T, V)
    n_layer: int
    store: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self.store:
            raise KeyError(f"no activation named {key!r}; names are blocks.<layer>.attn.<{'|'.join(ACTIVATION_NAMES)}>")
        return self.store[key]

    def layer(self, layer: int, name: ActivationName) -> torch.Tensor:
        return self[f"blocks.{layer}.attn.{name}"]

    def stack(self, name: ActivationName) -> torch.Tensor:
        """One activation for all layers, layer as dim 1: e.g. pattern -> (B, L, nh, T, T)."""
        return torch.stack([self.layer(l, name) for l in range(self.n_layer)], dim=1)


def _chain(first, then):
    """A hook that runs `first` (if any) and passes its result to `then`."""
    return then if first is None else (lambda t: then(first(t)))


@contextmanager
def _recording(model: TransformerLM, store: dict[str, torch.Tensor]) -> Iterator[None]:
    handles, saved = [], []
    for l, block in enumerate(model.blocks):
        attn = block.attn

        def keep(name: str, l: int = l):
            def record(t: torch.Tensor) -> torch.Tensor:
                store[f"blocks.{l}.attn.{name}"] = t.detach()
                return t
            return record

        handles.append(attn.register_forward_pre_hook(lambda mod, args, l=l: store.__setitem__(f"blocks.{l}.attn.input", args[0].detach())))
        saved.append((attn, attn.pattern_hook, attn.head_output_hook))
        attn.pattern_hook = _chain(attn.pattern_hook, keep("pattern"))
        attn.head_output_hook = _chain(attn.head_output_hook, keep("z"))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for attn, pattern_hook, head_output_hook in saved:
            attn.pattern_hook, attn.head_output_hook = pattern_hook, head_output_hook


@torch.no_grad()
def run_with_cache(model: TransformerLM, idx: torch.Tensor) -> ActivationCache:
    """Run `model` on token ids `idx` (B, T) and record every layer's attention activations."""
    store: dict[str, torch.Tensor] = {}
    with _recording(model, store):
        logits, _, _ = model(idx)
    for l, block in enumerate(model.blocks):
        q, k, v = block.attn.qkv(store[f"blocks.{l}.attn.input"])
        store.update({f"blocks.{l}.attn.q": q, f"blocks.{l}.attn.k": k, f"blocks.{l}.attn.v": v})
    return ActivationCache(tokens=idx, logits=logits, n_layer=len(model.blocks), store=store)
