"""Who copies in context, as a typed result: every head's share of the copy drop on repeated random letter
sequences against the same first halves followed by their letters reordered (analysis.measures.copying), ablated alone, and the pairs among the strongest ablated together;
and, for a checkpoint of the synthetic induction task, the loss and accuracy on the task's held-out
second copies.

Heads are mean-ablated (their output replaced by its mean over the analysis's held-out windows: what the
head writes on ordinary text, so the rest of the model stays on its usual inputs) and also zero-ablated
for comparison. A head carries copying when its ablation alone removes at least CARRIER_SHARE of the
drop with a lower bound above 0 (bounds: -+ z x the bootstrap standard error over the sequences, z Bonferroni-corrected
over every head and pair ablated); a pair's interaction is its share minus the two heads' own shares (> 0: they
work together, as a previous-character head and the head reading its output do).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Optional

import numpy as np
import torch
from scipy.stats import norm
from torch.nn import functional as F

from charlens.analysis.measures.ablation import head_output_means, repeated_random_windows
from charlens.analysis.measures.copying import CopyLosses, drop_shares, reordered_control, share, share_interval
from charlens.analysis.measures.stats import per_test_alpha
from charlens.analysis.runs.induction import letter_pool
from charlens.analysis.runs.inputs import AnalysisInputs, Settings
from charlens.data.induction_task import task_from_identity

CARRIER_SHARE = 0.1  # a head carries copying when its ablation alone removes this share of the drop (and its bound > 0)
PAIR_HEADS = 6  # pairs are ablated among this many heads with the largest single shares
MEAN_WINDOWS = 32  # held-out windows the heads' mean outputs are taken over
DIGITS = 4
Head = tuple[int, int]


def _r(x: float) -> Optional[float]:
    return round(float(x), DIGITS) if np.isfinite(x) else None


def _listed(a: np.ndarray) -> list:
    """Nested lists of rounded floats, None for NaN (JSON has no NaN)."""
    return [_listed(v) if np.ndim(v) else _r(v) for v in a]


@dataclass(frozen=True)
class CopyingResult:
    clean: CopyLosses
    z: float  # of the intervals: Bonferroni over every head and pair ablated, at the analysis's alpha
    single: dict[str, np.ndarray]  # mode (mean, zero) -> (L, H) share of the drop removed by the head alone
    single_ci: np.ndarray  # (L, H, 2) the mean-ablation share -+ z x its bootstrap SE over the sequences (NaN: no copying)
    pairs: tuple[tuple[Head, Head, float, float, float], ...]  # (head, head, share, low, high), mean-ablated together
    n_sequences: int
    length: int

    @property
    def copies(self) -> bool:
        """Whether the copy drop's lower bound is above 0: the model copies in context at all."""
        return self.clean.drop_bound(self.z) > 0

    def carriers(self) -> list[Head]:
        """Heads whose mean ablation alone removes at least CARRIER_SHARE of the drop, with a lower bound above 0."""
        s, low = self.single["mean"], self.single_ci[..., 0]
        with np.errstate(invalid="ignore"):
            heads = [(int(l), int(h)) for l, h in zip(*np.nonzero((s >= CARRIER_SHARE) & (low > 0)))] if self.copies else []
        return sorted(heads, key=lambda lh: -s[lh])

    def interaction(self, a: Head, b: Head, together: float) -> float:
        return together - self.single["mean"][a] - self.single["mean"][b]

    def head_columns(self, layer: int, head: int) -> dict:
        return {"copy_share": _r(self.single["mean"][layer, head]), "copy_share_zero": _r(self.single["zero"][layer, head])}

    def sentence(self) -> str:
        """Which heads carry the copying, in one sentence."""
        c = self.clean
        drop = (f"The second copy's loss is {c.drop:.3f} nats below the loss on the same letters reordered at the same "
                f"positions (lower bound {c.drop_bound(self.z):.3f}; position alone moves the loss by "
                f"{-c.position_drop:+.3f} from the first copy to the reordered letters)")
        if not self.copies:
            return f"{drop}: no in-context copying to attribute to heads."
        s = self.single["mean"]
        who = (", ".join(f"L{l}H{h} {100 * s[l, h]:.0f}% [{100 * self.single_ci[l, h, 0]:.0f}, "
                         f"{100 * self.single_ci[l, h, 1]:.0f}]" for l, h in self.carriers())
               or f"no head alone (the largest share is {100 * np.nanmax(s):.0f}%)")
        best = max(self.pairs, key=lambda p: p[2], default=None)
        pair = (f"; ablated together, L{best[0][0]}H{best[0][1]} and L{best[1][0]}H{best[1][1]} remove {100 * best[2]:.0f}% "
                f"[{100 * best[3]:.0f}, {100 * best[4]:.0f}]" if best else "")
        return f"{drop}; mean-ablating one head removes: {who}{pair}."

    def to_dict(self) -> dict:
        return {"loss_first_copy": _r(self.clean.first.mean()), "loss_second_copy": _r(self.clean.second.mean()),
                "loss_reordered_half": _r(self.clean.reordered.mean()),
                "drop": _r(self.clean.drop), "position_drop": _r(self.clean.position_drop), "drop_bound": _r(self.clean.drop_bound(self.z)), "z": _r(self.z),
                "copies": self.copies, "n_sequences": self.n_sequences, "length": self.length,
                "share": {m: _listed(a) for m, a in self.single.items()}, "share_ci": _listed(self.single_ci),
                "carriers": [list(h) for h in self.carriers()], "carrier_share": CARRIER_SHARE,
                "pairs": [{"heads": [list(a), list(b)], "share": _r(v), "ci": [_r(lo), _r(hi)],
                           "interaction": _r(self.interaction(a, b, v))} for a, b, v, lo, hi in self.pairs],
                "sentence": self.sentence()}


def _mean_outputs(inputs: AnalysisInputs) -> torch.Tensor:
    """Every head's mean output over the first MEAN_WINDOWS held-out windows."""
    windows = [torch.as_tensor(inputs.tokenizer.encode(w, unknown="replace").astype(np.int64))[None]
               for w in inputs.heldout.windows[:MEAN_WINDOWS]]
    return head_output_means(inputs.model, windows)


def copying_result(inputs: AnalysisInputs, settings: Settings) -> CopyingResult:
    """Ablate every head alone (mean and zero), then, if the model copies (the drop's lower bound is above 0), every
    pair of the PAIR_HEADS strongest, on `settings.induction_windows` repeated random letter sequences of the
    model's block size (made even) and their reordered controls."""
    model = inputs.model.eval()
    L, H = model.config.n_layer, model.config.n_head
    T = model.config.block_size - model.config.block_size % 2
    pool = letter_pool(inputs.tokenizer, inputs.lang).tolist()
    ids = repeated_random_windows(pool, settings.induction_windows, T - 1, settings.seed + 1)  # (N, T): half = T / 2
    control = reordered_control(ids, settings.seed + 2)  # the same first halves, their letters reordered after them
    heads = [(l, h) for l in range(L) for h in range(H)]
    n_pairs = min(PAIR_HEADS, len(heads)) * (min(PAIR_HEADS, len(heads)) - 1) // 2
    z = float(norm.ppf(1 - per_test_alpha(settings.alpha, len(heads) + n_pairs)))
    rng = np.random.default_rng(settings.seed)
    means = _mean_outputs(inputs)
    single, ablated = {}, {}
    for mode in ("mean", "zero"):
        clean, ablated[mode] = drop_shares(model, ids, control, [[hd] for hd in heads], mode, means, settings.batch_size)
        single[mode] = np.array([share(clean, a) for a in ablated[mode]]).reshape(L, H)
    copies = clean.drop_bound(z) > 0  # shares of a drop indistinguishable from none are noise: no intervals, no pairs
    # (their bootstrap divides by resampled drops near 0: the interval is unbounded and turns on the last bits)
    ci = (np.array([share_interval(clean, a, z, settings.n_boot, rng) for a in ablated["mean"]]).reshape(L, H, 2)
          if copies else np.full((L, H, 2), np.nan))
    pairs: list[tuple[Head, Head, float, float, float]] = []
    if copies:
        order = sorted(heads, key=lambda hd: -np.nan_to_num(single["mean"][hd], nan=-np.inf))[:PAIR_HEADS]
        groups = list(combinations(sorted(order), 2))
        _, together = drop_shares(model, ids, control, groups, "mean", means, settings.batch_size)
        pairs = [(a, b, share(clean, t), *share_interval(clean, t, z, settings.n_boot, rng))
                 for (a, b), t in zip(groups, together)]
    return CopyingResult(clean, z, single, ci, tuple(pairs), len(ids), T)


@dataclass(frozen=True)
class TaskResult:
    """The synthetic induction task's held-out sequences: loss and accuracy on the second copy and elsewhere."""

    loss_second_copy: float
    accuracy_second_copy: float
    loss_other: float
    accuracy_other: float
    n_sequences: int
    segment: int
    letters: int

    def to_dict(self) -> dict:
        return {k: (_r(v) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@torch.no_grad()
def task_result(inputs: AnalysisInputs, batch_size: int = 64) -> Optional[TaskResult]:
    """For a checkpoint trained on the induction task (data.induction_task), its held-out set scored; else None."""
    if inputs.corpus is None or inputs.corpus.identity.get("kind") != "task":
        return None
    task = task_from_identity(inputs.corpus.identity)
    batch = task.fixed_set("heldout")
    ids = batch.ids[:, : inputs.model.config.block_size]
    second = batch.second_copy(ids.shape[1] - 1)
    losses, hits = [], []
    for chunk in ids.split(batch_size):
        logits, _ = inputs.model.eval()(chunk[:, :-1])
        losses.append(F.cross_entropy(logits.transpose(1, 2).float(), chunk[:, 1:], reduction="none"))
        hits.append((logits.argmax(-1) == chunk[:, 1:]).double())
    loss, hit = torch.cat(losses), torch.cat(hits)
    return TaskResult(float(loss[second].mean()), float(hit[second].mean()), float(loss[~second].mean()),
                      float(hit[~second].mean()), len(ids), task.segment, task.letters)
