"""model.hooks: one name per observation point (module path = hook name = cache key), scoped and permanent hooks,
run_with_cache."""
import pytest
import torch

from beyond_helpers import previous_char_pattern, set_head_pattern, tiny_model
from charlens.model.hooks import ACTIVATION_NAMES, add_hook, hook_point_name, hook_points, hooks, run_with_cache


def test_a_hook_points_name_is_its_module_path_and_its_cache_key():
    model = tiny_model(n_layer=3, n_head=2)
    names = {hook_point_name(l, n) for l in range(3) for n in ACTIVATION_NAMES}
    assert set(hook_points(model)) == names == {k for k, m in model.named_modules() if k.split(".")[-1].startswith("hook_")}
    assert model.get_submodule("blocks.2.attn.hook_pattern") is model.blocks[2].attn.hook_pattern
    cache = run_with_cache(model, torch.zeros(1, 5, dtype=torch.long))
    assert set(cache.store) == names
    assert cache["blocks.1.attn.hook_scores"].shape == (1, 2, 5, 5)
    params = {name for name, _ in model.named_parameters()}
    assert "blocks.0.attn.c_attn.weight" in params and not any(p.startswith("transformer.") for p in params)


def test_patterns_are_the_softmax_of_the_models_own_q_and_k_and_logits_the_forwards():
    model = tiny_model(n_layer=3, n_head=2)
    idx = torch.randint(0, 12, (3, 20), generator=torch.Generator().manual_seed(1))
    cache = run_with_cache(model, idx)
    logits, _ = model(idx)  # unobserved: the fused kernel
    assert torch.allclose(cache.logits, logits, atol=1e-5)
    q, k = cache.stack("q"), cache.stack("k")  # (B, L, nh, T, hs)
    assert q.shape == (3, 3, 2, 20, 8)
    scores = (q @ k.transpose(-2, -1) / 8 ** 0.5).masked_fill(~torch.ones(20, 20, dtype=torch.bool).tril(), float("-inf"))
    assert torch.allclose(cache.stack("pattern"), torch.softmax(scores, -1), atol=1e-6)


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
    emb = model.wte(idx) + model.wpe(torch.arange(10))
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
    assert torch.equal(run_with_cache(model, idx, names=("pattern",)).stack("pattern"), cache.stack("pattern"))


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


def test_unknown_names_are_clear_errors_in_the_one_spelling():
    model = tiny_model()
    with pytest.raises(KeyError, match=r"blocks.<layer>.attn.hook_<q\|k\|v\|scores\|pattern\|z>"):
        add_hook(model, "blocks.0.attn.pattern", lambda t: t)
    with pytest.raises(KeyError, match="blocks.0.attn.hook_pattern"):
        add_hook(model, "transformer.h.0.attn.hook_pattern", lambda t: t)
    cache = run_with_cache(model, torch.zeros(1, 4, dtype=torch.long), names=("pattern",))
    with pytest.raises(KeyError, match=r"it holds blocks.<0..1>.attn.<hook_pattern>"):
        cache["blocks.0.attn.hook_q"]
    assert set(ACTIVATION_NAMES) == {"q", "k", "v", "scores", "pattern", "z"}
