"""Hand-made attention built by the tests' own code from token ids, never with the detector functions: the
known answers of the label tests (content-blind heads, mixtures, single characters).

A component is a function CharBatch -> (attention (B, T, T), has (B, T) bool: rows where it has a key).
`mixture` puts components together as the decomposition models a mixture: on each row the components that
have a key share it in proportion to their weights (a row where none has one attends to itself)."""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from charlens.analysis.measures.detectors import CharBatch

Component = Callable[[CharBatch], tuple[torch.Tensor, torch.Tensor]]


def _profile(weights: torch.Tensor, T: int) -> torch.Tensor:
    """(T, T): row i spreads over keys i - o with the weights of the offsets o <= i, renormalized (row 0: itself)."""
    A = torch.zeros(T, T)
    for i in range(T):
        w = weights[: i + 1]
        A[i, i - torch.arange(len(w))] = w / w.sum() if w.sum() > 0 else 0.0
        if A[i].sum() == 0:
            A[i, i] = 1.0
    return A


def position_head(weights: Iterable[float]) -> Callable[[CharBatch], torch.Tensor]:
    """A content-blind head: mass on offset o proportional to weights[o] (offsets beyond the list: 0)."""
    w = torch.tensor(list(weights), dtype=torch.float32)
    made: dict[int, torch.Tensor] = {}  # by window length: built once

    def head(b: CharBatch) -> torch.Tensor:
        T = b.shape[1]
        if T not in made:
            made[T] = _profile(torch.nn.functional.pad(w, (0, max(0, T - len(w))))[:T], T)
        return made[T].expand(b.shape[0], -1, -1)
    return head


def window(k: int) -> Callable[[CharBatch], torch.Tensor]:
    """Uniform over offsets 0..k."""
    return position_head([1.0] * (k + 1))


def decay(scale: float, span: int = 64) -> Callable[[CharBatch], torch.Tensor]:
    """exp(-offset / scale)."""
    return position_head(torch.exp(-torch.arange(span) / scale).tolist())


def offset(k: int) -> Component:
    """All mass on the key k back (rows i >= k)."""
    def component(b: CharBatch) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = b.shape
        A = torch.diag(torch.ones(T - k), -k) if k < T else torch.zeros(T, T)
        return A.expand(B, T, T), (torch.arange(T) >= max(k, 1)).expand(B, T)
    return component


def latest_of(ids: Iterable[int]) -> Component:
    """All mass on the latest earlier key (j < i) whose token id is one of `ids`."""
    wanted = torch.tensor(sorted(ids))
    def component(b: CharBatch) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = b.shape
        hit = torch.isin(b.ids, wanted)
        pos = torch.where(hit, torch.arange(T), -1).cummax(1).values  # latest hit at or before t
        last = torch.cat([torch.full((B, 1), -1), pos[:, :-1]], 1)  # strictly before
        has = last >= 0
        A = torch.zeros(B, T, T)
        A[has.nonzero(as_tuple=True) + (last[has],)] = 1.0
        return A, has
    return component


def as_head(component: Component) -> Callable[[CharBatch], torch.Tensor]:
    """A component on its own (rows without a key attend to themselves)."""
    return mixture((1.0, component))


def mixture(*parts: tuple[float, Component]) -> Callable[[CharBatch], torch.Tensor]:
    """Components with weights; on each row, those with a key share it in proportion to their weights."""
    def head(b: CharBatch) -> torch.Tensor:
        B, T = b.shape
        total, share = torch.zeros(B, T, T), torch.zeros(B, T)
        for w, component in parts:
            A, has = component(b)
            total += w * A * has[..., None]
            share += w * has
        A = total / share.clamp_min(1e-12)[..., None]
        A[share == 0] = torch.eye(T).expand(B, T, T)[share == 0]
        return A
    return head


def ids_of(tokenizer, chars: str) -> list[int]:
    """The token ids of the characters (each must be in the vocabulary)."""
    return [int(tokenizer.encode(c)[0]) for c in chars]


def latest_same_class() -> Component:
    """All mass on the latest earlier key whose character class is the query's (class codes, not detectors)."""
    def component(b: CharBatch) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = b.shape
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        same = (b.classes[:, :, None] == b.classes[:, None, :]) & (j < i)
        last = torch.where(same, j, -1).amax(-1)
        has = last >= 0
        A = torch.zeros(B, T, T)
        A[has.nonzero(as_tuple=True) + (last[has],)] = 1.0
        return A, has
    return component


def english_heads() -> dict:
    """(layer, head) -> (what it is, tokenizer -> planted head); layer 0 windows, 1 decays, 2 offsets, 3 the rest."""
    spaces = lambda tok: latest_of(ids_of(tok, " \n"))
    heads: dict = {}
    for k in range(1, 9):
        heads[(0, k - 1)] = (f"window 0..{k}", lambda tok, k=k: window(k))
        heads[(1, k - 1)] = (f"decay {k}", lambda tok, k=k: decay(k))
        heads[(2, k - 1)] = (f"offset {k}", lambda tok, k=k: as_head(offset(k)))
    heads[(3, 0)] = ("0.5 offset 2 + 0.5 latest space", lambda tok: mixture((0.5, offset(2)), (0.5, spaces(tok))))
    heads[(3, 1)] = ("0.7 offset 1 + 0.3 latest space", lambda tok: mixture((0.7, offset(1)), (0.3, spaces(tok))))
    heads[(3, 2)] = ("thirds: offsets 1, 4 + latest space",
                     lambda tok: mixture((1 / 3, offset(1)), (1 / 3, offset(4)), (1 / 3, spaces(tok))))
    heads[(3, 3)] = ("0.4 self + 0.3 offset 3 + 0.3 latest space",
                     lambda tok: mixture((0.4, offset(0)), (0.3, offset(3)), (0.3, spaces(tok))))
    heads[(3, 4)] = ("latest e", lambda tok: as_head(latest_of(ids_of(tok, "e"))))
    heads[(3, 5)] = ("latest h", lambda tok: as_head(latest_of(ids_of(tok, "h"))))
    heads[(3, 6)] = ("latest vowel", lambda tok: as_head(latest_of(ids_of(tok, "aeiou"))))
    return heads


MIXTURES = {(3, 0): {"offset_2": 0.5, "recent_space": 0.5}, (3, 1): {"previous_char": 0.7, "recent_space": 0.3},
            (3, 2): {"previous_char": 1 / 3, "offset_4": 1 / 3, "recent_space": 1 / 3},
            (3, 3): {"self": 0.4, "offset_3": 0.3, "recent_space": 0.3}}


