"""The training engine's parts: the typed settings, the learning-rate schedule, batches, the whole-split loss,
the optimizer, and the compile and dtype defaults."""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch

from charlens.data.errors import UsageError
from charlens.data.tokenizer import CharTokenizer
from charlens.model.checkpoint import load_checkpoint
from charlens.model.transformer import ModelConfig, TransformerLM
from charlens.training import runtime
from charlens.training.batches import ConsecutiveWindows, random_windows
from charlens.training.config import TrainSettings, lr_at
from charlens.training.engine import make_optimizer, train
from charlens.training.evaluation import full_loss
from charlens.training.runtime import resolve_compile, resolve_dtype

CPU = torch.device("cpu")


def test_learning_rate_schedule():
    s = TrainSettings.for_preset("small", lr=1e-3, min_lr=1e-4, warmup_iters=100, max_iters=2000)
    assert lr_at(0, s) == pytest.approx(1e-3 / 101)
    assert lr_at(99, s) == pytest.approx(1e-3 * 100 / 101)
    assert lr_at(100, s) == pytest.approx(1e-3)
    assert lr_at(1050, s) == pytest.approx((1e-3 + 1e-4) / 2)
    assert lr_at(2000, s) == pytest.approx(1e-4)


def test_batches_are_shifted_windows_from_the_generator():
    data = np.arange(1000, dtype=np.uint16)
    x, y = random_windows(data, 16, 4, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(y, x + 1) and torch.equal(x[:, 1:], x[:, :-1] + 1)
    x2, _ = random_windows(data, 16, 4, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    # the starts are the generator's draws, as the loop has always drawn them (resume keeps the stream)
    assert torch.equal(x[:, 0], torch.randint(1000 - 16, (4,), generator=torch.Generator().manual_seed(0)))


def test_full_loss_is_the_mean_over_consecutive_windows():
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=16))
    data = torch.randint(10, (8 * 5 + 3,), generator=torch.Generator().manual_seed(1))  # 5 whole windows + spare
    got = full_loss(model, ConsecutiveWindows(data.numpy().astype(np.uint8), 8), CPU, nullcontext())
    assert model.training  # full_loss puts the model back in training mode
    x, y = data[:40].view(5, 8), data[1:41].view(5, 8)
    assert got == pytest.approx(model.eval()(x, y)[1].item(), abs=1e-6)


def test_full_loss_batches_many_windows_at_once():
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=10, block_size=4, n_layer=1, n_head=2, n_embd=16))
    data = torch.randint(10, (4 * 9000 + 1,), generator=torch.Generator().manual_seed(1))  # 9000 windows: 5 batches, the last partial
    got = full_loss(model, ConsecutiveWindows(data.numpy().astype(np.uint16), 4), CPU, nullcontext())
    x, y = data[:-1].view(9000, 4), data[1:].view(9000, 4)
    assert got == pytest.approx(model.eval()(x, y)[1].item(), abs=1e-5)


def test_batches_split_by_rows_across_processes():
    data = np.arange(1000, dtype=np.uint16)
    whole, _ = random_windows(data, 16, 8, torch.Generator().manual_seed(3))
    halves = [random_windows(data, 16, 8, torch.Generator().manual_seed(3), slice(r * 4, r * 4 + 4))[0] for r in (0, 1)]
    assert torch.equal(torch.cat(halves), whole)


def test_fused_adamw_by_default_on_cpu():
    model = TransformerLM(ModelConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=16))
    s = TrainSettings.for_preset("tiny")
    assert make_optimizer(model, s, CPU).param_groups[0]["fused"] is True
    assert not make_optimizer(model, s, CPU, fused=False).param_groups[0]["fused"]


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


def test_settings_round_trip_through_a_checkpoints_train_args():
    s = TrainSettings.for_preset("tiny", max_iters=7, out="m.pt", compile=False)
    assert TrainSettings.from_dict(s.to_dict()) == s
    assert s.model_config(50) == ModelConfig(vocab_size=50, n_layer=2, n_head=2, n_embd=32, block_size=32, dropout=0.0)
    with pytest.raises(Exception):  # frozen: a run's settings never change under it
        s.lr = 1.0  # type: ignore[misc]


def test_settings_read_the_train_args_of_older_versions():
    """Older versions stored the corpus and writing flags beside the settings, and no timeline/snapshots: read
    as the same settings; a name no version wrote is refused in one line."""
    s = TrainSettings.for_preset("tiny", out="m.pt")
    legacy = {k: v for k, v in s.to_dict().items() if k not in ("timeline", "snapshots", "compile", "threads")}
    legacy.update(text="/data/x.txt", keep_niqqud=False, overwrite=True, lang=None)
    assert TrainSettings.from_dict(legacy) == s
    with pytest.raises(UsageError, match="^unknown setting 'lr_schedule'$"):
        TrainSettings.from_dict({**s.to_dict(), "lr_schedule": "linear"})
    with pytest.raises(UsageError, match=r"^--lr must be a number in \(0, 10\], got -1$"):
        TrainSettings.from_dict({**s.to_dict(), "lr": -1})


class CountingSource:
    """A batch source that is not a corpus: every sequence is a random letter run written twice (a stand-in
    for a synthetic task), counting what the loop asks of it."""

    identity = {"kind": "file", "path": "/synthetic", "sha256": "0" * 64}
    lang, heldout, prompt = "en", "abcdefgh" * 64, "a"

    def __init__(self, block_size: int, batch_size: int) -> None:
        self.T, self.B, self.asked = block_size, batch_size, {"train": 0, "val": 0, "whole": 0}

    def _sequences(self, n: int, generator: torch.Generator) -> torch.Tensor:
        half = torch.randint(1, 9, (n, (self.T + 2) // 2), generator=generator)
        return torch.cat([half, half], 1)[:, : self.T + 1]

    def batch(self, split, generator, rows=slice(None)):
        self.asked[split] += 1
        w = self._sequences(self.B, generator)[rows]
        return w[:, :-1], w[:, 1:]

    def whole(self, split):
        self.asked["whole"] += 1
        w = self._sequences(6, torch.Generator().manual_seed(99))
        return TensorWindows(w[:, :-1], w[:, 1:])

    def describe(self) -> str:
        return "synthetic: repeated letter runs"

    def metrics(self, model, device, autocast) -> dict[str, float]:
        return {}


class TensorWindows:
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.width = x, y, x.shape[1]

    def __len__(self) -> int:
        return len(self.x)

    def rows(self, start: int, stop: int):
        return self.x[start:stop], self.y[start:stop]


def test_any_batch_source_plugs_into_the_loop(tmp_path, capsys):
    """The loop only asks its BatchSource: 12 training batches, 2 evaluations x eval_iters per split, one
    whole split; the checkpoint names the source's identity and stores the settings."""
    s = TrainSettings.for_preset("tiny", max_iters=12, eval_interval=6, eval_iters=3, lr=1e-2, out=str(tmp_path / "m.pt"),
                                 timeline=False, sample_chars=5, compile=False, dtype="float32")
    source = CountingSource(s.block_size, s.batch_size)
    tokenizer = CharTokenizer(list("abcdefgh"))
    assert train(s, source, tokenizer) == 0
    assert source.asked == {"train": 12 + 2 * 3, "val": 2 * 3, "whole": 1}
    state = load_checkpoint(tmp_path / "m.pt")
    assert state["corpus"] == CountingSource.identity and state["iter"] == 12
    assert TrainSettings.from_dict(state["train_args"]) == s
    assert [r["kind"] for r in state["history"] if r["kind"] != "step"] == ["eval", "eval", "final"]
    assert "synthetic: repeated letter runs, vocabulary 9" in capsys.readouterr().out


def test_the_evaluation_batches_do_not_change_what_is_trained(tmp_path):
    """Evaluations draw from a generator of their own, in eval mode (no dropout): the small preset's eval_iters
    could be halved for speed without changing the main job's models. Dropout on, so a stray draw would show."""
    weights = []
    for eval_iters in (1, 3):
        s = TrainSettings.for_preset("tiny", max_iters=12, eval_interval=4, eval_iters=eval_iters, dropout=0.2,
                                     out=str(tmp_path / f"m{eval_iters}.pt"), timeline=False, sample_chars=0,
                                     compile=False, dtype="float32")
        assert train(s, CountingSource(s.block_size, s.batch_size), CharTokenizer(list("abcdefgh"))) == 0
        weights.append(load_checkpoint(tmp_path / f"m{eval_iters}.pt")["model"])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
