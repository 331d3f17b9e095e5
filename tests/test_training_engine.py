"""The training engine's parts: the learning-rate schedule, batches, the whole-split loss."""
from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from model.transformer import ModelConfig, TransformerLM
from training.config import lr_at
from training.engine import full_loss, get_batch


def test_learning_rate_schedule():
    s = dict(lr=1e-3, min_lr=1e-4, warmup_iters=100, max_iters=2000)
    assert lr_at(0, s) == pytest.approx(1e-3 / 101)
    assert lr_at(99, s) == pytest.approx(1e-3 * 100 / 101)
    assert lr_at(100, s) == pytest.approx(1e-3)
    assert lr_at(1050, s) == pytest.approx((1e-3 + 1e-4) / 2)
    assert lr_at(2000, s) == pytest.approx(1e-4)


def test_batches_are_shifted_windows_from_the_generator():
    data = torch.arange(1000)
    x, y = get_batch(data, 16, 4, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert x.shape == y.shape == (4, 16)
    assert torch.equal(y, x + 1) and torch.equal(x[:, 1:], x[:, :-1] + 1)
    x2, _ = get_batch(data, 16, 4, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(x, x2)


def test_full_loss_is_the_mean_over_consecutive_windows():
    torch.manual_seed(0)
    s = {"block_size": 8}
    model = TransformerLM(ModelConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=16))
    data = torch.randint(10, (8 * 5 + 3,), generator=torch.Generator().manual_seed(1))  # 5 whole windows + spare
    got = full_loss(model, data, s, torch.device("cpu"), nullcontext())
    assert model.training  # full_loss puts the model back in training mode
    x, y = data[:40].view(5, 8), data[1:41].view(5, 8)
    assert got == pytest.approx(model.eval()(x, y)[1].item(), abs=1e-6)
