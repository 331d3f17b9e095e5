"""Timeline recording during training (training/timeline.py, the engine): known answers on tiny runs.

A previous-character head grows on text where each character is determined by the one two places back
and forms while the loss drops; heads planted through the hook from step 0 form at the first recorded
step; nothing forms without learning; recording changes nothing that is learned, and an interrupted,
resumed run records the same timeline as an uninterrupted one."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from charlens import analyze
from charlens import train
from charlens.analysis.measures.timeline import CUT, formation_steps, probe_records, timeline
from charlens.analysis.runs.timeline import NO_TIMELINE
from beyond_helpers import previous_char_pattern
from charlens.data.corpora import file_corpus
from charlens.data.tokenizer import CharTokenizer
from charlens.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from charlens.model.hooks import add_hook
from charlens.model.transformer import ModelConfig, TransformerLM
from planted import KNOWN, plant
from charlens.training import engine, snapshots, timeline as recording

torch.set_num_threads(1)
WITHOUT_TIME = lambda h: [{k: v for k, v in r.items() if k != "ms"} for r in h]


def tiny(text_file: Path, out: Path, *extra: str) -> list[str]:
    return ["--text", str(text_file), "--preset", "tiny", "--out", str(out), "--sample-chars", "0", *extra]


@pytest.fixture(scope="module")
def second_order_run(second_order_checkpoint) -> dict:
    """The shared second-order run (conftest): only a previous-character head predicts its text."""
    return load_checkpoint(second_order_checkpoint)


def test_schedule_is_log_spaced_plus_every_evaluation():
    assert recording.record_steps(100, 50) == {0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 18, 22, 26, 32, 38, 46, 56, 68, 83,
                                               50, 100}
    steps = recording.record_steps(2000, 250)
    assert {0, 1, 2000} | set(range(250, 2001, 250)) <= steps and len(steps) == 32
    assert sum(s <= 100 for s in steps) == 15  # dense early, where heads form
    assert recording.icl_bands(128) == (range(8, 16), range(119, 127))
    assert recording.icl_bands(32) == (range(2, 4), range(29, 31))


def test_a_previous_character_head_forms_while_the_loss_drops(second_order_run):
    records = probe_records(second_order_run["history"])
    t = timeline(records)
    assert t.steps[0] == 0 and t.steps[-1] == 150
    previous = t.arrays["selectivity"][:, t.detectors.index("previous_char")]  # (S, L, H)
    assert np.abs(previous[0]).max() < 0.01  # the initialized model: no better than uniform attention
    formed = {(l, h): step for (name, l, h), step in formation_steps(records).items() if name == "previous_char"}
    assert formed, previous[-1]
    # the window where the training loss drops: from 10% to 90% of its total fall
    steps = [(r["iter"], r["loss"]) for r in second_order_run["history"] if r["kind"] == "step"]
    first, lowest = steps[0][1], min(loss for _, loss in steps)
    begins = next(s for s, loss in steps if loss <= first - 0.1 * (first - lowest))
    ends = next(s for s, loss in steps if loss <= lowest + 0.1 * (first - lowest))
    for (l, h), step in formed.items():
        assert previous[-1, l, h] >= CUT and previous[0, l, h] < CUT
        assert begins <= step <= ends, (step, begins, ends)
    assert t.scalars["probe_loss"][-1] < t.scalars["probe_loss"][0] - 1.0


def test_heads_planted_from_step_zero_form_at_the_first_recorded_step(text_file, tmp_path, monkeypatch):
    """Layer 0, head 1 attends to the previous character through its hook point in every forward pass."""
    init = TransformerLM.__init__

    def planted(self, config):
        init(self, config)

        def hook(att: torch.Tensor) -> torch.Tensor:
            att = att.clone()
            att[:, 1] = previous_char_pattern(att.size(-1)).to(att)
            return att
        add_hook(self, "blocks.0.attn.hook_pattern", hook)

    monkeypatch.setattr(TransformerLM, "__init__", planted)
    out = tmp_path / "m.pt"
    assert train.main(tiny(text_file, out, "--max-iters", "12", "--eval-interval", "12")) == 0
    records = probe_records(load_checkpoint(out)["history"])
    formed = formation_steps(records)
    assert formed[("previous_char", 0, 1)] == 0
    assert not any(name == "previous_char" and (l, h) != (0, 1) for name, l, h in formed)
    previous = timeline(records).arrays["selectivity"][:, timeline(records).detectors.index("previous_char"), 0, 1]
    assert previous.min() > 0.9  # all its attention on the target at every record
    # the analysis (with the head still planted) reads the timeline beside its final labels
    report = tmp_path / "rep"
    assert analyze.main(["--ckpt", str(out), "--out", str(report), "--windows", "16", "--n-boot", "50",
                         "--induction-windows", "4", "--min-windows", "6", "--quiet"]) == 0
    entry = json.loads((report / "summary.json").read_text(encoding="utf-8"))["timeline"]
    head = next(h for h in entry["heads"] if (h["layer"], h["head"], h["label"]) == (0, 1, "previous_char"))
    assert head["formed"] == 0 and entry["formation"]["previous_char"] == 0 and entry["steps"][0] == 0
    assert "## Timeline: heads forming during training" in (report / "report.md").read_text(encoding="utf-8")
    assert (report / "timeline.png").exists()


def test_nothing_forms_without_learning(text_file, tmp_path, monkeypatch):
    """A run with learning rate 0 (the schedule's; the flag refuses 0), and its step-0 record alone."""
    monkeypatch.setattr(engine, "lr_at", lambda it, s: 0.0)
    out = tmp_path / "m.pt"
    assert train.main(tiny(text_file, out, "--max-iters", "20", "--eval-interval", "10")) == 0
    records = probe_records(load_checkpoint(out)["history"])
    assert len(records) == len(recording.record_steps(20, 10))
    assert formation_steps(records[:1]) == {}  # step 0 alone: the untrained model
    assert formation_steps(records) == {}
    assert all(r["selectivity"] == records[0]["selectivity"] for r in records)  # the weights never moved


def test_recording_changes_nothing_that_is_learned(text_file, tmp_path):
    extra = ("--max-iters", "25", "--dropout", "0.1", "--eval-interval", "10")
    on, off = tmp_path / "on.pt", tmp_path / "off.pt"
    assert train.main(tiny(text_file, on, *extra)) == 0
    assert train.main(tiny(text_file, off, *extra, "--no-timeline")) == 0
    a, b = load_checkpoint(on), load_checkpoint(off)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"]) and torch.equal(a["rng"]["batch"], b["rng"]["batch"])
    assert "probe" in a and "probe" not in b and not probe_records(b["history"])
    assert WITHOUT_TIME([r for r in a["history"] if r["kind"] != "probe"]) == WITHOUT_TIME(b["history"])


@pytest.mark.parametrize("stop_at", [8, 9])  # a recorded step, and one that is not
def test_resumed_run_records_the_same_timeline(text_file, tmp_path, stop_at):
    extra = ("--max-iters", "30", "--dropout", "0.1", "--eval-interval", "10")
    full, part = tmp_path / "full.pt", tmp_path / "part.pt"
    assert train.main(tiny(text_file, full, *extra)) == 0
    assert train.main(tiny(text_file, part, *extra), stop_at=stop_at) == train.INTERRUPTED
    assert train.main(["--resume", str(part), "--sample-chars", "0"]) == 0
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert (stop_at in recording.record_steps(30, 10)) == (stop_at == 8)
    assert a["probe"] == b["probe"]
    assert [r["iter"] for r in probe_records(a["history"])] == sorted(recording.record_steps(30, 10))
    assert WITHOUT_TIME(a["history"]) == WITHOUT_TIME(b["history"])
    log = [json.loads(line) for line in (tmp_path / "part.log.jsonl").read_text().splitlines()]
    assert WITHOUT_TIME(log) == WITHOUT_TIME(json.loads(json.dumps(b["history"])))  # the log holds the same records


def test_probe_set_is_fixed_by_the_seed_and_stored_with_the_run(text_file, tmp_path):
    corpus = file_corpus(text_file, 32)
    tokenizer = CharTokenizer(sorted(corpus.chars()))
    make = lambda seed: recording.make_probe(corpus.heldout, corpus.lang, tokenizer, 32, seed=seed)
    probe = make(5)
    assert probe == make(5) != make(6)
    assert len(probe["windows"]) == recording.PROBE_WINDOWS and probe["source"] == "heldout"
    assert all(corpus.heldout[s:s + 32] == w for s, w in zip(probe["starts"], probe["windows"]))
    assert len(probe["repeated"]) == recording.REPEATED_SEQUENCES
    assert all(len(r) == 32 and r[:16] == r[16:] and r[:16].isalpha() for r in probe["repeated"])
    out = tmp_path / "m.pt"
    assert train.main(tiny(text_file, out, "--max-iters", "2", "--seed", "5")) == 0
    assert load_checkpoint(out)["probe"] == probe


def test_damaged_timeline_is_refused_with_one_line(second_order_run, tmp_path):
    state = dict(second_order_run)
    k = next(i for i, r in enumerate(state["history"]) if r["kind"] == "probe")
    bad = dict(state["history"][k], selectivity=[[[0.1]]])
    for damaged, field in [({**state, "history": state["history"][:k] + [bad] + state["history"][k + 1:]},
                            f"history[{k}].selectivity: expected nested lists of shape"),
                           ({**state, "probe": {**state["probe"], "windows": ["x" * 33]}}, "probe.windows")]:
        save_checkpoint(damaged, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=field.replace("[", r"\[").replace("]", r"\]")) as e:
            load_checkpoint(tmp_path / "bad.pt")
        assert len(str(e.value).splitlines()) == 1


def test_a_checkpoint_from_before_timelines_still_analyses_and_resumes(text_file, tmp_path, capsys):
    out = tmp_path / "old.pt"
    assert train.main(tiny(text_file, out, "--max-iters", "20", "--no-timeline")) == 0
    state = load_checkpoint(out)
    for key in ("timeline", "snapshots"):  # the settings this feature added
        del state["train_args"][key]
    save_checkpoint(state, out)
    assert probe_records(load_checkpoint(out)["history"]) == []
    assert analyze.main(["--ckpt", str(out), "--out", str(tmp_path / "rep"), "--windows", "16", "--n-boot", "50",
                         "--induction-windows", "4", "--quiet"]) == 0
    assert json.loads((tmp_path / "rep" / "summary.json").read_text(encoding="utf-8"))["timeline"] == {
        "recorded": False, "note": NO_TIMELINE}
    assert (tmp_path / "rep" / "report.md").read_text(encoding="utf-8").lower().count("no timeline") == 1
    assert capsys.readouterr().err.count("no timeline") == 1  # one line from analyze.py
    assert not (tmp_path / "rep" / "timeline.png").exists()
    assert train.main(["--resume", str(out), "--max-iters", "30", "--sample-chars", "0"]) == 0
    assert "the checkpoint has no timeline; recording starts at step 20" in capsys.readouterr().out
    resumed = load_checkpoint(out)
    assert [r["iter"] for r in probe_records(resumed["history"])] == sorted(s for s in recording.record_steps(30, 20) if s > 20)


def test_snapshot_steps_are_log_spaced_and_distinct():
    assert snapshots.snapshot_steps(3, 20) == {3, 7, 20}
    assert snapshots.snapshot_steps(5, 5) == {1, 2, 3, 4, 5}
    assert snapshots.snapshot_steps(4, 10) == {2, 3, 6, 10}
    assert snapshots.snapshot_steps(0, 10) == set()
    assert snapshots.snapshot_path(Path("c/en_s0.pt"), 250) == Path("c/en_s0.step250.pt")


def test_snapshots_are_full_checkpoints_at_their_steps(text_file, tmp_path):
    out = tmp_path / "m.pt"
    assert train.main(tiny(text_file, out, "--max-iters", "20", "--eval-interval", "10", "--snapshots", "3")) == 0
    assert sorted(p.name for p in tmp_path.glob("m.step*.pt")) == ["m.step20.pt", "m.step3.pt", "m.step7.pt"]
    final = load_checkpoint(out)
    for k in (3, 7, 20):
        snap = load_checkpoint(tmp_path / f"m.step{k}.pt")
        assert snap["iter"] == k and snap["probe"] == final["probe"]
        assert WITHOUT_TIME(snap["history"]) == WITHOUT_TIME([r for r in final["history"] if r["iter"] <= k])
    for name, tensor in load_checkpoint(tmp_path / "m.step20.pt")["model"].items():
        assert torch.equal(tensor, final["model"][name])
    assert not list(tmp_path.glob(".*tmp"))  # written atomically: no temporary file left


@pytest.mark.parametrize("flags, message", [
    (("--snapshots", "21"), "--snapshots 21 is more than --max-iters 20"),
    (("--snapshots", "-1"), "--snapshots must be an integer in [0, "),
    (("--snapshots", "5", "--no-room"), "needs about"),
])
def test_bad_snapshots_are_refused_with_one_line_before_training(text_file, tmp_path, capsys, monkeypatch, flags, message):
    if "--no-room" in flags:
        monkeypatch.setattr(snapshots.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**6, 10**6 - 1000, 1000))
        flags = flags[:-1]
    out = tmp_path / "m.pt"
    assert train.main(tiny(text_file, out, "--max-iters", "20", *flags)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_a_planted_induction_head_is_recorded_as_induction(text_file):
    """The recorder on an untrained model with an induction head planted at L1H0: its prefix-match selectivity on
    the probe windows and on the repeated random sequences is high, and one record makes it an induction head."""
    corpus = file_corpus(text_file, 32)
    tokenizer = CharTokenizer(sorted(corpus.chars()))
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=16, block_size=32))
    plant(model, tokenizer, "en", {(1, 0): KNOWN["induction_3"][0]})
    probe = recording.make_probe(corpus.heldout, corpus.lang, tokenizer, 32, seed=0)
    rec = recording.Recorder(probe, tokenizer, 2, 2, torch.device("cpu")).record(model, 0)
    names = rec["detectors"]
    assert rec["selectivity"][names.index("prefix_match_3")][1][0] > 0.9
    assert rec["repeated_selectivity"][1][0] > 0.5 and abs(rec["repeated_selectivity"][0][0]) < 0.1
    assert rec["loss_second_copy"] is not None and rec["icl_score"] is not None
    formed = formation_steps([rec])
    assert formed[("induction", 1, 0)] == 0 and not any(name == "induction" and (l, h) != (1, 0) for name, l, h in formed)
