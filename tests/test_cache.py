import pytest
import torch

from analysis.cache import run_with_cache
from beyond_helpers import previous_char_pattern, set_head_pattern, tiny_model


def test_patterns_equal_return_attention_exactly():
    model = tiny_model(n_layer=3, n_head=2)
    idx = torch.randint(0, 12, (3, 20), generator=torch.Generator().manual_seed(1))
    cache = run_with_cache(model, idx)
    logits, _, attention = model(idx, return_attention=True)
    assert torch.equal(cache.stack("pattern"), attention)
    assert torch.equal(cache.logits, logits)
    assert cache.stack("q").shape == (3, 3, 2, 20, 8)
    assert cache["blocks.1.attn.input"].shape == (3, 20, 16)


def test_cache_is_consistent_with_the_modules_own_math_and_leaves_no_hooks():
    model = tiny_model()
    idx = torch.randint(0, 12, (2, 10), generator=torch.Generator().manual_seed(2))
    cache = run_with_cache(model, idx)
    attn = model.blocks[1].attn
    q, k, v = cache.layer(1, "q"), cache.layer(1, "k"), cache.layer(1, "v")
    assert torch.equal(attn.pattern(q, k), cache.layer(1, "pattern"))
    assert torch.allclose(cache.layer(1, "pattern") @ v, cache.layer(1, "z"), atol=1e-6)
    # the input is ln_1 of the residual stream: layer 0's input is ln_1(token + position embedding)
    emb = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(10))
    assert torch.allclose(cache.layer(0, "input"), model.blocks[0].ln_1(emb), atol=1e-6)
    for block in model.blocks:
        assert block.attn.pattern_hook is None and block.attn.head_output_hook is None
        assert not block.attn._forward_pre_hooks


def test_existing_pattern_hook_still_runs_and_is_what_is_recorded():
    model = tiny_model()
    set_head_pattern(model, 0, 1, previous_char_pattern)
    user_hook = model.blocks[0].attn.pattern_hook
    idx = torch.randint(0, 12, (1, 8), generator=torch.Generator().manual_seed(3))
    cache = run_with_cache(model, idx)
    assert torch.equal(cache.layer(0, "pattern")[0, 1], previous_char_pattern(8))
    assert model.blocks[0].attn.pattern_hook is user_hook
    _, _, attention = model(idx, return_attention=True)
    assert torch.equal(cache.stack("pattern"), attention)


def test_unknown_name_is_a_clear_error():
    cache = run_with_cache(tiny_model(), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(KeyError, match="blocks.<layer>.attn"):
        cache["blocks.0.attn.scores"]
