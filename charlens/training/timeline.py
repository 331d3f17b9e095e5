"""Timeline recording: what every head does, measured on a fixed probe set while the model trains.

Heads form during training, often early and sometimes in a sudden phase change (Olsson et al. 2022), so
the final checkpoint alone cannot say when or in which order. At scheduled steps (`record_steps`) the
engine calls `Recorder.record`, one forward pass with attention over the probe set in eval mode (no
gradients, no random numbers drawn, train mode restored), and appends its record to the checkpoint's
history (hence also to <name>.log.jsonl). `--no-timeline` turns it off.

The probe set (`make_probe`, stored once in the checkpoint as checkpoint["probe"], so a resumed run
and any later reader use exactly the same inputs):
    {"version": 1, "source": "heldout", "seed": <the run's seed>, "lang": "en" | "he",
     "detectors": [D names],            # every detector that applies to the language, fixed at the start
     "starts": [N ints],                # where each window starts in the corpus's held-out text
     "windows": [N strings],            # N = PROBE_WINDOWS windows of block_size characters, non-overlapping
     "repeated": [R strings]}           # R = REPEATED_SEQUENCES random letter sequences of block_size // 2,
                                        # each written twice (length 2 * (block_size // 2))
The windows come from the corpus's held-out text (the Bibles: Ruth, Esther, Jonah, Haggai, Nehemiah; a
--text file: its validation part), chosen as the analyzer chooses windows (data.textfile.window_starts)
with numpy's generator seeded with the run's seed; the repeated sequences from a torch generator seeded
with it, from the vocabulary's letters as analysis.runs.induction does. The training generators are
never touched.

A record (one per recorded step; numbers rounded to 4 decimals, null where undefined):
    {"kind": "probe", "iter": step,    # after `step` optimizer steps (0: the initialized model)
     "detectors": [D names],           # the order of the first axis below (= probe["detectors"])
     "score": D x L x H,               # mean attention mass on the detector's targets (rows with targets),
                                       # averaged over the probe windows that have targets
     "control": D x L x H,             # the same for the detector's control baseline (analysis.measures.scoring)
     "selectivity": D x L x H,         # (score - control) / (1 - control) of the two means
     "repeated_score": L x H,          # prefix-matching score on the repeated sequences: attention from each
     "repeated_control": L x H,        #   second-copy position to the one after its match in the first copy,
     "repeated_selectivity": L x H,    #   its prefix control and selectivity (analysis.measures.induction)
     "loss_first_copy": x, "loss_second_copy": x,   # mean loss (nats) on each copy of the repeated sequences
     "probe_loss": x,                  # mean next-character loss over the probe windows
     "loss_early": x, "loss_late": x,  # mean loss at predicted positions p in `icl_bands` (early, late)
     "icl_score": x,                   # loss_late - loss_early (Olsson et al.'s in-context-learning score)
     "ms": x}                          # the recording's wall time in milliseconds
Layers and heads are the model's (L = n_layer, H = n_head). analysis.measures.timeline turns records into
arrays and formation steps.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from charlens.analysis.measures.detectors import REGISTRY, CharBatch, detectors_for
from charlens.analysis.measures.induction import score_repeated
from charlens.analysis.measures.positional import ClassFrequencies, StratumCounts
from charlens.analysis.measures.scoring import WindowScores, score_windows
from charlens.analysis.measures.stats import selectivity
from charlens.data.charclasses import CLASS_INDEX, class_map, classify, features
from charlens.data.errors import UsageError
from charlens.data.textfile import window_starts
from charlens.data.tokenizer import Tokenizer
from charlens.model.hooks import run_with_cache
from charlens.model.transformer import ModelConfig, TransformerLM

PROBE_VERSION = 1
PROBE_WINDOWS = 32  # windows of the held-out text scored at every recorded step
REPEATED_SEQUENCES = 16  # random letter sequences, each repeated twice
SCHEDULE_POINTS = 24  # log-spaced recorded steps over a run (plus step 0 and every evaluation)
ATTENTION_BYTES = 64 << 20  # attention of at most this many bytes per forward chunk
DIGITS = 4
LETTER_CLASSES = ("vowel", "consonant")  # as analysis.runs.induction.letter_pool (a test keeps them equal)
MIN_LETTERS = 8  # fewer letters than this in the vocabulary: draw from the whole vocabulary


def record_steps(max_iters: int, eval_interval: int, points: int = SCHEDULE_POINTS) -> set[int]:
    """Steps to record: 0, `points` log-spaced steps in 1..max_iters (dense early, where heads form), every
    evaluation and the last step. A function of the settings alone, so a resumed run records the same steps
    (raising --max-iters on resume moves the log-spaced steps after the resume point)."""
    logspaced = {round(max_iters ** (k / points)) for k in range(points + 1)}
    return {0, max_iters} | logspaced | set(range(eval_interval, max_iters + 1, eval_interval))


def icl_bands(T: int) -> tuple[range, range]:
    """Predicted positions p (the loss of character p + 1 given characters 0..p) of the in-context-learning
    score: early = [w, 2w), late = the last w predictions [T - 1 - w, T - 1), w = max(1, T // 16)
    (T = 128: 8..15 and 119..126; Olsson et al. compare tokens 50 and 500 of 512)."""
    w = max(1, T // 16)
    return range(w, min(2 * w, T - 1)), range(max(0, T - 1 - w), T - 1)


def letter_ids(tokenizer: Tokenizer, lang: str) -> torch.Tensor:
    """Token ids of the vocabulary's letters (the unknown token never); the whole vocabulary when it has few."""
    table, codes = class_map(lang), {CLASS_INDEX[c] for c in LETTER_CLASSES}
    ids = [i for i in range(1, tokenizer.vocab_size) if table.get(tokenizer.decode([i])) in codes]
    return torch.tensor(ids if len(ids) >= MIN_LETTERS else range(1, tokenizer.vocab_size), dtype=torch.long)


def check_resumable(probe: dict) -> None:
    """A resumed run records with the checkpoint's probe set: every detector it names must still exist."""
    unknown = [n for n in probe["detectors"] if n not in REGISTRY]
    if unknown:
        raise UsageError(f"the checkpoint's timeline records detector(s) this version lacks ({', '.join(unknown)}); "
                         "resume with --no-timeline")


def make_probe(text: str, lang: str, tokenizer: Tokenizer, block_size: int, seed: int) -> dict:
    """The probe set of a run on the held-out `text` (format: module docstring), drawn with generators of its
    own seeded with `seed`."""
    starts = window_starts(len(text), block_size, PROBE_WINDOWS, np.random.default_rng(seed))
    if not len(starts):
        raise UsageError(f"the held-out text ({len(text):,} characters) holds no window of --block-size {block_size} "
                         "to record a timeline on; use --no-timeline")
    half = block_size // 2
    pool = letter_ids(tokenizer, lang)
    first = pool[torch.randint(len(pool), (REPEATED_SEQUENCES, half), generator=torch.Generator().manual_seed(seed))]
    return {"version": PROBE_VERSION, "source": "heldout", "seed": seed, "lang": lang,
            "detectors": detectors_for(lang), "starts": [int(s) for s in starts],
            "windows": [text[s:s + block_size] for s in starts],
            "repeated": [tokenizer.decode(row.tolist()) * 2 for row in first] if half else []}


def _chars(tokenizer: Tokenizer, texts: list[str], lang: str) -> CharBatch:
    """What the detectors see of equal-length texts: ids, classes and feature bits (B, T)."""
    as_batch = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64).reshape(len(texts), -1))
    joined = "".join(texts)
    return CharBatch(as_batch(np.stack([tokenizer.encode(t, unknown="replace") for t in texts])),
                     as_batch(classify(joined, lang)), as_batch(features(joined, lang)))


def _rounded(x: torch.Tensor | np.ndarray | float) -> object:
    """Nested lists of floats rounded to DIGITS, None for NaN or infinity (JSON has neither)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        return round(float(a), DIGITS) if math.isfinite(a) else None
    return [_rounded(v) for v in a]


def _window_means(parts: list[WindowScores]) -> tuple[torch.Tensor, torch.Tensor]:
    """Score and control means over the windows with targets (NaN where no window has any): (D, L, H) each."""
    score, control = torch.cat([p.score for p in parts]), torch.cat([p.control for p in parts])
    has = ~torch.isnan(score)
    n = has.sum(0)
    mean = lambda a: torch.where(has, a, 0).sum(0) / n  # 0 / 0 = NaN where no window has targets
    return mean(score), mean(control)


@dataclass
class _Inputs:
    ids: torch.Tensor  # (N, T) on the model's device
    chars: list[CharBatch]  # per forward chunk, on the CPU (their memo keeps target structure between records)


class Recorder:
    """Everything a record needs that does not change during the run, prepared once: token ids on the device,
    the detectors' character batches, the positional control's class frequencies of the probe windows."""

    def __init__(self, probe: dict, tokenizer: Tokenizer, config_layers: int, config_heads: int, device: torch.device) -> None:
        self.names: list[str] = list(probe["detectors"])
        T = len(probe["windows"][0])
        chunk = max(1, ATTENTION_BYTES // (4 * config_layers * config_heads * T * T))
        self.windows = self._inputs(tokenizer, probe["windows"], probe["lang"], chunk, device)
        self.repeated = self._inputs(tokenizer, probe["repeated"], probe["lang"], chunk, device) if probe["repeated"] else None
        counts = StratumCounts(self.names)
        for chars in self.windows.chars:
            counts.add(chars)
        self.frequencies: ClassFrequencies = counts.frequencies()
        self.early, self.late = icl_bands(T)

    @staticmethod
    def _inputs(tokenizer: Tokenizer, texts: list[str], lang: str, chunk: int, device: torch.device) -> _Inputs:
        parts = [_chars(tokenizer, texts[k:k + chunk], lang) for k in range(0, len(texts), chunk)]
        return _Inputs(torch.cat([p.ids for p in parts]).to(device), parts)

    @staticmethod
    def _forward(model: TransformerLM, inputs: _Inputs) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Attention (B, L, H, T, T) on the CPU per chunk, and every window's losses (N, T - 1)."""
        attention, losses, at = [], [], 0
        for chars in inputs.chars:
            ids = inputs.ids[at:at + len(chars.ids)]
            at += len(ids)
            cache = run_with_cache(model, ids, names=("pattern",))
            logits = cache.logits
            attention.append(cache.stack("pattern").float().cpu())
            losses.append(torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2).float(), ids[:, 1:],
                                                            reduction="none").cpu())
        return attention, torch.cat(losses)

    def record(self, model: TransformerLM, step: int) -> dict:
        """The record of `step` (format: module docstring). Eval mode and no gradients; the model's mode is
        restored, and no random number is drawn, so recording never changes what training does."""
        began, was_training = time.perf_counter(), model.training
        model.eval()
        try:
            with torch.inference_mode():
                out = self._measure(model)
        finally:
            model.train(was_training)
        return {"kind": "probe", "iter": step, "detectors": self.names, **out,
                "ms": round((time.perf_counter() - began) * 1e3, 1)}

    def _measure(self, model: TransformerLM) -> dict:
        attention, loss = self._forward(model, self.windows)
        # the one scoring call: every detector with its control, as the analyzer scores a split
        score, control = _window_means([score_windows(a, c, self.names, self.frequencies)
                                        for a, c in zip(attention, self.windows.chars)])
        early, late = (loss[:, band].mean() if len(band) else torch.tensor(math.nan) for band in (self.early, self.late))
        out = {"score": _rounded(score), "control": _rounded(control),
               "selectivity": _rounded(selectivity(score.numpy(), control.numpy())),
               **self._repeated(model), "probe_loss": _rounded(loss.mean()),
               "loss_early": _rounded(early), "loss_late": _rounded(late), "icl_score": _rounded(late - early)}
        return out

    def _repeated(self, model: TransformerLM) -> dict:
        """The repeated-random-sequence test: prefix-matching score, its control and selectivity, loss per copy."""
        if self.repeated is None:  # block size 1: no sequence to repeat
            return {k: None for k in ("repeated_score", "repeated_control", "repeated_selectivity",
                                      "loss_first_copy", "loss_second_copy")}
        attention, loss = self._forward(model, self.repeated)
        half = self.repeated.ids.shape[1] // 2
        score, control = _window_means([score_repeated(a, c.ids, half) for a, c in zip(attention, self.repeated.chars)])
        return {"repeated_score": _rounded(score[0]), "repeated_control": _rounded(control[0]),
                "repeated_selectivity": _rounded(selectivity(score[0].numpy(), control[0].numpy())),
                "loss_first_copy": _rounded(loss[:, : half - 1].mean() if half > 1 else math.nan),
                "loss_second_copy": _rounded(loss[:, half:].mean())}


def recorder_for(probe: Optional[dict], heldout: str, lang: str, tokenizer: Tokenizer, config: ModelConfig, seed: int,
                 device: torch.device) -> tuple[dict, Recorder]:
    """The run's probe (the checkpoint's, else a new one on the `heldout` text, seeded with the run's `seed`)
    and its recorder for a model of `config`."""
    probe = probe or make_probe(heldout, lang, tokenizer, config.block_size, seed)
    return probe, Recorder(probe, tokenizer, config.n_layer, config.n_head, device)
