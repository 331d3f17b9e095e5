"""Weight-level circuit scores: what a head's weights can do, read off the weights with no text at all
(Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits").

A head is two low-rank matrices over the residual stream (row vectors, x @ W): the OV circuit
W_OV = W_V W_O (what it writes, given what it reads) and the QK circuit W_QK = W_Q W_K^T (where it looks).
`head_weights` takes them from a TransformerLM with each LayerNorm's scale folded into the weights that
read its output and every reading and writing weight centred across the residual dimensions (LayerNorm
subtracts the mean, so that direction is never read): TransformerLens's fold_ln and
center_writing_weights. LayerNorm's division by the input's norm is a positive factor per position that
weights alone cannot know; every score below is unchanged by positive factors (ratios, argmaxes), and
biases (off by default) are left out.

Per head:
- ov_copying: sum(eigenvalues) / sum(|eigenvalues|) of the full OV circuit over the vocabulary,
  W_E W_OV W_U (n x n), Elhage et al.'s copying score: 1 when every direction the head writes raises the
  logit of the character it read, -1 when it lowers it, about 0 for a random map;
- ov_diagonal: the share of characters whose own logit is the largest in their row of that map (the
  head, reading the character, raises that character's logit most): diagonal dominance, 1/n by chance;
- qk_previous: from the QK circuit of the direct path (embeddings and positions), the share of query positions
  i >= 1 whose expected score over random characters is highest, among keys j <= i, at j = i - 1 (a
  previous-character head's pattern, predicted from weights; about H_T / T by chance).
Per pair of an earlier-layer head e and a later-layer head h (NaN elsewhere; the (L, H, L, H) arrays are
indexed [layer_e, head_e, layer_h, head_h]):
- composition q, k, v: ||W_OV^e W||_F / (||W_OV^e||_F ||W||_F) with W = W_QK^h (Q-composition: e's
  output is read by h's queries), W_QK^h^T (K-composition: by its keys) or W_OV^h (V-composition), as
  TransformerLens's all_composition_scores computes them;
- qk_match: the induction match read off the weights: for a query character a, does head h score
  highest the key position whose previous character was a, when head e moved that character there?
  The share of characters a for which argmax_b of W_E[a] W_QK^h (W_E[b] W_OV^e)^T is b = a (1/n by chance).
Each score comes with its random-head baseline (`baselines`): the same score for heads whose W_Q, W_K,
W_V, W_O are Gaussian (centred like the model's), the model's embeddings, positions and unembedding
kept: a control that holds everything but the trained head fixed.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional, Sequence

import numpy as np
import torch

from charlens.model.transformer import TransformerLM

MODES = ("q", "k", "v")
BASELINE_HEADS = 32  # random heads per layer of the baseline model (32 x 32 random pairs)
BASELINE_QUANTILE = 0.99  # the baseline's upper bound


@dataclass(frozen=True)
class HeadWeights:
    """Every head's factors, folded and centred (module docstring); float64."""

    W_Q: torch.Tensor  # (L, H, C, d)
    W_K: torch.Tensor  # (L, H, C, d)
    W_V: torch.Tensor  # (L, H, C, d)
    W_O: torch.Tensor  # (L, H, d, C)
    W_E: torch.Tensor  # (n, C) the embeddings of the scored characters
    W_pos: torch.Tensor  # (T, C)
    W_U: torch.Tensor  # (C, n) their unembedding, the final LayerNorm's scale folded in

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.W_Q.shape[:2])  # type: ignore[return-value]


@dataclass(frozen=True)
class CircuitScores:
    """The scores of one model's heads (module docstring); numpy arrays, NaN where undefined."""

    ov_copying: np.ndarray  # (L, H)
    ov_diagonal: np.ndarray  # (L, H)
    qk_previous: np.ndarray  # (L, H)
    composition: dict[str, np.ndarray]  # q, k, v -> (L, H, L, H)
    qk_match: np.ndarray  # (L, H, L, H)


def _centred(w: torch.Tensor, dim: int) -> torch.Tensor:
    return w - w.mean(dim, keepdim=True)


def head_weights(model: TransformerLM, tokens: Optional[Sequence[int]] = None) -> HeadWeights:
    """The folded, centred factors of every head of `model`; the vocabulary maps are over `tokens`
    (default: every token but the reserved unknown token 0)."""
    cfg = model.config
    L, H, C = cfg.n_layer, cfg.n_head, cfg.n_embd
    d = C // H
    ids = list(tokens) if tokens is not None else list(range(1, cfg.vocab_size))
    host = lambda w: w.detach().to("cpu", torch.float64)  # the scores are small float64 work: on the CPU, from any device
    with torch.no_grad():
        def heads(w: torch.Tensor) -> torch.Tensor:  # nn.Linear weight rows (H*d, C) -> (H, C, d) reading factors
            return host(w).T.reshape(C, H, d).permute(1, 0, 2)
        reads: dict[str, list[torch.Tensor]] = {"q": [], "k": [], "v": []}
        outs = []
        for block in model.blocks:
            scale = host(block.ln_1.weight)[None, :, None]
            for name, w in zip(MODES, block.attn.c_attn.weight.split(C, dim=0)):
                reads[name].append(_centred(scale * heads(w), -2))
            outs.append(_centred(host(block.attn.c_proj.weight).T.reshape(H, d, C), -1))
        embed = _centred(host(model.wte.weight), -1)
        unembed = _centred(host(model.ln_f.weight)[:, None] * host(model.lm_head.weight).T, 0)
        return HeadWeights(torch.stack(reads["q"]), torch.stack(reads["k"]), torch.stack(reads["v"]), torch.stack(outs),
                           embed[ids], _centred(host(model.wpe.weight), -1), unembed[:, ids])


def _pairs(L: int, H: int, score) -> torch.Tensor:
    """(L, H, L, H) with score(e, h) ((H, H): heads of layer e x heads of layer h) for every layer e below
    layer h, NaN elsewhere."""
    out = torch.full((L, H, L, H), torch.nan, dtype=torch.float64)
    for e in range(L):
        for h in range(e + 1, L):
            out[e, :, h] = score(e, h)
    return out


def composition(w: HeadWeights, mode: str) -> torch.Tensor:
    """(L, H, L, H) Frobenius composition scores of every earlier head's OV circuit into every later head's
    queries (q), keys (k) or values (v); NaN unless the first head's layer is below the second's. Computed
    through the d x d inner products of the factors, never the C x C matrices:
    ||A1 B1 A2 B2||^2 = sum((G1 M) * (M G2)), M = B1 A2, G1 = A1^T A1, G2 = B2 B2^T."""
    A2, B2 = {"q": (w.W_Q, w.W_K.transpose(-1, -2)), "k": (w.W_K, w.W_Q.transpose(-1, -2)),
              "v": (w.W_V, w.W_O)}[mode]
    A1, B1 = w.W_V, w.W_O
    G1, G2 = A1.transpose(-1, -2) @ A1, B2 @ B2.transpose(-1, -2)  # (L, H, d, d)
    left = (G1 * (B1 @ B1.transpose(-1, -2))).sum((-1, -2))  # ||A1 B1||^2, (L, H)
    right = ((A2.transpose(-1, -2) @ A2) * G2).sum((-1, -2))  # ||A2 B2||^2

    def score(e: int, h: int) -> torch.Tensor:
        M = torch.einsum("idc,jce->ijde", B1[e], A2[h])  # (H, H, d, d)
        both = ((G1[e][:, None] @ M) * (M @ G2[h][None])).sum((-1, -2))
        return (both.clamp_min(0) / (left[e][:, None] * right[h][None, :])).sqrt()
    return _pairs(*w.shape, score)


def ov_maps(w: HeadWeights) -> torch.Tensor:
    """(L, H, n, n) every head's full OV circuit W_E W_V W_O W_U: row a = the logits it adds, reading character a."""
    return torch.einsum("nc,lhcd,lhde,em->lhnm", w.W_E, w.W_V, w.W_O, w.W_U)


def ov_copying(maps: torch.Tensor) -> torch.Tensor:
    """(L, H) sum(eigenvalues) / sum(|eigenvalues|) of each full OV circuit (n x n)."""
    eig = torch.linalg.eigvals(maps)
    return eig.real.sum(-1) / eig.abs().sum(-1).clamp_min(1e-300)


def diagonal_share(m: torch.Tensor) -> torch.Tensor:
    """(...,) the share of rows of square matrices (..., n, n) whose largest entry is on the diagonal."""
    n = m.shape[-1]
    return (m.argmax(-1) == torch.arange(n)).double().mean(-1)


def qk_previous(w: HeadWeights) -> torch.Tensor:
    """(L, H) share of query positions i >= 1 whose expected QK score over keys j <= i is highest at i - 1: the
    direct path's scores for uniformly random characters, (e + P_i) W_QK (e + P_j)^T with e the mean character
    embedding, each side scaled as LayerNorm scales it on average (1 / rms of E_t + P_i over the characters t),
    plus, on the diagonal, the covariance term of a query reading its own character."""
    P, E = w.W_pos, w.W_E
    T, C = P.shape
    if T < 2:
        return torch.full(w.shape, torch.nan, dtype=torch.float64)
    e = E.mean(0)
    rms = ((E.pow(2).sum(-1).mean() + 2 * P @ e + P.pow(2).sum(-1)) / C).sqrt()  # (T,)
    x = (e + P) / rms[:, None]
    scores = torch.einsum("ic,lhcd,lhed,je->lhij", x, w.W_Q, w.W_K, x)  # (L, H, T, T)
    centred = E - e
    own = torch.einsum("tc,lhcd,lhed,te->lh", centred, w.W_Q, w.W_K, centred) / len(E)  # (L, H)
    scores = scores + torch.eye(T, dtype=scores.dtype) * own[..., None, None] / rms.pow(2)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    best = scores.masked_fill(~causal, -torch.inf).argmax(-1)[..., 1:]  # (L, H, T - 1)
    return (best == torch.arange(T - 1)).double().mean(-1)


def qk_match(w: HeadWeights) -> torch.Tensor:
    """(L, H, L, H) for every earlier head e and later head h: the share of characters a whose highest-scoring
    key, among keys holding e's output for character b, is b = a: W_E[a] W_QK^h (W_E[b] W_OV^e)^T."""
    query = torch.einsum("nc,lhcd->lhnd", w.W_E, w.W_Q)  # (L, H, n, d)
    moved = torch.einsum("nc,lhcd,lhde->lhne", w.W_E, w.W_V, w.W_O)  # (L, H, n, C): e's output reading b

    def score(e: int, h: int) -> torch.Tensor:
        key = torch.einsum("ine,jed->ijnd", moved[e], w.W_K[h])  # (H_e, H_h, n, d)
        return diagonal_share(torch.einsum("jad,ijbd->ijab", query[h], key))
    return _pairs(*w.shape, score)


def circuit_scores(w: HeadWeights) -> CircuitScores:
    """Every score of the module docstring for the heads of `w`."""
    maps = ov_maps(w)
    return CircuitScores(ov_copying(maps).numpy(), diagonal_share(maps).numpy(), qk_previous(w).numpy(),
                         {m: composition(w, m).numpy() for m in MODES}, qk_match(w).numpy())


def timeline_scores(w: HeadWeights) -> dict[str, np.ndarray]:
    """The scores a training timeline records at every step (training/timeline.py): ov_copying, qk_previous,
    k_composition and qk_match, without the others or the baselines."""
    return {"ov_copying": ov_copying(ov_maps(w)).numpy(), "qk_previous": qk_previous(w).numpy(),
            "k_composition": composition(w, "k").numpy(), "qk_match": qk_match(w).numpy()}


def random_heads(w: HeadWeights, n_heads: int, generator: torch.Generator) -> HeadWeights:
    """A two-layer model of `n_heads` Gaussian heads per layer with `w`'s embeddings, positions and unembedding."""
    C, d = w.W_Q.shape[-2:]
    gauss = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)
    reading = [_centred(gauss(2, n_heads, C, d), -2) for _ in MODES]
    return replace(w, W_Q=reading[0], W_K=reading[1], W_V=reading[2], W_O=_centred(gauss(2, n_heads, d, C), -1))


def baselines(w: HeadWeights, seed: int = 0, n_heads: int = BASELINE_HEADS) -> dict[str, tuple[float, float]]:
    """Score -> (mean, BASELINE_QUANTILE quantile) over random heads (`random_heads`): per-head scores over its
    2 x n_heads heads, pair scores over its n_heads^2 layer-0 -> layer-1 pairs."""
    random = circuit_scores(random_heads(w, n_heads, torch.Generator().manual_seed(seed)))
    out = {}
    for f in fields(CircuitScores):
        value = getattr(random, f.name)
        for key, a in (value.items() if isinstance(value, dict) else [(f.name, value)]):
            a = a[np.isfinite(a)]
            out[key if f.name != "composition" else f"{key}_composition"] = (float(a.mean()), float(np.quantile(a, BASELINE_QUANTILE)))
    return out
