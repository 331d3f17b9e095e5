"""The trainer end to end on a tiny model: outputs, resume determinism, Ctrl-C, bad input, non-finite loss."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from charlens import train
from charlens.model.checkpoint import save_checkpoint
from charlens.model.transformer import TransformerLM
from charlens.training.engine import LOG_EVERY

ROOT = Path(__file__).resolve().parents[1]
# Tiny models run fastest on one thread, and a second thread spin-waits badly on a shared 2-core CPU.
torch.set_num_threads(1)
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def tiny_args(text_file: Path, out: Path, *extra: str) -> list[str]:
    return ["--text", str(text_file), "--preset", "tiny", "--out", str(out), "--sample-chars", "0", *extra]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_training_state(a: dict, b: dict) -> None:
    assert a["iter"] == b["iter"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for k in pa:
            assert torch.equal(pa[k], pb[k]), k
    assert torch.equal(a["rng"]["batch"], b["rng"]["batch"])
    without_timing = lambda h: [{k: v for k, v in r.items() if k != "ms"} for r in h]
    assert without_timing(a["history"]) == without_timing(b["history"])


def test_tiny_run_writes_checkpoint_log_and_plot_and_learns(text_file, tmp_path, capsys):
    out = tmp_path / "ckpts" / "m.pt"
    began = time.perf_counter()
    assert train.main(tiny_args(text_file, out, "--max-iters", "60", "--sample-chars", "40")) == 0
    wall_ms = (time.perf_counter() - began) * 1e3
    state = load(out)  # loadable with weights_only=True: plain tensors and containers only
    assert state["iter"] == 60 and state["corpus"]["kind"] == "file"
    assert state["model_config"]["n_layer"] == 2 and state["model_config"]["vocab_size"] == len(state["tokenizer"]["chars"]) + 1
    records = [json.loads(line) for line in (tmp_path / "ckpts" / "m.log.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["iter"] for r in evals] == [20, 40, 60]
    final = records[-1]
    assert final["kind"] == "final" and final["val_bits_per_char"] == pytest.approx(final["val_loss"] / math.log(2))
    # Where the time went: every record says how long it took, and the parts fit inside the run.
    assert all(r["ms"] > 0 for r in records)
    timed = sum(r["ms"] * (LOG_EVERY if r["kind"] == "step" else 1) for r in records)
    assert 0.05 * wall_ms < timed < wall_ms  # (a tiny run is mostly start-up, saving and plotting)
    # Learned something: below the loss of a uniform guess over the vocabulary.
    assert final["val_loss"] < math.log(state["model_config"]["vocab_size"]) - 0.5
    assert (tmp_path / "ckpts" / "m.loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "ckpts").glob("*.tmp"))
    printed = capsys.readouterr().out
    assert "validation loss" in printed and "sample:" in printed


def test_default_name_is_the_file_stem(text_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train.main(["--text", str(text_file), "--preset", "tiny", "--max-iters", "2", "--sample-chars", "0"]) == 0
    assert (tmp_path / "checkpoints" / "kjv_part.pt").is_file()


# Mid-interval and exactly at an evaluation step; in float32 and under bfloat16 autocast (emulated on CPUs without it).
@pytest.mark.parametrize("stop_at, dtype", [(7, "float32"), (20, "bfloat16")])
def test_resume_is_bit_identical_to_an_uninterrupted_run(text_file, tmp_path, stop_at, dtype):
    extra = ("--max-iters", "30", "--dropout", "0.1", "--eval-interval", "10",  # dropout: the global RNG matters too
             "--dtype", dtype)
    full, part = tmp_path / "full.pt", tmp_path / "part.pt"
    assert train.main(tiny_args(text_file, full, *extra)) == 0
    assert train.main(tiny_args(text_file, part, *extra), stop_at=stop_at) == train.INTERRUPTED
    assert load(part)["iter"] == stop_at
    assert train.main(["--resume", str(part), "--sample-chars", "0"]) == 0
    assert_same_training_state(load(full), load(part))


def test_resume_with_compile_is_bit_identical_too(text_file, tmp_path):
    """--compile (the default for long runs) and the fused AdamW (the default on CPU) keep --resume bit-exact."""
    extra = ("--max-iters", "8", "--dropout", "0.1", "--eval-interval", "4", "--compile")
    full, part = tmp_path / "full.pt", tmp_path / "part.pt"
    assert train.main(tiny_args(text_file, full, *extra)) == 0
    assert train.main(tiny_args(text_file, part, *extra), stop_at=3) == train.INTERRUPTED
    assert train.main(["--resume", str(part), "--sample-chars", "0"]) == 0
    assert load(full)["optimizer"]["param_groups"][0]["fused"] is True
    assert_same_training_state(load(full), load(part))


def test_raising_max_iters_extends_a_finished_run(text_file, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert train.main(tiny_args(text_file, out, "--max-iters", "20")) == 0
    before = load(out)
    assert train.main(["--resume", str(out), "--max-iters", "20"]) == 2  # nothing left to do
    assert "raise --max-iters" in capsys.readouterr().err
    assert train.main(["--resume", str(out), "--max-iters", "30", "--sample-chars", "0"]) == 0
    after = load(out)
    assert after["iter"] == 30 and after["train_args"]["max_iters"] == 30
    assert not torch.equal(after["model"]["lm_head.weight"], before["model"]["lm_head.weight"])


def test_resume_refuses_changed_architecture(text_file, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert train.main(tiny_args(text_file, out, "--max-iters", "20")) == 0
    capsys.readouterr()
    assert train.main(["--resume", str(out), "--max-iters", "30", "--n-layer", "3"]) == 2
    err = capsys.readouterr().err
    assert "--n-layer 3 (checkpoint: 2)" in err and len(err.strip().splitlines()) == 1


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(text_file, tmp_path):
    out = tmp_path / "m.pt"
    proc = subprocess.Popen([sys.executable, "train.py", *tiny_args(text_file, out, "--max-iters", "1000000")],
                            cwd=ROOT, env=ONE_THREAD, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_line = proc.stdout.readline()  # printed just before the first step
    assert "parameters" in first_line
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == train.INTERRUPTED, stderr
    assert "Traceback" not in stderr and "interrupted after step" in stderr
    state = load(out)
    assert 1 <= state["iter"] < 1_000_000
    assert state["rng"]["batch"].dtype == torch.uint8


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(text_file, tmp_path, monkeypatch, capsys):
    reference = tmp_path / "ref.pt"
    extra = ("--max-iters", "40", "--eval-interval", "10")
    assert train.main(tiny_args(text_file, reference, *extra), stop_at=20) == train.INTERRUPTED

    forward = TransformerLM.forward
    calls = []

    def poisoned(self, idx, targets=None):
        logits, loss = forward(self, idx, targets)
        if self.training:
            calls.append(1)
            if len(calls) == 25:  # the 25th training step
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(TransformerLM, "forward", poisoned)
    out = tmp_path / "m.pt"
    assert train.main(tiny_args(text_file, out, *extra)) == 1
    err = capsys.readouterr().err
    assert "training loss at step 25 is nan" in err and str(out) in err
    kept = load(out)
    assert kept["iter"] == 20
    for k, v in load(reference)["model"].items():
        assert torch.equal(kept["model"][k], v)


@pytest.mark.parametrize("argv, message", [
    (["--lang", "en", "--n-embd", "30", "--n-head", "4"], "divisible"),
    (["--lang", "en", "--n-layer", "0"], "--n-layer must be an integer in [1, 256], got 0"),
    (["--lang", "en", "--batch-size", "-1"], "--batch-size must be an integer in [1, 65,536], got -1"),
    (["--lang", "en", "--lr", "-0.1"], "--lr must be a number in (0, 10], got -0.1"),
    (["--lang", "en", "--lr", "nan"], "--lr must be a number in (0, 10], got nan"),
    (["--lang", "en", "--threads", "0"], "--threads must be an integer in [1, 1,024], got 0"),
    (["--lang", "en", "--weight-decay", "nan"], "--weight-decay must be a number in [0, 100], got nan"),
    (["--lang", "en", "--min-lr=-1e-4"], "--min-lr must be a number in [0, 10], got -0.0001"),
    (["--lang", "en", "--seed", str(2**70)], "--seed must be an integer in [0, 9,223,372,036,854,775,806], got 1180591620717411303424"),
    (["--lang", "en", "--dropout", "1.5"], "--dropout must be a number in [0, 1), got 1.5"),
    (["--lang", "en", "--keep-niqqud"], "--keep-niqqud only applies"),
    (["--lang", "he", "--drop-vowels"], "--drop-vowels only applies to --lang en"),
    (["--lang", "he", "--device", "cuda:7x"], "--device"),
    ([], "choose a corpus"),
    (["--text", "/nonexistent/corpus.txt"], "not found"),
    (["--resume", "/nonexistent/m.pt"], "checkpoint not found"),
])
def test_bad_arguments_fail_with_one_line_before_any_work(argv, message, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert train.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_resume_refuses_an_unusable_tokenizer_with_one_line(text_file, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert train.main(tiny_args(text_file, out, "--max-iters", "2")) == 0
    state = load(out)
    state["tokenizer"] = {"kind": "bpe", "merges": []}
    save_checkpoint(state, out)  # with a matching content hash: the tokenizer itself is what is wrong
    capsys.readouterr()
    assert train.main(["--resume", str(out), "--max-iters", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no usable tokenizer" in err[0] and "'bpe'" in err[0], err


def test_ctrl_c_while_preparing_exits_with_one_line(tmp_path, monkeypatch, capsys):
    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "bible_corpus", interrupted)
    out = tmp_path / "m.pt"
    assert train.main(["--lang", "en", "--out", str(out)]) == train.INTERRUPTED
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["interrupted before training; nothing was written"]
    assert not out.exists()


def test_unwritable_output_path_fails_before_training(text_file, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert train.main(tiny_args(text_file, blocker / "m.pt")) == 2
    assert "cannot write the checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--lang", "fr"], ["--lang", "en", "--text", "x.txt"], ["--lang", "en", "--n-layer", "two"]])
def test_argparse_errors_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("train.py: error: "), err


def test_keep_niqqud_trains_on_pointed_hebrew_under_its_own_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train.main(["--lang", "he", "--keep-niqqud", "--preset", "tiny", "--max-iters", "1", "--sample-chars", "0"]) == 0
    state = load(tmp_path / "checkpoints" / "he_niqqud.pt")
    assert state["corpus"]["keep_niqqud"] is True
    assert "\u05b8" in state["tokenizer"]["chars"]  # qamats is in the vocabulary


def test_drop_vowels_trains_on_english_without_vowels_and_resumes_on_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train.main(["--lang", "en", "--drop-vowels", "--preset", "tiny", "--max-iters", "1", "--sample-chars", "0"]) == 0
    out = tmp_path / "checkpoints" / "en_novowel.pt"
    state = load(out)
    assert state["corpus"]["drop_vowels"] is True and state["corpus"]["lang"] == "en"
    assert not set(state["tokenizer"]["chars"]) & set("aeiouAEIOU") and "y" in state["tokenizer"]["chars"]
    assert train.main(["--resume", str(out), "--max-iters", "2", "--sample-chars", "0"]) == 0  # finds its corpus again
    assert load(out)["iter"] == 2 and load(out)["corpus"] == state["corpus"]
