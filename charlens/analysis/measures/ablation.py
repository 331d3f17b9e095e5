"""Head ablation: does the model use what a head visibly does?

A head is zero-ablated (its output z set to 0) or mean-ablated (z set to its mean over the
held-out positions) through the hook point `blocks.L.attn.hook_z`, and the change in next-character loss on
held-out text is measured, overall and on the positions the head's behaviour concerns: the
query rows where, in the clean run, the head puts at least `focus` of its attention on the
behaviour's targets (for `induction`: the second copy of random sequences repeated twice).
A head with a validated behaviour whose ablation moves neither loss by `tol` nats or more is
flagged visible but unused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, ContextManager, Iterable, Iterator, Literal, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from charlens.model.hooks import HookFn, hook_point_name, hooks, run_with_cache
from charlens.analysis.measures.detectors import REGISTRY, CharBatch
from charlens.model.transformer import TransformerLM

AblationMode = Literal["zero", "mean"]
Head = tuple[int, int]


def ablated(model: TransformerLM, heads: Iterable[Head], mode: AblationMode = "zero",
            means: torch.Tensor | None = None) -> ContextManager[None]:
    """Within the block, the given (layer, head) outputs z are replaced by 0 or by `means` (L, nh, hs),
    through the hook points blocks.L.attn.hook_z (after any hook already there)."""
    if mode == "mean" and means is None:
        raise ValueError("mean ablation needs the heads' mean outputs (head_output_means)")
    replacement = torch.zeros(0) if means is None else means
    by_layer: dict[int, list[int]] = {}
    for l, h in heads:
        by_layer.setdefault(l, []).append(h)

    def replace(l: int, hs: list[int]) -> HookFn:
        def hook(z: torch.Tensor) -> torch.Tensor:  # (B, nh, T, hs)
            z = z.clone()
            z[:, hs] = 0.0 if mode == "zero" else replacement[l, hs].to(z)[:, None, :]
            return z
        return hook
    return hooks(model, [(hook_point_name(l, "z"), replace(l, hs)) for l, hs in by_layer.items()])


Windows = torch.Tensor | Sequence[torch.Tensor]  # (N, T+1), or groups of windows of different lengths


def _batches(ids: Windows, batch_size: int) -> Iterator[torch.Tensor]:
    for group in [ids] if isinstance(ids, torch.Tensor) else ids:
        for start in range(0, group.size(0), batch_size):
            yield group[start : start + batch_size]


@torch.no_grad()
def head_output_means(model: TransformerLM, ids: Windows, batch_size: int = 32) -> torch.Tensor:
    """Mean output z of every head over all windows and positions: (L, nh, hs)."""
    total: torch.Tensor | float = 0.0
    count = 0
    for batch in _batches(ids, batch_size):
        z = run_with_cache(model, batch, names=("z",)).stack("z")  # (B, L, nh, T, hs)
        total = total + z.sum(dim=(0, 3))
        count += z.size(0) * z.size(3)
    assert isinstance(total, torch.Tensor), "no windows"
    return total / count


@torch.no_grad()
def position_losses(model: TransformerLM, windows: torch.Tensor) -> torch.Tensor:
    """Next-character loss at every position: windows (B, T+1) -> (B, T)."""
    logits, _ = model(windows[:, :-1])
    return F.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="none")


def repeated_random_windows(token_ids: Sequence[int], n: int, T: int, seed: int = 0) -> torch.Tensor:
    """`n` windows (n, T+1) made of a random sequence of length ceil((T+1)/2) repeated twice."""
    g = torch.Generator().manual_seed(seed)
    half = (T + 2) // 2
    pool = torch.as_tensor(list(token_ids), dtype=torch.long)
    seq = pool[torch.randint(len(pool), (n, half), generator=g)]
    return torch.cat([seq, seq], dim=1)[:, : T + 1]


@dataclass
class HeadAblation:
    delta_loss: float  # mean loss change over all held-out positions
    delta_loss_targeted: float  # over the positions the behaviour concerns (NaN when there are none)
    n_targeted: int
    visible_but_unused: bool

    def as_dict(self) -> dict:
        targeted = None if np.isnan(self.delta_loss_targeted) else round(self.delta_loss_targeted, 6)
        return {"ablation_delta_loss": round(self.delta_loss, 6), "ablation_delta_loss_targeted": targeted,
                "ablation_n_targeted": self.n_targeted, "visible_but_unused": self.visible_but_unused}


@torch.no_grad()
def ablation_study(
    model: TransformerLM, windows: Windows, classes: Windows, behaviours: dict[Head, str],
    validated: AbstractSet[Head] = frozenset(), mode: AblationMode = "zero", tol: float = 0.01, focus: float = 0.5,
    induction_windows: torch.Tensor | None = None, batch_size: int = 32, progress: bool = False,
) -> dict[Head, HeadAblation]:
    """Ablate each head of `behaviours` ({(layer, head): detector name or "none"}) on its own.
    windows, classes: (N, T+1) token ids and class codes of held-out text (or groups of them);
    induction_windows: (M, T'+1) random sequences repeated twice (repeated_random_windows)."""
    means = head_output_means(model, [w[:, :-1] for w in _batches(windows, batch_size)], batch_size) if mode == "mean" else None
    heads = list(behaviours)
    sums = {h: np.zeros(4) for h in heads}  # delta sum, count, targeted delta sum, targeted count
    n_windows = sum(b.size(0) for b in _batches(windows, batch_size))
    bar = tqdm(total=len(heads) * n_windows, desc=f"{mode}-ablation", unit="win", disable=not progress, leave=False)
    for batch, batch_classes in zip(_batches(windows, batch_size), _batches(classes, batch_size)):
        inputs = batch[:, :-1]
        cache = run_with_cache(model, inputs)
        clean = position_losses(model, batch)  # (B, T), on the same kernel path as the ablated runs
        chars = CharBatch(inputs, batch_classes[:, :-1])
        for head in heads:
            l, h = head
            with ablated(model, [head], mode, means):
                delta = position_losses(model, batch) - clean
            name = behaviours[head]
            if name in REGISTRY and name != "induction":
                mass = (cache.layer(l, "pattern")[:, h] * REGISTRY[name].targets(chars)).sum(-1)  # (B, T)
                rows = mass >= focus
                rows[:, 0] = False
                sums[head][2:] += (delta[rows].sum().item(), rows.sum().item())
            sums[head][:2] += (delta.sum().item(), delta.numel())
            bar.update(batch.size(0))
    bar.close()
    if induction_windows is not None:
        T = induction_windows.size(1) - 1
        second = slice((T + 2) // 2, T)  # predictions of the second copy's characters (after its first)
        for head in (hd for hd in heads if behaviours[hd] == "induction"):
            for batch in _batches(induction_windows, batch_size):
                clean = position_losses(model, batch)
                with ablated(model, [head], mode, means):
                    delta = (position_losses(model, batch) - clean)[:, second]
                sums[head][2:] += (delta.sum().item(), delta.numel())
    out = {}
    for head, (d, n, dt, nt) in sums.items():
        mean_delta, targeted = float(d / n), float(dt / nt) if nt else float("nan")
        moved = abs(mean_delta) >= tol or (nt > 0 and abs(targeted) >= tol)
        out[head] = HeadAblation(mean_delta, targeted, int(nt), head in validated and not moved)
    return out
