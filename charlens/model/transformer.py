"""A nanoGPT-sized character-level transformer whose attention can be observed.

One file, plain PyTorch. Every tensor worth observing passes through a named `HookPoint`
(an identity module, the idea of TransformerLens's hook points): per layer
`blocks.{l}.attn.hook_q`, `hook_k`, `hook_v` (B, nh, T, hs), `hook_scores` and
`hook_pattern` (B, nh, T, T) and `hook_z`, the per-head outputs (B, nh, T, hs). Each name is
the hook point's module path (`model.get_submodule("blocks.0.attn.hook_pattern")`), the name
`model.hooks` installs hooks by and the key of `run_with_cache`'s cache: one spelling.
The parameters follow the same tree (`blocks.0.attn.c_attn.weight`); checkpoints written
before it used nanoGPT's `transformer.h.0...` and are renamed on load (`current_names`).
`forward` returns what nanoGPT's does, (logits, loss); attention is read through the hooks.
`CausalSelfAttention` uses `F.scaled_dot_product_attention` unless a hook observes the
scores or the pattern, so observing costs training nothing.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch.nn import functional as F



class HookPoint(nn.Module):
    """An identity module that names a tensor of the forward pass. Forward hooks registered on it
    (`model.hooks.hooks`, or `register_forward_hook` directly) see the tensor and may replace it."""

    @property
    def observed(self) -> bool:
        return bool(self._forward_hooks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@dataclass
class ModelConfig:
    vocab_size: int = 128
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


# Architecture presets. `small` trains in minutes on a 2-core CPU; `base` is the size
# that published character-level head analyses used, and wants a GPU.
PRESETS: dict[str, dict] = {
    "tiny": dict(n_layer=2, n_head=2, n_embd=32, block_size=32),
    "small": dict(n_layer=4, n_head=4, n_embd=128, block_size=128),
    "base": dict(n_layer=8, n_head=7, n_embd=448, block_size=512),
}


class CausalSelfAttention(nn.Module):
    causal_mask: torch.Tensor  # (1, 1, block_size, block_size) bool buffer

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.head_size = config.n_embd // config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        causal = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        self.register_buffer("causal_mask", causal.view(1, 1, config.block_size, config.block_size), persistent=False)
        # Named observation points (identity modules; see model.hooks).
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()  # (B, nh, T, hs)
        self.hook_scores, self.hook_pattern = HookPoint(), HookPoint()  # (B, nh, T, T), pre- and post-softmax
        self.hook_z = HookPoint()  # per-head outputs (B, nh, T, hs), before c_proj merges them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        split = lambda t: t.view(B, T, self.n_head, self.head_size).transpose(1, 2)
        q, k, v = (split(t) for t in self.c_attn(x).split(self.n_embd, dim=2))
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)  # (B, nh, T, hs)
        if self.hook_scores.observed or self.hook_pattern.observed:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            scores = self.hook_scores(scores.masked_fill(~self.causal_mask[:, :, :T, :T], float("-inf")))
            att = self.hook_pattern(F.softmax(scores, dim=-1))  # (B, nh, T, T), zero on future keys
            y = self.attn_dropout(att) @ v
        else:
            y = self.attention(q, k, v)
        y = self.hook_z(y)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal attention through PyTorch's fused kernel, (B, nh, T, hs) in and out. Under bfloat16
        autocast on a CPU it runs in float32: the CPU kernel takes about 3x as long in bfloat16 (docs/benchmarks.md)."""
        dropout = self.dropout if self.training else 0.0
        if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), dropout_p=dropout, is_causal=True)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


# Parameter names of checkpoints written before the blocks were `blocks` (nanoGPT's), in the order they are renamed.
LEGACY_NAMES = (("transformer.h.", "blocks."), ("transformer.", ""))


def current_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with nanoGPT's names (`transformer.h.0.attn.c_attn.weight`, `transformer.wte.weight`) under
    this model's (`blocks.0.attn.c_attn.weight`, `wte.weight`); current names pass unchanged, order kept."""
    def rename(key: str) -> str:
        for old, new in LEGACY_NAMES:
            if isinstance(key, str) and key.startswith(old):  # a damaged file's keys may be anything
                return new + key[len(old):]
        return key
    return {rename(k): v for k, v in state.items()}


class TransformerLM(nn.Module):
    """Embeddings, blocks, final LayerNorm and the tied output head; module paths are the hook names
    (blocks.{l}.attn.hook_pattern) and the parameter names (blocks.{l}.attn.c_attn.weight)."""

    blocks: Sequence[Block]  # an nn.ModuleList of Blocks

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])  # type: ignore[assignment]
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # scaled init of residual projections (GPT-2)
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Logits for every position (B, T, V) and the mean loss if targets are given, as nanoGPT's forward
        (which keeps only the last position's logits when there are no targets; the analysis needs them all).
        Attention: `model.hooks.run_with_cache(model, idx).stack("pattern")`."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} exceeds block_size {self.config.block_size}")
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def flops_per_token(self) -> float:
        """Training FLOPs per token (6N plus attention), as in the PaLM appendix / nanoGPT."""
        c = self.config
        return 6 * self.num_params() + 12 * c.n_layer * c.n_embd * c.block_size

    @torch.no_grad()
    def generate(
        self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: Optional[int] = None,
        generator: Optional[torch.Generator] = None, banned_tokens: tuple[int, ...] = (),
    ) -> torch.Tensor:
        """Sample `max_new_tokens` more tokens; `banned_tokens` are never sampled (e.g. the unknown token)."""
        for _ in range(max_new_tokens):
            idx_cond = idx[:, -self.config.block_size :]
            logits, _ = self(idx_cond)
            logits = logits[:, -1, :] / temperature
            logits[:, list(banned_tokens)] = -float("inf")
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("inf")
            probs = F.softmax(logits, dim=-1)
            idx = torch.cat((idx, torch.multinomial(probs, num_samples=1, generator=generator)), dim=1)
        return idx
