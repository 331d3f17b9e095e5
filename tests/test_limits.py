"""model/limits.py: the shapes and memory of a model known without building it, and ranges."""
from __future__ import annotations

import math

import pytest

from charlens.model.limits import Range, model_bytes, parameter_shapes, state_shapes, training_bytes
from charlens.model.transformer import PRESETS, ModelConfig, TransformerLM


@pytest.mark.parametrize("config", [
    ModelConfig(vocab_size=12, **PRESETS["tiny"]),
    ModelConfig(vocab_size=65, bias=True, **PRESETS["small"]),
    ModelConfig(vocab_size=5, block_size=17, n_layer=3, n_head=3, n_embd=48, dropout=0.1),
])
def test_shapes_and_bytes_match_the_real_model(config):
    model = TransformerLM(config)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == state_shapes(config)
    assert list(state_shapes(config)) == list(model.state_dict())  # same order (the optimizer's order depends on it)
    assert [tuple(p.shape) for p in model.parameters()] == parameter_shapes(config)
    tensors = list(model.parameters()) + list(model.buffers())
    assert model_bytes(config) == sum(t.numel() * t.element_size() for t in tensors)


def test_training_bytes_counts_weights_optimizer_masks_and_activations():
    c = ModelConfig(vocab_size=65, **PRESETS["small"])
    n_params = sum(math.prod(s) for s in parameter_shapes(c))
    activations = 4 * 32 * 128 * (4 * 24 * 128 + 3 * 65)
    assert training_bytes(c, batch_size=32) == 16 * n_params + 4 * 128**2 + activations
    with_dropout = ModelConfig(vocab_size=65, dropout=0.1, **PRESETS["small"])
    assert training_bytes(with_dropout, 32) - training_bytes(c, 32) == 4 * 32 * 128 * 4 * (4 * 4 * 128)


@pytest.mark.parametrize("allowed, value, problem", [
    (Range(1, 8192), 8192, None),
    (Range(1, 8192), 8193, "must be an integer in [1, 8,192], got 8193"),
    (Range(1, 8192), 3.0, "must be an integer in [1, 8,192], got 3.0"),
    (Range(1, 8192), True, "must be an integer in [1, 8,192], got True"),
    (Range(1, 8192), "7", "must be an integer in [1, 8,192], got '7'"),
    (Range(0, 1, float, hi_open=True), 0, None),
    (Range(0, 1, float, hi_open=True), 1.0, "must be a number in [0, 1), got 1.0"),
    (Range(0, 10, float, lo_open=True), float("nan"), "must be a number in (0, 10], got nan"),
    (Range(0, 1e6, float), 2.5e5, None),
])
def test_range_problems(allowed, value, problem):
    assert allowed.problem(value) == problem
