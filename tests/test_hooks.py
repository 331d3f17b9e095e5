"""model.hooks: named hook points, scoped and permanent hooks, run_with_cache."""
import pytest
import torch

from beyond_helpers import previous_char_pattern, set_head_pattern, tiny_model
from charlens.model.hooks import ACTIVATION_NAMES, add_hook, hook_points, hooks, run_with_cache


def test_patterns_equal_return_attention_exactly():
    model = tiny_model(n_layer=3, n_head=2)
    idx = torch.randint(0, 12, (3, 20), generator=torch.Generator().manual_seed(1))
    cache = run_with_cache(model, idx)
    logits, _, attention = model(idx, return_attention=True)
    assert torch.equal(cache.stack("pattern"), attention)
    assert torch.equal(cache.logits, logits)
    assert cache.stack("q").shape == (3, 3, 2, 20, 8)
    assert cache["blocks.1.attn.scores"].shape == (3, 2, 20, 20)


def test_cache_is_the_forwards_own_math_and_leaves_no_hooks():
    model = tiny_model()
    idx = torch.randint(0, 12, (2, 10), generator=torch.Generator().manual_seed(2))
    cache = run_with_cache(model, idx)
    q, k, v = cache.layer(1, "q"), cache.layer(1, "k"), cache.layer(1, "v")
    scores = (q @ k.transpose(-2, -1)) / 8 ** 0.5  # head size 8
    assert torch.allclose(scores.tril(), cache.layer(1, "scores").tril(), atol=1e-6)
    assert torch.allclose(torch.softmax(cache.layer(1, "scores"), -1), cache.layer(1, "pattern"), atol=1e-6)
    assert torch.allclose(cache.layer(1, "pattern") @ v, cache.layer(1, "z"), atol=1e-6)
    # layer 0's q is c_attn of ln_1(token + position embedding)
    emb = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(10))
    q0 = model.blocks[0].attn.c_attn(model.blocks[0].ln_1(emb))[..., :16].view(2, 10, 2, 8).transpose(1, 2)
    assert torch.allclose(cache.layer(0, "q"), q0, atol=1e-6)
    assert not any(point.observed for point in hook_points(model).values())


def test_a_planted_pattern_still_runs_and_is_what_is_recorded():
    model = tiny_model()
    set_head_pattern(model, 0, 1, previous_char_pattern)
    idx = torch.randint(0, 12, (1, 8), generator=torch.Generator().manual_seed(3))
    cache = run_with_cache(model, idx)
    assert torch.equal(cache.layer(0, "pattern")[0, 1], previous_char_pattern(8))
    assert len(model.blocks[0].attn.hook_pattern._forward_hooks) == 1  # the planted hook stays, the recorder is gone
    _, _, attention = model(idx, return_attention=True)
    assert torch.equal(cache.stack("pattern"), attention)


def test_hooks_compose_in_order_and_are_removed_even_on_error():
    model = tiny_model()
    idx = torch.zeros(1, 5, dtype=torch.long)
    order = []
    first = lambda z: order.append("first") or z * 0
    second = lambda z: order.append(("second", float(z.detach().abs().sum())))
    with pytest.raises(RuntimeError):
        with hooks(model, [("blocks.0.attn.hook_z", first), ("blocks.0.attn.hook_z", second)]):
            model(idx)
            raise RuntimeError("inside")
    assert order == ["first", ("second", 0.0)]  # the second hook saw the first one's replacement
    assert not model.blocks[0].attn.hook_z.observed


def test_unknown_names_are_clear_errors():
    model = tiny_model()
    with pytest.raises(KeyError, match="blocks.0.attn.hook_pattern"):
        add_hook(model, "blocks.0.attn.pattern", lambda t: t)
    cache = run_with_cache(model, torch.zeros(1, 4, dtype=torch.long), names=("pattern",))
    with pytest.raises(KeyError, match="blocks.<layer>.attn"):
        cache["blocks.0.attn.q"]
    assert set(ACTIVATION_NAMES) == {"q", "k", "v", "scores", "pattern", "z"}
