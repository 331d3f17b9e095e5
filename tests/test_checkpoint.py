"""Checkpoints: round trip, atomic writes, and refusal of crafted, truncated or foreign files."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch

from charlens.data.tokenizer import CharTokenizer
from charlens.model import checkpoint as ckpt
from charlens.model.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from charlens.model.transformer import PRESETS, ModelConfig, TransformerLM

torch.set_num_threads(1)


def make_state() -> tuple[dict, TransformerLM]:
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=12, dropout=0.1, **PRESETS["tiny"]))
    state = {"model_config": model.config.to_dict(), "model": model.state_dict(),
             "tokenizer": CharTokenizer.from_text("abcdefghijk").to_dict(),
             "corpus": {"kind": "file", "path": "/x.txt", "sha256": "0" * 64}, "iter": 7,
             "rng": {"torch": torch.get_rng_state()}, "history": [{"kind": "eval", "iter": 7, "train_loss": 2.4, "val_loss": 2.5}]}
    return state, model


class MakesMarker:
    """Unpickling this object runs Path.touch(marker): what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_round_trip_gives_the_same_model_in_eval_mode(tmp_path):
    state, model = make_state()
    save_checkpoint(state, tmp_path / "sub" / "m.pt")
    loaded = load_checkpoint(tmp_path / "sub" / "m.pt")
    assert loaded["iter"] == 7 and loaded["history"] == state["history"]
    restored = model_from_checkpoint(loaded)
    assert not restored.training
    idx = torch.randint(12, (2, 32), generator=torch.Generator().manual_seed(1))
    assert torch.equal(restored(idx)[0], model.eval()(idx)[0])
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.pt"]  # no temporary file left


def test_a_crafted_pickle_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(MakesMarker(marker)))  # control: plain unpickling does run it
    assert marker.exists()
    marker.unlink()

    state, _ = make_state()
    state["payload"] = MakesMarker(marker)
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused to load") as e:
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    assert "\n" not in str(e.value)


def test_a_numpy_object_inside_is_refused(tmp_path):
    import numpy as np
    state, _ = make_state()
    state["tokens"] = np.arange(3)
    torch.save(state, tmp_path / "np.pt")
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(tmp_path / "np.pt")


def test_truncated_foreign_and_incomplete_files_give_one_line(tmp_path):
    state, _ = make_state()
    save_checkpoint(state, tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    for name, message in [("cut.pt", "not a readable checkpoint"), ("notes.pt", "not a readable checkpoint"),
                          ("foreign.pt", "not a charlens checkpoint (missing model_config, model, tokenizer"),
                          ("list.pt", "not a charlens checkpoint (missing model_config, model, tokenizer, corpus, iter)"),
                          ("absent.pt", "checkpoint not found")]:
        with pytest.raises(CheckpointError, match=re.escape(message)) as e:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(e.value)


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    state, _ = make_state()
    save_checkpoint(state, tmp_path / "m.pt")
    before = (tmp_path / "m.pt").read_bytes()

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({**state, "iter": 8}, tmp_path / "m.pt")
    assert (tmp_path / "m.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_an_unreadable_file_says_so(tmp_path, monkeypatch):
    state, _ = make_state()
    save_checkpoint(state, tmp_path / "m.pt")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ckpt.torch, "load", denied)
    with pytest.raises(CheckpointError, match=r"^cannot read .*m\.pt: Permission denied$"):
        load_checkpoint(tmp_path / "m.pt")


def test_a_checkpoint_with_nanogpts_parameter_names_loads_under_the_current_ones(tmp_path):
    """Files written before the blocks were named `blocks` hold transformer.wte / transformer.h.L / transformer.ln_f
    (hashed under those names): they load as the same weights, in the same order, so a resumed optimizer state
    (indexed by parameter order) still lines up."""
    state, model = make_state()
    layer = ["ln_1.weight", "attn.c_attn.weight", "attn.c_proj.weight", "ln_2.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"]
    old_order = (["transformer.wte.weight", "transformer.wpe.weight"]
                 + [f"transformer.h.{l}.{k}" for l in range(2) for k in layer] + ["transformer.ln_f.weight", "lm_head.weight"])
    new = model.state_dict()
    as_new = lambda old: old.replace("transformer.h.", "blocks.").replace("transformer.", "")
    save_checkpoint({**state, "model": {old: new[as_new(old)].clone() for old in old_order}}, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert list(loaded["model"]) == list(new) == [as_new(k) for k in old_order]
    assert all(torch.equal(loaded["model"][k], v) for k, v in new.items())
    idx = torch.randint(12, (2, 32), generator=torch.Generator().manual_seed(1))
    assert torch.equal(model_from_checkpoint(loaded)(idx)[0], model.eval()(idx)[0])
