"""The training engine's parts: the learning-rate schedule, batches, the whole-split loss, the optimizer,
and the compile and dtype defaults."""
from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from charlens.model.transformer import ModelConfig, TransformerLM
from charlens.training import runtime
from charlens.training.config import lr_at
from charlens.training.engine import full_loss, get_batch, make_optimizer
from charlens.training.runtime import resolve_compile, resolve_dtype


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


def test_full_loss_batches_many_windows_at_once():
    torch.manual_seed(0)
    s = {"block_size": 4}
    model = TransformerLM(ModelConfig(vocab_size=10, block_size=4, n_layer=1, n_head=2, n_embd=16))
    data = torch.randint(10, (4 * 9000 + 1,), generator=torch.Generator().manual_seed(1))  # 9000 windows: 5 batches, the last partial
    got = full_loss(model, data, s, torch.device("cpu"), nullcontext())
    x, y = data[:-1].view(9000, 4), data[1:].view(9000, 4)
    assert got == pytest.approx(model.eval()(x, y)[1].item(), abs=1e-5)


def test_batches_split_by_rows_across_processes():
    data = torch.arange(1000)
    whole, _ = get_batch(data, 16, 8, torch.Generator().manual_seed(3), torch.device("cpu"))
    halves = [get_batch(data, 16, 8, torch.Generator().manual_seed(3), torch.device("cpu"), slice(r * 4, r * 4 + 4))[0]
              for r in (0, 1)]
    assert torch.equal(torch.cat(halves), whole)


def test_fused_adamw_by_default_on_cpu():
    model = TransformerLM(ModelConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=16))
    s = dict(weight_decay=0.1, lr=1e-3, beta1=0.9, beta2=0.99)
    assert make_optimizer(model, s, torch.device("cpu")).param_groups[0]["fused"] is True
    assert not make_optimizer(model, s, torch.device("cpu"), fused=False).param_groups[0]["fused"]


def test_compile_and_dtype_defaults(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_compile(True, cpu, 10) and not resolve_compile(False, cuda, 10**6)
    assert resolve_compile(None, cuda, 10)
    monkeypatch.setattr(runtime, "compiler_available", lambda: True)
    assert not resolve_compile(None, cpu, runtime.CPU_COMPILE_MIN_STEPS - 1)
    assert resolve_compile(None, cpu, runtime.CPU_COMPILE_MIN_STEPS)
    monkeypatch.setattr(runtime, "compiler_available", lambda: False)
    assert not resolve_compile(None, cpu, 10**6)  # no C++ compiler: eager
    monkeypatch.setattr(runtime, "native_bf16_cpu", lambda: False)
    assert resolve_dtype("auto", cpu) == "float32" and resolve_dtype("bfloat16", cpu) == "bfloat16"
    monkeypatch.setattr(runtime, "native_bf16_cpu", lambda: True)
    assert resolve_dtype("auto", cpu) == "bfloat16" and resolve_dtype("float32", cpu) == "float32"


def test_a_failed_compile_falls_back_to_eager_with_one_warning(text_file, tmp_path, monkeypatch, capsys):
    """Inductor needs a working C++ compiler, and a Ctrl-C during its warm-up kills that compiler: either
    way the run continues without compiling, with exactly the weights an eager run gets."""
    from charlens import train
    from torch._dynamo.exc import BackendCompilerFailed

    def broken_compile(module):
        def forward(*args, **kwargs):
            raise BackendCompilerFailed(broken_compile, RuntimeError("g++: fatal error: killed"), None)
        return forward

    common = ["--text", str(text_file), "--preset", "tiny", "--max-iters", "12", "--eval-interval", "6",
              "--sample-chars", "0"]
    assert train.main([*common, "--out", str(tmp_path / "eager.pt"), "--no-compile"]) == 0
    monkeypatch.setattr(torch, "compile", broken_compile)
    assert train.main([*common, "--out", str(tmp_path / "fallback.pt"), "--compile"]) == 0
    err = capsys.readouterr()
    assert (err.out + err.err).count("warning: torch.compile failed (") == 1 and "Traceback" not in err.err
    eager, fallback = (torch.load(tmp_path / f"{n}.pt", weights_only=True)["model"] for n in ("eager", "fallback"))
    assert all(torch.equal(eager[k], fallback[k]) for k in eager)
