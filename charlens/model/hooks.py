"""Observe and edit a TransformerLM through its named hook points, TransformerLens-style.

    with hooks(model, [("blocks.1.attn.hook_pattern", fn)]):   # fn(tensor) -> tensor or None
        model(idx)                                            # fn sees (and may replace) the pattern
    cache = run_with_cache(model, idx)                        # every hook point's tensor, recorded
    cache["blocks.1.attn.hook_pattern"], cache.stack("z")     # (B, nh, T, T), (B, L, nh, T, hs)

One name per observation point: a hook point's name is its module path in the model
(`model.get_submodule(name)`), the name hooks are installed by, and its key in the cache.
Hooks are ordinary forward hooks on the `HookPoint` identity modules, so several compose in the
order they were added and each is removed by its handle; nothing is chained or restored by hand.
The cache records the forward pass's own tensors, so it cannot drift from the model.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal, Optional, Sequence, get_args

import torch

from charlens.model.transformer import HookPoint, TransformerLM

ActivationName = Literal["q", "k", "v", "scores", "pattern", "z"]
ACTIVATION_NAMES: tuple[ActivationName, ...] = get_args(ActivationName)
HookFn = Callable[[torch.Tensor], Optional[torch.Tensor]]  # returns a replacement, or None to keep the tensor


def hook_point_name(layer: int, name: ActivationName) -> str:
    """The name of a hook point (its module path), e.g. blocks.1.attn.hook_pattern."""
    return f"blocks.{layer}.attn.hook_{name}"


def hook_points(model: TransformerLM) -> dict[str, HookPoint]:
    """Every hook point of the model by its module path (which `hook_point_name` spells)."""
    return {name: module for name, module in model.named_modules() if isinstance(module, HookPoint)}


def _as_forward_hook(fn: HookFn):
    return lambda module, args, output: fn(output)


def add_hook(model: TransformerLM, name: str, fn: HookFn,
             points: Optional[dict[str, HookPoint]] = None) -> torch.utils.hooks.RemovableHandle:
    """Install `fn` on the hook point `name` until its handle's `remove()` (e.g. a head planted by hand
    for the whole of an analysis); `hooks` is the scoped form. `points`: `hook_points(model)`, if at hand."""
    points = hook_points(model) if points is None else points
    if name not in points:
        raise KeyError(f"no hook point named {name!r}; hook points are named "
                       f"blocks.<layer>.attn.hook_<{'|'.join(ACTIVATION_NAMES)}>, e.g. {hook_point_name(0, 'pattern')}")
    return points[name].register_forward_hook(_as_forward_hook(fn))


@contextmanager
def hooks(model: TransformerLM, fwd_hooks: Sequence[tuple[str, HookFn]]) -> Iterator[None]:
    """Within the block, each `fn` runs on its hook point's tensor (in the order given, after any
    hooks already there); all are removed on exit, whatever happens inside."""
    handles, points = [], hook_points(model)
    try:
        for name, fn in fwd_hooks:
            handles.append(add_hook(model, name, fn, points))
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class ActivationCache:
    """Activations keyed by hook point name (`blocks.{layer}.attn.hook_{name}`); `layer(l, name)` and
    `stack(name)` take the short name (`pattern`); `stack` gives (B, L, ...)."""

    tokens: torch.Tensor  # (B, T)
    logits: torch.Tensor  # (B, T, V)
    n_layer: int
    store: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self.store:
            kinds = sorted({k.rsplit(".", 1)[-1] for k in self.store})
            raise KeyError(f"no activation named {key!r} in this cache; it holds "
                           f"blocks.<0..{self.n_layer - 1}>.attn.<{'|'.join(kinds)}>")
        return self.store[key]

    def layer(self, layer: int, name: ActivationName) -> torch.Tensor:
        return self[hook_point_name(layer, name)]

    def stack(self, name: ActivationName) -> torch.Tensor:
        """One activation for all layers, layer as dim 1: e.g. pattern -> (B, L, nh, T, T)."""
        return torch.stack([self.layer(l, name) for l in range(self.n_layer)], dim=1)


@torch.no_grad()
def run_with_cache(model: TransformerLM, idx: torch.Tensor,
                   names: Sequence[ActivationName] = ACTIVATION_NAMES) -> ActivationCache:
    """Run `model` on token ids `idx` (B, T) and record the named activations of every layer
    (what any other hook already installed made of them)."""
    store: dict[str, torch.Tensor] = {}

    def keep(key: str) -> HookFn:
        return lambda t: store.__setitem__(key, t.detach())

    recorders = [(key, keep(key)) for key in (hook_point_name(l, n) for l in range(len(model.blocks)) for n in names)]
    with hooks(model, recorders):
        logits, _ = model(idx)
    return ActivationCache(tokens=idx, logits=logits, n_layer=len(model.blocks), store=store)


def attention_patterns(model: TransformerLM, idx: torch.Tensor) -> torch.Tensor:
    """Every layer's attention pattern on token ids `idx` (B, T), stacked as (B, L, nh, T, T): the
    `hook_pattern` points read through `run_with_cache` (with whatever other hooks made of them)."""
    return run_with_cache(model, idx, names=("pattern",)).stack("pattern")
