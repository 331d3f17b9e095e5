"""The optional analyses beyond the raw attention weights, each a typed result: value-weighted
attention, token importance / entropy / rollout, a query-key map, a counterfactual pair and head
ablation. They run on the first `windows` held-out windows of an analysis (`run_extras`); what
they need from the model is checked before any work (`check_request`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from charlens.analysis.measures.ablation import ablation_study, repeated_random_windows
from charlens.analysis.measures.counterfactual import align_positions, run_counterfactual
from charlens.analysis.measures.detectors import target_masks
from charlens.analysis.measures.importance import EntropyAccumulator, token_importance
from charlens.analysis.measures.qk_map import qk_map
from charlens.analysis.measures.rollout import attention_rollout
from charlens.analysis.measures.scoring import score_masks
from charlens.analysis.measures.value_weighted import row_disagreement, row_normalize, value_weighted_attention
from charlens.analysis.runs.extract import char_batch
from charlens.analysis.runs.inputs import AnalysisInputs
from charlens.analysis.runs.results import (AblationResult, AnalysisResult, Extras, QKMapResult, RolloutResult,
                                   ValueWeightedResult)
from charlens.data.charclasses import classify
from charlens.data.errors import CharlensError
from charlens.data.progress import progress as progress_bar
from charlens.data.tokenizer import Tokenizer, UnknownCharactersError
from charlens.model.hooks import run_with_cache
from charlens.model.transformer import TransformerLM

QK_WINDOWS = 16  # windows in the query-key map


class ExtrasError(CharlensError):
    """A request for an optional analysis that the model or its inputs cannot serve."""


@dataclass(frozen=True)
class ExtrasRequest:
    """Which optional analyses to run, and their settings (analyze.py's flags)."""

    value_weighted: bool = False
    rollout: bool = False
    qk_map: Optional[tuple[int, int]] = None  # (layer, head)
    projection: str = "pca"
    counterfactual: Optional[tuple[str, str]] = None
    ablation: bool = False
    ablation_mode: str = "zero"
    ablation_tol: float = 0.01
    windows: int = 64
    batch_size: int = 32
    seed: int = 0

    def wanted(self) -> bool:
        return bool(self.value_weighted or self.rollout or self.qk_map or self.counterfactual or self.ablation)


def check_request(request: ExtrasRequest, model: TransformerLM, tokenizer: Tokenizer) -> None:
    """Checks that need the model: the head exists, the counterfactual texts fit, are encodable and
    share at least 2 aligned characters."""
    c = model.config
    if request.qk_map:
        l, h = request.qk_map
        if not (0 <= l < c.n_layer and 0 <= h < c.n_head):
            raise ExtrasError(f"--qk-map {l}.{h}: the model has layers 0..{c.n_layer - 1} and heads 0..{c.n_head - 1}")
    for name, text in zip("AB", request.counterfactual or ()):
        if not 2 <= len(text) <= c.block_size:
            raise ExtrasError(f"--counterfactual text {name} has {len(text)} characters; it needs 2 to {c.block_size}")
        try:
            tokenizer.encode(text)
        except UnknownCharactersError as e:
            raise ExtrasError(f"--counterfactual text {name}: {e}") from None
    if request.counterfactual and len(align_positions(*request.counterfactual)[0]) < 2:
        raise ExtrasError("--counterfactual texts share fewer than 2 aligned characters; nothing to compare")


def heldout_groups(inputs: AnalysisInputs, n: int) -> list[tuple[list[str], torch.Tensor, torch.Tensor]]:
    """The first `n` held-out windows grouped by length: (texts, ids (B, T), classes (B, T))."""
    split = inputs.heldout
    groups: dict[int, list[str]] = {}
    for w in split.windows[:n]:
        groups.setdefault(len(w), []).append(w)
    out = []
    for texts in groups.values():
        ids = torch.as_tensor(np.stack([inputs.tokenizer.encode(t, unknown="replace") for t in texts]).astype(np.int64))
        cls = torch.as_tensor(np.stack([classify(t, inputs.lang) for t in texts]).astype(np.int64))
        out.append((texts, ids, cls))
    return out


@torch.no_grad()
def run_extras(request: ExtrasRequest, inputs: AnalysisInputs, analysis: AnalysisResult,
               progress: bool = False) -> Extras:
    """Run the analyses asked for on the first `request.windows` held-out windows."""
    model = inputs.model
    groups = heldout_groups(inputs, request.windows)
    streamed: dict = {}
    if request.value_weighted or request.rollout or request.qk_map:
        streamed = _stream(request, inputs, groups, analysis, progress)
    counterfactual = None
    if request.counterfactual:
        a, b = request.counterfactual
        counterfactual = run_counterfactual(model, inputs.tokenizer.encode(a), inputs.tokenizer.encode(b), a, b)
    ablation = _ablation(request, inputs, analysis, groups, progress) if request.ablation else None
    return Extras(value_weighted=streamed.get("value_weighted"), rollout=streamed.get("rollout"),
                  qk_map=streamed.get("qk_map"), counterfactual=counterfactual, ablation=ablation)


def _stream(request: ExtrasRequest, inputs: AnalysisInputs, groups, analysis: AnalysisResult, progress: bool) -> dict:
    """One pass over the windows for the analyses that need every layer's activations."""
    model = inputs.model
    L, H = model.config.n_layer, model.config.n_head
    names = list(analysis.detectors)
    tv_sum: torch.Tensor | float = 0.0
    n_tv, raw_scores, vw_scores = 0, [], []
    # Entropy by position and the q/k map stack windows, so they use only the longest ones
    # (all of them, except with --sentences).
    longest = max(ids.size(1) for _, ids, _ in groups)
    entropy = EntropyAccumulator(L, H, longest)
    qk_parts: list[tuple[np.ndarray, ...]] = []
    first = None
    bar = progress_bar(total=sum(len(t) for t, _, _ in groups), desc="extras", unit="win", enabled=progress, leave=False)
    for texts, ids, cls in groups:
        for start in range(0, len(texts), request.batch_size):
            sl = slice(start, start + request.batch_size)
            cache = run_with_cache(model, ids[sl])
            att = cache.stack("pattern").float()
            vw = row_normalize(value_weighted_attention(model, cache)) if request.value_weighted else None
            if first is None:
                first = (texts[start], att[0], None if vw is None else vw[0])
            if vw is not None:
                tv_sum, n_tv = tv_sum + row_disagreement(att, vw) * att.size(0), n_tv + att.size(0)
                masks = target_masks(char_batch(inputs.tokenizer, texts[sl], inputs.lang), names)
                raw_scores.append(score_masks(att, masks).score)
                vw_scores.append(score_masks(vw, masks).score)
            if request.rollout and att.size(-1) == longest:
                entropy.add(att)
            if request.qk_map and att.size(-1) == longest and sum(p[0].shape[0] for p in qk_parts) < QK_WINDOWS:
                l, h = request.qk_map
                qk_parts.append((cache.layer(l, "q")[:, h].numpy(), cache.layer(l, "k")[:, h].numpy(),
                                 cache.layer(l, "pattern")[:, h].numpy(), cls[sl].numpy()))
            bar.update(att.size(0))
    bar.close()
    assert first is not None, "no held-out windows"
    text0, att0, vw0 = first
    out: dict = {}
    if request.value_weighted:
        assert isinstance(tv_sum, torch.Tensor) and vw0 is not None
        out["value_weighted"] = _value_weighted(analysis, names, tv_sum / n_tv, raw_scores, vw_scores, text0, att0, vw0)
    if request.rollout:
        imp = token_importance(att0.unsqueeze(0))
        ent = {k: v.numpy() for k, v in entropy.result().items()}
        out["rollout"] = RolloutResult(ent, text0, att0.numpy(), imp["raw"][0].numpy(), imp["rollout"][0].numpy(),
                                       attention_rollout(att0).numpy())
    if request.qk_map:
        out["qk_map"] = _qk_map(request, qk_parts)
    return out


def _value_weighted(analysis: AnalysisResult, names: list[str], tv: torch.Tensor, raw_scores: list, vw_scores: list,
                    text0: str, att0: torch.Tensor, vw0: torch.Tensor) -> ValueWeightedResult:
    with warnings.catch_warnings():  # a detector without targets in any window (short sentences) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        raw = np.nanmean(torch.cat(raw_scores).numpy(), axis=0)  # (D, L, H)
        vw = np.nanmean(torch.cat(vw_scores).numpy(), axis=0)
    rows = []
    for head in analysis.heads:
        if head.validated:
            d, l, h = names.index(head.candidate), head.layer, head.head
            rows.append({"layer": l, "head": h, "behaviour": head.behaviour, "detector": head.candidate,
                         "raw_score": round(float(raw[d, l, h]), 4), "value_weighted_score": round(float(vw[d, l, h]), 4)})
    return ValueWeightedResult(tv.numpy(), rows, text0, att0.numpy(), vw0.numpy())


def _qk_map(request: ExtrasRequest, parts: list[tuple[np.ndarray, ...]]) -> QKMapResult:
    assert request.qk_map is not None
    l, h = request.qk_map
    q, k, a, c = (np.concatenate(x)[:QK_WINDOWS] for x in zip(*parts))
    m = qk_map(q, k, a, method=request.projection)  # type: ignore[arg-type]
    return QKMapResult(l, h, request.projection, int(q.shape[0]), int(q.shape[1]), m["n_pairs"], m["spearman_2d"],
                       m["spearman_full"], int(q.shape[-1]), m["queries"], m["keys"], c.reshape(-1))


def _ablation(request: ExtrasRequest, inputs: AnalysisInputs, analysis: AnalysisResult, groups,
              progress: bool) -> AblationResult:
    model, c = inputs.model, inputs.model.config
    behaviours = {(h.layer, h.head): h.behaviour for h in analysis.heads}
    validated = frozenset((h.layer, h.head) for h in analysis.heads if h.validated)
    induction = repeated_random_windows(range(1, inputs.tokenizer.vocab_size), max(8, request.windows // 4),
                                        c.block_size, seed=request.seed)
    res = ablation_study(model, [ids for _, ids, _ in groups], [cls for _, _, cls in groups], behaviours, validated,
                         mode=request.ablation_mode, tol=request.ablation_tol,  # type: ignore[arg-type]
                         induction_windows=induction, batch_size=request.batch_size, progress=progress)
    return AblationResult(request.ablation_mode, request.ablation_tol, res, behaviours, validated)
