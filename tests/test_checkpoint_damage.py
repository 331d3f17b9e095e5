"""Damaged checkpoints (issue #14, class 2): random and bit-flipped files, fields of the wrong type,
range or shape, NaN weights. Every one is refused with one line naming the file and the field, by
load_checkpoint, by train.py --resume and by analyze.py; none gives a traceback or loads silently."""
from __future__ import annotations

import copy
import io
import shutil
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from charlens import analyze
from charlens import train
from charlens.data.corpora import bible_corpus
from charlens.model import checkpoint_schema
from charlens.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from charlens.model.checkpoint_schema import HASH_KEY

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real, resumable tiny checkpoint (interrupted after 2 of 4 steps) and its --text corpus beside it."""
    folder = tmp_path_factory.mktemp("trained")
    text = folder / "corpus.txt"
    text.write_text(bible_corpus("en").train[:40_000], encoding="utf-8")
    out = folder / "m.pt"
    argv = ["--text", str(text), "--preset", "tiny", "--max-iters", "4", "--eval-interval", "2", "--out", str(out),
            "--sample-chars", "0"]
    assert train.main(argv, stop_at=2) == train.INTERRUPTED
    return out


def plain(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same(a, b) -> None:
    """Deep equality of loaded checkpoints (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_random_bytes_and_broken_pickles_give_one_line(tmp_path, trained):
    rng = np.random.default_rng(14)
    files = {f"random{k}.pt": rng.bytes(int(rng.integers(1, 5000))) for k in range(15)}
    files.update({f"zip-like{k}.pt": b"PK\x03\x04" + rng.bytes(int(rng.integers(10, 3000))) for k in range(5)})
    # A valid zip whose pickle makes the unpickler raise KeyError (memo) or IndexError (empty stack).
    for name, pickle in [("keyerror.pt", b"\x80\x02h\x05."), ("indexerror.pt", b"\x80\x02.")]:
        buffer = io.BytesIO()
        with zipfile.ZipFile(trained) as src, zipfile.ZipFile(buffer, "w") as dst:
            for info in src.infolist():
                dst.writestr(info.filename, pickle if info.filename.endswith("data.pkl") else src.read(info.filename))
        files[name] = buffer.getvalue()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(tmp_path / name)
        assert one_line(e) == f"{tmp_path / name} is not a readable checkpoint (damaged, truncated or not a torch file)"


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_bit_flips_anywhere_are_refused_or_change_nothing(tmp_path, trained):
    data, original = trained.read_bytes(), plain(trained)
    refused = 0
    for k, bit in enumerate(np.random.default_rng(30).integers(0, 8 * len(data), size=30).tolist()):
        path = tmp_path / f"flip{k}.pt"
        path.write_bytes(flip_bit(data, bit))
        try:
            assert_same(load_checkpoint(path), original)  # a flip in bytes no reader uses (zip metadata)
        except CheckpointError as e:
            assert "\n" not in str(e) and str(e).startswith(str(path))
            refused += 1
    assert refused >= 25  # 30 of 30 with torch 2.13: most bytes of a checkpoint are tensor data and pickle


def test_every_bit_flip_in_tensor_data_is_detected(tmp_path, trained):
    data = trained.read_bytes()
    with zipfile.ZipFile(trained) as z:
        records = [(i.header_offset + 30 + len(i.filename.encode()) + len(i.extra), i.file_size)
                   for i in z.infolist() if "/data/" in i.filename]
    sizes = np.array([size for _, size in records], dtype=float)
    rng = np.random.default_rng(31)
    for k in range(30):
        start, size = records[rng.choice(len(records), p=sizes / sizes.sum())]
        path = tmp_path / f"flip{k}.pt"
        path.write_bytes(flip_bit(data, 8 * start + int(rng.integers(8 * size))))
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(path)
        assert one_line(e) == f"{path} is damaged: its content does not match the checksum stored when it was saved"


def set_path(state: dict, keys: tuple, value) -> None:
    for k in keys[:-1]:
        state = state[k]
    state[keys[-1]] = value


def nan_weight(state: dict) -> None:
    state["model"]["blocks.0.attn.c_attn.weight"][0, 0] = float("nan")


def bigger_tokenizer(state: dict) -> None:
    state["tokenizer"]["chars"] += "ÆØÅ"


FIELD_CASES: list[tuple[str, Callable[[dict], None], str]] = [
    ("tokenizer-string", lambda s: set_path(s, ("tokenizer",), "abc"), "tokenizer: expected a dict, got str"),
    ("tokenizer-kind", lambda s: set_path(s, ("tokenizer", "kind"), "bpe"), "tokenizer: unknown tokenizer kind 'bpe'"),
    ("tokenizer-too-big", bigger_tokenizer, "tokenizer: {v3} tokens do not fit the model's vocab_size {v}"),
    ("corpus-string", lambda s: set_path(s, ("corpus",), "kjv.txt"), "corpus: expected a dict, got str"),
    ("corpus-sha", lambda s: set_path(s, ("corpus", "sha256"), "abc"), "corpus: sha256 must be 64 hexadecimal digits, got 'abc'"),
    ("config-list", lambda s: set_path(s, ("model_config",), []), "model_config: expected a dict, got list"),
    ("block-size-30000", lambda s: set_path(s, ("model_config", "block_size"), 30_000),
     "model_config.block_size: must be an integer in [1, 8,192], got 30000"),
    ("n-embd-indivisible", lambda s: set_path(s, ("model_config", "n_embd"), 33),
     "model_config.n_embd: 33 is not divisible by n_head 2"),
    ("nan-weights", nan_weight, "model[blocks.0.attn.c_attn.weight]: holds NaN or infinite values"),
    ("wrong-shape", lambda s: set_path(s, ("model", "wpe.weight"), torch.zeros(7, 32)),
     "model[wpe.weight]: has shape (7, 32), the model_config needs (32, 32)"),
    ("missing-tensor", lambda s: s["model"].pop("lm_head.weight"), "model: missing tensor(s) lm_head.weight"),
    ("int-weights", lambda s: set_path(s, ("model", "ln_f.weight"), torch.ones(32, dtype=torch.int32)),
     "model[ln_f.weight]: has dtype torch.int32, expected torch.float32"),
    ("iter-negative", lambda s: set_path(s, ("iter",), -3), "iter: must be a step count, got -3"),
    ("train-args-string", lambda s: set_path(s, ("train_args",), "lr=1"),
     "train_args: expected a dict of names to numbers, strings or booleans"),
    ("train-args-arch", lambda s: set_path(s, ("train_args", "n_layer"), 3),
     "train_args.n_layer: 3 differs from model_config.n_layer 2"),
    ("rng-size", lambda s: set_path(s, ("rng", "batch"), torch.zeros(10, dtype=torch.uint8)),
     "rng.batch: not a valid generator state (Expected a CPUGeneratorImplState of size 5056 but found the input RNG "
     "state size to be 10)"),
    ("rng-content", lambda s: set_path(s, ("rng", "torch"), torch.zeros(5056, dtype=torch.uint8)),
     "rng.torch: not a valid generator state (Invalid mt19937 state)"),
    ("rng-ranks-empty", lambda s: set_path(s, ("rng", "ranks"), []),
     "rng.ranks: expected a non-empty list of per-process generator states"),
    ("rng-ranks-content", lambda s: set_path(s, ("rng", "ranks"), [{"torch": torch.zeros(5056, dtype=torch.uint8)}]),
     "rng.ranks[0].torch: not a valid generator state (Invalid mt19937 state)"),
    ("rng-ranks-nested", lambda s: set_path(s, ("rng", "ranks"), [{"batch": s["rng"]["batch"]}]),
     "rng.ranks[0]: expected a dict of generator states named torch or cuda"),
    ("optimizer-shape", lambda s: set_path(s, ("optimizer", "state", 0, "exp_avg"), torch.zeros(3)),
     "optimizer.state[0].exp_avg: has shape (3,), the model_config needs ({v}, 32)"),
    ("optimizer-betas", lambda s: set_path(s, ("optimizer", "param_groups", 0, "betas"), "x"),
     "optimizer.param_groups[0].betas: must be two numbers in [0, 1), got 'x'"),
    ("optimizer-empty", lambda s: set_path(s, ("optimizer",), {}), "optimizer: expected a dict with state and param_groups"),
    ("history-record", lambda s: set_path(s, ("history",), [{"kind": "step"}]),
     "history[0].iter: must be a finite number, got None"),
]


def damaged(trained: Path, folder: Path, mutate: Callable[[dict], None], with_hash: bool) -> tuple[Path, dict]:
    """A copy of the trained checkpoint with one field broken, saved with a matching content hash
    (what a buggy writer would produce) or without one (a checkpoint from before the hash)."""
    state = copy.deepcopy(plain(trained))
    vocab = state["model_config"]["vocab_size"]
    mutate(state)
    path = folder / "bad.pt"
    if with_hash:
        save_checkpoint(state, path)
    else:
        state.pop(HASH_KEY, None)
        torch.save(state, path)
    return path, {"v": vocab, "v3": vocab + 3}


@pytest.mark.parametrize("with_hash", [True, False], ids=["hashed", "legacy"])
@pytest.mark.parametrize("name, mutate, message", FIELD_CASES, ids=[c[0] for c in FIELD_CASES])
def test_a_bad_field_is_refused_with_one_line_naming_it(tmp_path, trained, name, mutate, message, with_hash):
    path, values = damaged(trained, tmp_path, mutate, with_hash)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert one_line(e) == f"{path} holds no usable {message.format(**values)}"


def test_a_legacy_checkpoint_without_hash_loads_and_a_wrong_hash_is_damage(tmp_path, trained):
    state = plain(trained)
    assert isinstance(state[HASH_KEY], str) and len(state[HASH_KEY]) == 64
    legacy = {k: v for k, v in state.items() if k != HASH_KEY}
    torch.save(legacy, tmp_path / "legacy.pt")
    assert_same(load_checkpoint(tmp_path / "legacy.pt"), legacy)
    state["iter"] = 3  # edited after saving: the stored hash no longer matches
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match=r"edited\.pt is damaged: its content does not match"):
        load_checkpoint(tmp_path / "edited.pt")
    state = {**legacy, "payload": 1}
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "extra.pt")
    assert one_line(e).endswith("extra.pt is not a charlens checkpoint this version can read (unknown field 'payload')")


def test_a_model_larger_than_memory_is_refused_before_anything_is_built(tmp_path, trained, monkeypatch):
    """block_size 8,192 with 16 layers: 1 GiB of causal masks alone; with 512 MiB available it is
    refused from the config (the stored tensors, which do not match, are never looked at)."""
    monkeypatch.setattr(checkpoint_schema, "available_memory", lambda: 2**29)
    path, _ = damaged(trained, tmp_path, lambda s: s["model_config"].update(block_size=8192, n_layer=16), True)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert one_line(e) == f"{path} holds no usable model_config: this model needs 1.0 GiB of memory, more than the 0.5 GiB available"


RESUME_CASES = ["tokenizer-string", "corpus-string", "rng-size", "rng-content", "optimizer-shape", "wrong-shape",
                "tokenizer-too-big", "nan-weights"]


@pytest.mark.parametrize("name", RESUME_CASES)
def test_resume_gives_one_line_for_each_bad_field(tmp_path, trained, capsys, name):
    _, mutate, message = next(c for c in FIELD_CASES if c[0] == name)
    path, values = damaged(trained, tmp_path, mutate, True)
    before = path.read_bytes()
    assert train.main(["--resume", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"train.py: error: {path} holds no usable {message.format(**values)}"]
    assert path.read_bytes() == before


@pytest.mark.parametrize("train_args, message", [
    ({}, "train_args.n_layer: must be an integer in [1, 256], got None"),
    ({"batch_size": 10**9}, "train_args.batch_size: must be an integer in [1, 65,536], got 1000000000"),
    ({"seed": -1}, "train_args.seed: must be an integer in [0, 9,223,372,036,854,775,806], got -1"),
    ({"dtype": 16}, "train_args.dtype: must be one of auto, float32, bfloat16, got 16"),
])
def test_resume_refuses_unusable_training_settings(tmp_path, trained, capsys, train_args, message):
    """load_checkpoint checks train_args' shape; --resume checks every setting's range like a flag's."""
    def mutate(state: dict) -> None:
        state["train_args"] = {**state["train_args"], **train_args} if train_args else {}

    path, _ = damaged(trained, tmp_path, mutate, True)
    assert train.main(["--resume", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"train.py: error: {path} holds no usable {message}"]


def test_analyze_refuses_nan_weights_with_one_line(tmp_path, trained, capsys):
    path, _ = damaged(trained, tmp_path, nan_weight, True)
    shutil.copy(trained.with_name("corpus.txt"), tmp_path / "corpus.txt")
    assert analyze.main(["--ckpt", str(path), "--out", str(tmp_path / "report")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"analyze.py: error: {path} holds no usable model[blocks.0.attn.c_attn.weight]: holds NaN or infinite values"]
    assert not (tmp_path / "report").exists()
