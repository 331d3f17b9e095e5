"""Models for the live-view tests: a hand-set induction circuit made of weights (the page runs weights, not
hooks), a briefly trained small-preset model, and PyTorch's reference answers with float16-rounded weights."""
from __future__ import annotations

import copy
from typing import Iterable, Sequence

import numpy as np
import torch

from charlens.analysis.measures.ablation import ablated
from charlens.data.tokenizer import CharTokenizer
from charlens.model.hooks import run_with_cache
from charlens.model.transformer import PRESETS, ModelConfig, TransformerLM

HEBREW = ("בראשית ברא אלהים את השמים ואת הארץ. והארץ היתה תהו ובהו וחשך על פני תהום ורוח אלהים מרחפת על פני המים. "
          "ויאמר אלהים יהי אור ויהי אור. וירא אלהים את האור כי טוב ויבדל אלהים בין האור ובין החשך.\n")


def set_head(attn: torch.nn.Module, head: int, q_cols: Sequence[int], k_cols: Sequence[int], v_cols: Sequence[int],
             out_rows: Sequence[int], qk_gain: float, out_gain: float) -> None:
    """Make one head of weights: query n reads residual dim q_cols[n], key n reads k_cols[n] (so query i and key j
    score where those dims are both on), value n reads v_cols[n] and the output writes it to out_rows[n]."""
    C = attn.n_embd
    hs = C // attn.n_head
    W, P = attn.c_attn.weight, attn.c_proj.weight
    for part in range(3):
        W[part * C + head * hs: part * C + (head + 1) * hs] = 0.0
    P[:, head * hs:(head + 1) * hs] = 0.0
    for n, (q, k) in enumerate(zip(q_cols, k_cols)):
        W[head * hs + n, q], W[C + head * hs + n, k] = qk_gain, 1.0
    for n, (v, out) in enumerate(zip(v_cols, out_rows)):
        W[2 * C + head * hs + n, v], P[out, head * hs + n] = 1.0, out_gain


@torch.no_grad()
def handset_model(tok: CharTokenizer, block_size: int = 32, n_embd: int = 128, seed: int = 0) -> TransformerLM:
    """Random weights (2 layers x 2 heads) around an induction circuit made of weights. Residual dims: [0, T) the
    position (one-hot), then V dims for the character, then V for the previous character.
    L0H0, a previous-character head: query i reads position i shifted by one, key j reads position j; it writes
    its key's character into the previous-character dims. L1H0, an induction head: query reads the character,
    key the previous character; it writes its key's character into the character dims, outweighing the
    current character, so the model predicts what followed the last earlier occurrence of the current character
    (the output head is tied to the one-hot character embedding). Switching L0H0 off empties the previous-character
    dims: L1H0 loses its targets, its attention spreads out, and the prediction changes. (Row 0 attends to itself,
    so position 0 counts as preceded by its own character.)"""
    V, T, C = tok.vocab_size, block_size, n_embd
    if T + 2 * V > C or max(T, V) > C // 2:
        raise ValueError(f"n_embd {C} is too small for block {T} and vocabulary {V}")
    torch.manual_seed(seed)
    model = TransformerLM(ModelConfig(vocab_size=V, block_size=T, n_layer=2, n_head=2, n_embd=C)).eval()
    pos, char, prev = range(T), range(T, T + V), range(T + V, T + 2 * V)
    wte, wpe = model.wte.weight, model.wpe.weight
    wte.zero_()
    wpe.zero_()
    wte[range(V), list(char)] = 1.0
    wpe[range(T), list(pos)] = 1.0
    set_head(model.blocks[0].attn, 0, pos[1:], pos[:-1], char, prev, qk_gain=2.0, out_gain=1.0)
    set_head(model.blocks[1].attn, 0, char, prev, char, char, qk_gain=8.0, out_gain=4.0)
    return model


def trained_small_model(tok: CharTokenizer, text: str, steps: int = 30, batch_size: int = 8, seed: int = 0) -> TransformerLM:
    """The small preset trained a few dozen AdamW steps on `text`: weights far from their initialization.
    One torch thread: on the shared 2-core test machine two threads spin-wait for each other (7x slower)."""
    torch.manual_seed(seed)
    model = TransformerLM(ModelConfig(vocab_size=tok.vocab_size, **PRESETS["small"]))
    data = torch.from_numpy(tok.encode(text).astype(np.int64))
    T = model.config.block_size
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            starts = torch.randint(len(data) - T - 1, (batch_size,), generator=g)
            rows = data[starts[:, None] + torch.arange(T + 1)]
            _, loss = model(rows[:, :-1], rows[:, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def float16_rounded(model: TransformerLM) -> TransformerLM:
    """A copy whose weights went through float16, as the page receives them."""
    ref = copy.deepcopy(model)
    ref.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    return ref


@torch.no_grad()
def reference(model: TransformerLM, ids: np.ndarray, off: Iterable[tuple[int, int]] = ()) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's attention (L, H, T, T) and logits (T, V) for one text, with the given heads zero-ablated."""
    with ablated(model, list(off)):
        cache = run_with_cache(model, torch.from_numpy(ids.astype(np.int64))[None], names=("pattern",))
    return cache.stack("pattern")[0].numpy(), cache.logits[0].numpy()
