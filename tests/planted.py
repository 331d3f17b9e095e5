"""Heads planted by hand through the hook point blocks.L.attn.hook_pattern, built from the window's
characters with the detectors' own target masks (vectorized: fast enough for a whole analysis).

Each planted head is a function CharBatch -> (B, T, T) attention rows. `KNOWN` maps a name to a head and
the label the analysis must give it (None: no label)."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from charlens.analysis.measures.detectors import REGISTRY, CharBatch, prefix_match
from charlens.analysis.measures.scoring import uniform_attention
from charlens.analysis.runs.extract import char_batch
from charlens.model.hooks import add_hook

Planted = Callable[[CharBatch], torch.Tensor]


def targets(name: str) -> Callable[[CharBatch], torch.Tensor]:
    return lambda b: REGISTRY[name].targets(b).expand(b.shape[0], b.shape[1], b.shape[1])


def latest(mask: Callable[[CharBatch], torch.Tensor], otherwise: str = "self") -> Planted:
    """All attention on the latest target of each row; rows without one attend to themselves or uniformly."""
    def head(b: CharBatch) -> torch.Tensor:
        m = mask(b)
        B, T, _ = m.shape
        j = torch.arange(T)
        last = torch.where(m, j, -1).amax(-1)  # (B, T)
        has = last >= 0
        A = uniform_attention(T).expand(B, T, T).clone() if otherwise == "uniform" else torch.eye(T).expand(B, T, T).clone()
        A[has] = 0.0
        A[has.nonzero(as_tuple=True) + (last[has],)] = 1.0
        return A
    return head


def spread(mask: Callable[[CharBatch], torch.Tensor]) -> Planted:
    """Attention spread evenly over each row's targets (uniform causal where a row has none)."""
    def head(b: CharBatch) -> torch.Tensor:
        m = mask(b).float()
        n = m.sum(-1, keepdim=True)
        return torch.where(n > 0, m / n.clamp_min(1), uniform_attention(m.shape[-1]))
    return head


def mix(*parts: tuple[float, Planted]) -> Planted:
    return lambda b: sum(w * p(b) for w, p in parts)


def uniform(b: CharBatch) -> torch.Tensor:
    return uniform_attention(b.shape[1]).expand(b.shape[0], -1, -1)


def self_at(mass: float) -> Planted:
    """`mass` on the query itself, the rest spread over the earlier keys (row 0: all on itself)."""
    def head(b: CharBatch) -> torch.Tensor:
        T = b.shape[1]
        earlier = torch.tril(torch.ones(T, T), diagonal=-1)
        A = mass * torch.eye(T) + (1 - mass) * earlier / earlier.sum(-1, keepdim=True).clamp_min(1)
        A[0, 0] = 1.0
        return A.expand(b.shape[0], T, T)
    return head


# name -> (head, the label the analysis must give it)
KNOWN: dict[str, tuple[Planted, Optional[str]]] = {
    "previous_char": (latest(targets("previous_char")), "previous_char"),
    "recent_space": (latest(targets("recent_space")), "recent_space"),
    "offset_3": (latest(targets("offset_3")), "offset_3"),
    "induction_3": (latest(lambda b: prefix_match(b, 3)), "induction"),  # three-character prefix, itself otherwise
    "induction_4": (latest(lambda b: prefix_match(b, 4)), "induction"),
    "copier": (latest(lambda b: prefix_match(b, 1)), "prefix_match_1"),  # copies after any one-character match
    "word_start": (latest(targets("word_start")), "word_start"),
    "local": (spread(targets("local")), "local"),
    "self_038": (self_at(0.38), "self"),  # 0.38 raw mass, ~11x its baseline
    "half_previous": (mix((0.5, latest(targets("previous_char"))), (0.5, uniform)), "previous_char"),
}


def plant(model, tokenizer, lang: str, heads: dict[tuple[int, int], Planted]) -> None:
    """Replace the named heads' patterns by planted ones computed from each batch's characters (decoded
    from the token ids the model sees); the other heads keep the model's own attention."""
    seen = {}
    model.register_forward_pre_hook(lambda m, args: seen.__setitem__("ids", args[0]))
    for layer in {l for l, _ in heads}:
        def hook(att: torch.Tensor, layer: int = layer) -> torch.Tensor:
            att = att.clone()
            b = char_batch(tokenizer, [tokenizer.decode(row) for row in seen["ids"]], lang)
            for (l, h), head in heads.items():
                if l == layer:
                    att[:, h] = head(b).to(att)
            return att
        add_hook(model, f"blocks.{layer}.attn.hook_pattern", hook)


def picky_pools(names: tuple[str, ...] = ("previous_char", "self"), T: int = 64, n: int = 640) -> tuple[dict, float]:
    """A head at a chosen cut, for the stability tests: previous character from a third of the characters
    (ids divisible by 3), uniform otherwise, so its selectivity varies with the text. Returns its per-window
    (score, control, baseline) arrays on `n` windows of each Bible split and its discovery selectivity for
    names[0] on the whole pool."""
    import numpy as np

    from charlens.analysis.measures.scoring import score_windows
    from charlens.analysis.runs.inputs import sample_windows
    from charlens.data.corpora import bible_corpus
    from charlens.data.tokenizer import CharTokenizer

    corpus = bible_corpus("en")
    tok = CharTokenizer.from_text(corpus.train + corpus.heldout)
    picky = lambda b: torch.where((b.ids % 3 == 0)[:, :, None], latest(targets(names[0]))(b), uniform(b))
    pools = {}
    for split, text in (("discovery", corpus.train), ("heldout", corpus.heldout)):
        windows = sample_windows(text, T, n, np.random.default_rng(0))
        parts = [score_windows(picky(b)[:, None, None], b, list(names)) for b in
                 (char_batch(tok, windows[k:k + 128], "en") for k in range(0, len(windows), 128))]
        pools[split] = [torch.cat([getattr(p, f) for p in parts]).numpy() for f in ("score", "control", "baseline")]
    s, c, _ = pools["discovery"]
    return pools, float((s[:, 0].mean() - c[:, 0].mean()) / (1 - c[:, 0].mean()))
