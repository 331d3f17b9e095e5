"""TransformerLM: observed attention is the attention used, causal, normalized; hooks act as documented."""
from __future__ import annotations

import pytest
import torch

from charlens.model.hooks import hook_point_name, hooks, run_with_cache
from charlens.model.transformer import PRESETS, ModelConfig, TransformerLM

torch.set_num_threads(1)


def tiny_model(**overrides) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(ModelConfig(vocab_size=20, **{**PRESETS["tiny"], **overrides})).eval()


def tokens(batch: int = 3, length: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randint(20, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_forward_returns_logits_and_loss_the_same_whether_or_not_the_pattern_is_observed():
    model, idx = tiny_model(), tokens()
    fast, loss_fast = model(idx, idx)  # as nanoGPT's forward: (logits, loss)
    seen = []
    with hooks(model, [(hook_point_name(l, "pattern"), seen.append) for l in range(2)]):
        slow, loss_slow = model(idx, idx)  # observed: the explicit softmax path
    assert torch.allclose(fast, slow, atol=1e-5, rtol=0)
    assert loss_fast.item() == pytest.approx(loss_slow.item(), abs=1e-5)
    assert [tuple(a.shape) for a in seen] == [(3, 2, 32, 32)] * 2  # (B, n_head, T, T) per layer
    assert model(idx)[1] is None and len(model(idx)) == 2


def test_attention_rows_sum_to_one_and_ignore_the_future():
    att = run_with_cache(tiny_model(), tokens(), names=("pattern",)).stack("pattern")
    assert att.shape == (3, 2, 2, 32, 32)  # (B, n_layer, n_head, T, T)
    assert torch.allclose(att.sum(-1), torch.ones(att.shape[:-1]), atol=1e-6)
    future = torch.triu(torch.ones(32, 32, dtype=torch.bool), diagonal=1)
    assert att[..., future].abs().max().item() == 0.0
    assert att[..., 0, 0].eq(1).all()  # the first position can only attend to itself


def test_changing_a_later_character_leaves_earlier_logits_unchanged():
    model, idx = tiny_model(), tokens(1)
    changed = idx.clone()
    changed[0, 20] = (changed[0, 20] + 1) % 20
    a, b = model(idx)[0], model(changed)[0]
    assert torch.equal(a[:, :20], b[:, :20])
    assert not torch.allclose(a[:, 20:], b[:, 20:])


def test_pattern_hook_point_replaces_the_attention_used():
    """Hand-set attention to the identity: each position then reads only its own value vector,
    so the attention output is c_proj(v) — a known answer."""
    model = tiny_model()
    attn = model.blocks[0].attn
    x = torch.randn(2, 10, 32, generator=torch.Generator().manual_seed(2))
    seen = {}
    attn.hook_v.register_forward_hook(lambda m, a, v: seen.setdefault("v", v))
    attn.hook_pattern.register_forward_hook(lambda m, a, att: torch.eye(att.size(-1)).expand_as(att))
    attn.hook_pattern.register_forward_hook(lambda m, a, att: seen.setdefault("pattern", att))  # after the replacement
    out = attn(x)  # an observed pattern takes the explicit path
    expected = attn.c_proj(seen["v"].transpose(1, 2).reshape(2, 10, 32))  # v is (B, nh, T, hs)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.equal(seen["pattern"], torch.eye(10).expand(2, 2, 10, 10))


def test_z_hook_point_can_ablate_one_head():
    model, idx = tiny_model(), tokens(1)
    seen = []

    def zero_head_0(y):
        seen.append(y.shape)
        y = y.clone()
        y[:, 0] = 0
        return y

    base = model(idx)[0]
    with hooks(model, [("blocks.1.attn.hook_z", zero_head_0)]):
        ablated = model(idx)[0]
    assert seen == [(1, 2, 32, 16)]  # (B, nh, T, hs)
    assert not torch.allclose(base, ablated)
    assert torch.equal(model(idx)[0], base)  # the hook is gone after the block
    # Zeroing head 0 equals removing its slice from the output projection.
    with torch.no_grad():
        model.blocks[1].attn.c_proj.weight[:, :16] = 0
    assert torch.allclose(model(idx)[0], ablated, atol=1e-6)


def test_unobserved_model_takes_the_sdpa_path_and_agrees_with_the_explicit_one():
    model, idx = tiny_model(), tokens(2)
    attn = model.blocks[0].attn
    assert not attn.hook_pattern.observed and not attn.hook_scores.observed
    fast = model(idx)[0]
    with hooks(model, [("blocks.0.attn.hook_scores", lambda s: None)]):
        assert attn.hook_scores.observed
        explicit = model(idx)[0]
    assert torch.allclose(fast, explicit, atol=1e-5)


def test_attention_runs_in_float32_under_cpu_bfloat16_autocast():
    # The CPU's fused attention kernel takes about 3x as long in bfloat16; the matmuls around it keep autocast's bfloat16.
    attn = tiny_model().blocks[0].attn
    shape = (2, attn.n_head, 16, attn.head_size)
    q, k, v = (torch.randn(shape, generator=torch.Generator().manual_seed(i)) for i in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = attn.attention(*(t.bfloat16() for t in (q, k, v)))
        assert attn.c_proj(torch.randn(2, attn.n_embd)).dtype == torch.bfloat16
    assert y.dtype == torch.float32
    exact = torch.nn.functional.scaled_dot_product_attention(*(t.bfloat16().float() for t in (q, k, v)), is_causal=True)
    torch.testing.assert_close(y, exact, rtol=0, atol=1e-6)  # float32 arithmetic on the bfloat16 inputs


def test_weights_are_tied_and_loss_is_cross_entropy():
    model, idx = tiny_model(), tokens()
    assert model.lm_head.weight is model.wte.weight
    logits, loss = model(idx[:, :-1], idx[:, 1:])
    manual = -torch.log_softmax(logits, -1).gather(-1, idx[:, 1:, None]).mean()
    assert loss.item() == pytest.approx(manual.item(), abs=1e-6)


def test_untrained_loss_is_near_uniform():
    model = tiny_model()
    _, loss = model(tokens(seed=1), tokens(seed=2))
    assert loss.item() == pytest.approx(torch.log(torch.tensor(20.0)).item(), abs=0.1)


def test_sequence_longer_than_the_context_is_refused():
    with pytest.raises(ValueError, match="exceeds block_size"):
        tiny_model()(tokens(1, 33))


@pytest.mark.parametrize("bad", [dict(n_embd=30, n_head=4), dict(n_layer=0), dict(dropout=1.0), dict(block_size=-1)])
def test_invalid_configs_are_refused(bad):
    with pytest.raises(ValueError):
        ModelConfig(vocab_size=20, **{**PRESETS["tiny"], **bad})


def test_generation_is_seeded_and_stays_in_the_vocabulary():
    model = tiny_model()
    start = torch.zeros(1, 1, dtype=torch.long)
    a = model.generate(start, 40, generator=torch.Generator().manual_seed(3))  # longer than block_size: cropped context
    b = model.generate(start, 40, generator=torch.Generator().manual_seed(3))
    assert a.shape == (1, 41) and torch.equal(a, b)
    assert 0 <= a.min() and a.max() < 20


def test_banned_tokens_are_never_sampled():
    model = tiny_model()
    start = torch.zeros(4, 1, dtype=torch.long)
    free = model.generate(start, 30, temperature=5.0, generator=torch.Generator().manual_seed(0))
    assert (free[:, 1:] == 0).any()  # a flat distribution over 20 tokens does sample token 0...
    banned = model.generate(start, 30, temperature=5.0, generator=torch.Generator().manual_seed(0), banned_tokens=(0,))
    assert not (banned[:, 1:] == 0).any()  # ...unless it is banned


def test_flops_per_token_matches_the_nanogpt_estimate():
    model = tiny_model()
    n = sum(p.numel() for p in model.parameters()) - 32 * 32  # without position embeddings
    assert model.flops_per_token() == 6 * n + 12 * 2 * 32 * 32
