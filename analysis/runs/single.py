"""Checkpoint + texts -> summary dict (the analysis data contract) + a few attention examples.

    inputs = load_inputs("checkpoints/en.pt", Settings())        # every input check, before any work
    analysis = run_analysis(inputs, Settings())                  # analysis.summary, analysis.examples
    analyze_checkpoint("checkpoints/en.pt", "reports/en")        # both, and the report files

Texts: by default, discovery windows come from the checkpoint corpus's training text and
held-out windows from its held-out text (for the Bibles: held-out books). `--text FILE` splits the
file in halves (first = discovery, second = held-out: contiguous halves share no passage), and
`--sentences` makes each sentence one held-out window, with discovery on the training text.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from analysis.measures import detectors as det
from analysis.runs.extract import AttentionBatch, iter_attention
from analysis.measures.stats import ScoreAccumulator, per_test_alpha, split_stats, validated
from analysis.runs.summarize import detector_section, head_table
from data.charclasses import CLASS_NAMES
from data.corpora import CorpusError, corpus_from_identity, detect_language, read_text_file
from data.tokenizer import Tokenizer, describe_chars, normalize, tokenizer_from_dict
from model.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from model.transformer import TransformerLM

SALIENT_BATCHES = 4  # salient patterns are picked from the first few discovery batches
SALIENT_PER_HEAD = 2
MIN_SALIENT_ROW = 8  # rows with fewer keys give large weights too cheaply to be salient
MIN_SALIENT_WEIGHT = 0.25


class AnalysisError(Exception):
    """An input the analysis cannot use (one-line message)."""


@dataclass
class Settings:
    """Every setting that changes a number; recorded in summary.json."""

    n_windows: int = 256  # per split
    batch_size: int = 32
    threshold: float = 0.4
    min_lift: float = 0.1
    alpha: float = 0.05
    n_boot: int = 1000
    min_windows: int = 10
    induction_windows: int = 32
    seed: int = 0
    n_examples: int = 4
    unknown_chars: str = "error"  # characters of --text/--sentences outside the vocabulary: error, drop or replace
    value_weighted: bool = False  # score detectors on value-weighted attention instead of raw weights (--value-weighted)
    detectors: list[str] = field(default_factory=lambda: list(det.REGISTRY))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TextSplit:
    source: str
    windows: list[str]
    n_chars: int
    # Encoding policy. --unknown-chars is applied to --text / --sentences before windows are cut, so what is left
    # here is the corpus's own held-out text, which may hold characters the training text lacked.
    unknown: str = "replace"

    def describe(self) -> dict:
        return {"source": self.source, "n_windows": len(self.windows), "n_chars": self.n_chars}


@dataclass
class AnalysisInputs:
    ckpt_path: str
    name: str
    lang: str
    model: TransformerLM
    tokenizer: Tokenizer
    state: dict
    discovery: TextSplit
    heldout: TextSplit


@dataclass
class Analysis:
    summary: dict
    examples: dict[str, np.ndarray]


def sample_windows(text: str, T: int, n: int, rng: np.random.Generator) -> list[str]:
    """Up to `n` non-overlapping windows of `T` characters, a seeded random choice, in text order."""
    starts = np.arange(0, len(text) - T + 1, T)
    chosen = np.sort(rng.choice(starts, size=min(n, len(starts)), replace=False))
    return [text[s:s + T] for s in chosen]


UNKNOWN_POLICIES = ("error", "drop", "replace")


def _apply_unknown_policy(tokenizer: Tokenizer, text: str, what: str, policy: str) -> str:
    """The text to analyze under the policy for characters outside the vocabulary: `error` refuses
    it naming them, `drop` deletes them, `replace` keeps them (encoded as the reserved unknown token)."""
    missing = tokenizer.unknown_chars(text)
    if not missing or policy == "replace":
        return text
    if policy == "drop":
        return "".join(c for c in text if c not in missing)
    raise AnalysisError(f"{what} holds {len(missing)} character(s) outside the model's vocabulary: {describe_chars(missing)} "
                        "(--unknown-chars drop or replace analyzes it anyway)")


def load_inputs(ckpt_path: str | os.PathLike, settings: Settings, text_path: Optional[str] = None,
                sentences: Optional[list[str]] = None) -> AnalysisInputs:
    """Load the checkpoint and cut the texts into windows; AnalysisError on any unusable input."""
    try:
        state = load_checkpoint(ckpt_path)
        model = model_from_checkpoint(state)
        tokenizer = tokenizer_from_dict(state["tokenizer"])
    except CheckpointError as e:
        raise AnalysisError(str(e)) from None
    except (RuntimeError, TypeError, ValueError, KeyError) as e:
        raise AnalysisError(f"{ckpt_path} does not hold a usable model ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    T = model.config.block_size
    rng = np.random.default_rng(settings.seed)
    unknown_detectors = [s for s in settings.detectors if s not in det.REGISTRY]
    if unknown_detectors:
        raise AnalysisError(f"unknown detector(s): {', '.join(unknown_detectors)}; known: {', '.join(det.REGISTRY)}")
    try:
        if text_path is not None:
            text = _apply_unknown_policy(tokenizer, read_text_file(text_path), str(text_path), settings.unknown_chars)
            half = len(text) // 2
            if half < T:
                raise AnalysisError(f"{text_path} holds {len(text):,} characters; at least {2 * T:,} are needed "
                                    f"(one {T}-character window in each half)")
            lang = detect_language(text)
            discovery = TextSplit(f"{text_path} (first half)", sample_windows(text[:half], T, settings.n_windows, rng), half)
            heldout = TextSplit(f"{text_path} (second half)", sample_windows(text[half:], T, settings.n_windows, rng),
                                len(text) - half)
        else:
            corpus = corpus_from_identity(state["corpus"])
            lang = corpus.lang
            if len(corpus.train) < T:
                raise AnalysisError(f"the training text holds {len(corpus.train):,} characters, fewer than one window ({T})")
            discovery = TextSplit(f"{corpus.name} training text", sample_windows(corpus.train, T, settings.n_windows, rng),
                                  len(corpus.train))
            if sentences is not None:
                heldout = _sentence_split(sentences, tokenizer, T, settings.unknown_chars)
            else:
                if len(corpus.heldout) < T:
                    raise AnalysisError(f"the held-out text holds {len(corpus.heldout):,} characters, fewer than one window ({T})")
                heldout = TextSplit(f"{corpus.name} held-out text", sample_windows(corpus.heldout, T, settings.n_windows, rng),
                                    len(corpus.heldout))
    except CorpusError as e:
        raise AnalysisError(str(e)) from None
    return AnalysisInputs(str(ckpt_path), Path(ckpt_path).stem, lang, model, tokenizer, state, discovery, heldout)


def _sentence_split(sentences: list[str], tokenizer: Tokenizer, T: int, unknown_chars: str) -> TextSplit:
    kept = [_apply_unknown_policy(tokenizer, normalize(s), f"sentence {s[:30]!r}", unknown_chars) for s in sentences if s.strip()]
    if not kept:
        raise AnalysisError("--sentences needs at least one non-empty sentence")
    for s in kept:
        if len(s) < 2:
            raise AnalysisError(f"sentence {s!r} is too short: a window needs at least 2 characters")
        if len(s) > T:
            raise AnalysisError(f"sentence {s[:30]!r}... holds {len(s)} characters; the model's window is {T}")
    return TextSplit("--sentences", kept, sum(map(len, kept)))


class SplitRun:
    """Running sums of one text split (only per-window score vectors are kept per window)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.scores = ScoreAccumulator()
        self.offsets = ScoreAccumulator()
        self.class_heads: Optional[torch.Tensor] = None
        self.class_base: Optional[torch.Tensor] = None
        self.metrics: dict[str, torch.Tensor] = {}
        self.n = 0

    def add(self, batch: AttentionBatch) -> None:
        cb = det.CharBatch(batch.ids, batch.classes)
        ws = det.score_masks(batch.attention, det.target_masks(cb, self.names))
        self.scores.add(ws.score.numpy(), ws.baseline.numpy())
        heads, base, _ = det.class_attention_sums(batch.attention, batch.classes)
        self.class_heads = heads if self.class_heads is None else self.class_heads + heads
        self.class_base = base if self.class_base is None else self.class_base + base
        for k, v in det.head_metric_sums(batch.attention).items():
            self.metrics[k] = self.metrics.get(k, 0) + v
        self.n += len(batch.texts)


def _row_normalize(m: torch.Tensor) -> list:
    return (m / m.sum(-1, keepdim=True).clamp_min(1e-12)).tolist()


class _Salient:
    """Per head, the largest non-trivial attention weights seen (not self, not position 0, rows >= 8,
    weight >= 0.25)."""

    def __init__(self, L: int, H: int) -> None:
        self.best: dict[tuple[int, int], list[tuple[float, str, str, str]]] = {(l, h): [] for l in range(L) for h in range(H)}

    def add(self, batch: AttentionBatch) -> None:
        A = batch.attention
        B, L, H, T, _ = A.shape
        i = torch.arange(T)[:, None]
        j = torch.arange(T)[None, :]
        keep = (j < i) & (j > 0) & (i >= MIN_SALIENT_ROW)
        flat = (A * keep).permute(1, 2, 0, 3, 4).reshape(L, H, -1)
        w, idx = flat.topk(min(8, flat.shape[-1]), dim=-1)
        for l in range(L):
            for h in range(H):
                for weight, k in zip(w[l, h].tolist(), idx[l, h].tolist()):
                    if weight < MIN_SALIENT_WEIGHT:
                        break
                    b, qi, kj = k // (T * T), (k // T) % T, k % T
                    text = batch.texts[b]
                    ctx = text[max(0, kj - 12):kj] + "[" + text[kj] + "]" + text[kj + 1:qi] + "<" + text[qi] + ">"
                    self.best[(l, h)].append((weight, text[qi], text[kj], ctx))

    def patterns(self) -> list[dict]:
        out = []
        for (l, h), cands in self.best.items():
            seen = set()
            for weight, frm, to, ctx in sorted(cands, reverse=True):
                if (frm, to) in seen or len(seen) >= SALIENT_PER_HEAD:
                    continue
                seen.add((frm, to))
                out.append({"layer": l, "head": h, "from": frm, "to": to, "weight": round(weight, 4), "context": ctx})
        return sorted(out, key=lambda p: -p["weight"])


def induction_test(inputs: AnalysisInputs, settings: Settings) -> dict:
    """Random character sequences repeated twice: attention from the second copy to the position after
    the matching character in the first copy, and the loss on each copy."""
    model, T = inputs.model.eval(), inputs.model.config.block_size
    half = T // 2
    rng = torch.Generator().manual_seed(settings.seed)
    vocab = torch.arange(1, inputs.tokenizer.vocab_size)
    first = vocab[torch.randint(len(vocab), (settings.induction_windows, half), generator=rng)]
    ids = torch.cat([first, first], dim=1)  # (N, 2 * half)
    i = torch.arange(2 * half)[:, None]
    j = torch.arange(2 * half)[None, :]
    mask = ((i >= half) & (j == i - half + 1)).expand(len(ids), 1, -1, -1).clone()
    scores, base, losses = [], [], []
    with torch.no_grad():
        for chunk, m in zip(ids.split(settings.batch_size), mask.split(settings.batch_size)):
            logits, _, att = model(chunk, return_attention=True)
            ws = det.score_masks(att.float(), m)
            scores.append(ws.score[:, 0])
            base.append(ws.baseline[:, 0])
            losses.append(torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), chunk[:, 1:], reduction="none"))
    loss = torch.cat(losses)  # (N, 2 * half - 1): loss[:, p] is the loss of predicting position p + 1
    return {
        "score": torch.cat(scores).mean(0).tolist(),
        "baseline": float(torch.cat(base).mean()),
        "loss_first_copy": float(loss[:, : half - 1].mean()),
        "loss_second_copy": float(loss[:, half:].mean()),
        "n_windows": len(ids), "length": 2 * half,
    }


class _AttentionStore:
    """--save-attention: every analyzed window's attention, float16, written to a memory map so that
    storing does not hold the windows in memory; zero-padded when windows differ in length."""

    def __init__(self, path: Path, n: int, L: int, H: int, T: int) -> None:
        self.path = path
        self.raw = path.with_suffix(".raw")
        self.attention = np.lib.format.open_memmap(self.raw, mode="w+", dtype=np.float16, shape=(n, L, H, T, T))
        self.texts: list[str] = []
        self.classes = np.full((n, T), -1, dtype=np.int8)
        self.split: list[str] = []

    def add(self, batch: AttentionBatch, split: str) -> None:
        k, (B, _, _, T, _) = len(self.texts), batch.attention.shape
        self.attention[k:k + B, :, :, :T, :T] = batch.attention.numpy().astype(np.float16)
        self.classes[k:k + B, :T] = batch.classes.numpy()
        self.texts += batch.texts
        self.split += [split] * B

    def close(self, lang: str) -> None:
        self.attention.flush()
        np.savez(self.path, attention=self.attention, text=np.array(self.texts), classes=self.classes,
                 class_names=np.array(CLASS_NAMES), lang=np.array(lang), split=np.array(self.split),
                 lengths=np.array([len(t) for t in self.texts]))
        del self.attention
        self.raw.unlink()


def _examples(batches: list[AttentionBatch], n: int, lang: str) -> dict[str, np.ndarray]:
    wins = [w for b in batches for w in b.windows()][:n]
    T = max(len(t) for _, t, _ in wins)
    L, H = wins[0][0].shape[:2]
    att = np.zeros((len(wins), L, H, T, T), dtype=np.float16)
    cls = np.full((len(wins), T), -1, dtype=np.int8)
    for k, (a, t, c) in enumerate(wins):
        att[k, :, :, : len(t), : len(t)] = a.numpy()
        cls[k, : len(t)] = c
    return {"attention": att, "text": np.array([t for _, t, _ in wins]), "classes": cls,
            "class_names": np.array(CLASS_NAMES), "lang": np.array(lang), "lengths": np.array([len(t) for _, t, _ in wins])}


def run_analysis(inputs: AnalysisInputs, settings: Settings, save_attention: Optional[Path] = None,
                 progress: bool = False) -> Analysis:
    """Score every head on the discovery and held-out windows, validate, and build the summary."""
    torch.manual_seed(settings.seed)
    cfg = inputs.model.config
    L, H = cfg.n_layer, cfg.n_head
    names = settings.detectors
    splits = {"discovery": inputs.discovery, "heldout": inputs.heldout}
    runs = {k: SplitRun(names) for k in splits}
    salient = _Salient(L, H)
    example_batches: list[AttentionBatch] = []
    store = None
    if save_attention is not None:
        n = len(inputs.discovery.windows) + len(inputs.heldout.windows)
        T = max(len(w) for s in splits.values() for w in s.windows)
        store = _AttentionStore(Path(save_attention), n, L, H, T)
    for key, split in splits.items():
        batches = iter_attention(inputs.model, inputs.tokenizer, split.windows, inputs.lang, settings.batch_size,
                                 unknown=split.unknown, progress=progress, desc=key, value_weighted=settings.value_weighted)
        for k, batch in enumerate(batches):
            runs[key].add(batch)
            if key == "discovery" and k < SALIENT_BATCHES:
                salient.add(batch)
            if key == "heldout" and sum(len(b.texts) for b in example_batches) < settings.n_examples:
                example_batches.append(batch)
            if store is not None:
                store.add(batch, key)
    if store is not None:
        store.close(inputs.lang)

    rng = np.random.default_rng(settings.seed)
    alpha_test = per_test_alpha(settings.alpha, len(names) * L * H)
    stats = {k: split_stats(*runs[k].scores.arrays(), settings.threshold, alpha_test, settings.n_boot, rng) for k in splits}
    valid = validated(stats["discovery"], stats["heldout"], settings.threshold, settings.min_lift, settings.min_windows)
    offsets = [k for k, n in enumerate(det.offset_detector_names()) if n in names]  # those among the chosen detectors
    offset_idx = [names.index(det.offset_detector_names()[k]) for k in offsets]
    disc_run = runs["discovery"]
    summary: dict[str, Any] = {
        "schema": 1,
        "checkpoint": inputs.ckpt_path,
        "name": inputs.name,
        "lang": inputs.lang,
        "model": {"n_layer": L, "n_head": H, "n_embd": cfg.n_embd, "block_size": cfg.block_size,
                  "vocab_size": cfg.vocab_size, "iter": int(inputs.state.get("iter", 0))},
        "settings": {"window": cfg.block_size, **settings.to_dict(), "alpha_per_test": alpha_test,
                     "n_tests": len(names) * L * H},
        "texts": {k: s.describe() for k, s in splits.items()},
        "detectors": detector_section(names, {n: det.REGISTRY[n].description for n in names},
                                      stats["discovery"], stats["heldout"], valid),
        "heads": head_table(names, stats["discovery"], stats["heldout"], valid),
        "offset_profile": {"offsets": offsets,
                           **{k: np.moveaxis(stats[k].score[offset_idx], 0, -1).tolist() for k in splits}},
        "class_attention": {"classes": list(CLASS_NAMES), "discovery": _row_normalize(disc_run.class_heads),
                            "heldout": _row_normalize(runs["heldout"].class_heads),
                            "base_rate": _row_normalize(disc_run.class_base)},
        "head_metrics": {k: (v / disc_run.n).tolist() for k, v in disc_run.metrics.items()},
        "induction_test": induction_test(inputs, settings),
        "salient_patterns": salient.patterns(),
    }
    return Analysis(summary, _examples(example_batches, settings.n_examples, inputs.lang))


def move_file(src: Path, dst: Path) -> None:
    """Move a finished file into place (a same-folder rename when possible: never half-written)."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.move(str(src), tmp)
    os.replace(tmp, dst)


def analyze_checkpoint(ckpt_path: str | os.PathLike, out_dir: str | os.PathLike, *, text_path: Optional[str] = None,
                       sentences: Optional[list[str]] = None, settings: Optional[Settings] = None,
                       progress: bool = False) -> dict:
    """The whole analysis of one checkpoint, report files written atomically into `out_dir`."""
    from analysis.report.files import staged_output_dir, write_outputs
    settings = settings or Settings()
    inputs = load_inputs(ckpt_path, settings, text_path=text_path, sentences=sentences)
    with staged_output_dir(Path(out_dir)) as tmp:
        analysis = run_analysis(inputs, settings, progress=progress)
        write_outputs(analysis.summary, analysis.examples, tmp)
    return analysis.summary
