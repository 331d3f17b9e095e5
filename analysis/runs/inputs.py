"""What an analysis reads: the checkpoint's model and tokenizer, and the discovery and held-out texts
cut into windows. Every input check happens here, before any work.

Texts: by default, discovery windows come from the checkpoint corpus's training text and held-out
windows from its held-out text (for the Bibles: held-out books). `--text FILE` splits the file in
halves (first = discovery, second = held-out: contiguous halves share no passage), and `--sentences`
makes each sentence one held-out window, with discovery on the training text. Two analyses of the
default Bibles can be put on parallel held-out windows (`parallel_heldout`): the same verses in both.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from analysis.measures import detectors as det
from data.corpora import Corpus, corpus_from_identity, detect_language, read_text_file
from data.textfile import window_starts
from data.errors import CharlensError
from data.tokenizer import Tokenizer, describe_chars, normalize, tokenizer_from_dict
from model.checkpoint import load_checkpoint, model_from_checkpoint
from model.transformer import TransformerLM

UNKNOWN_POLICIES = ("error", "drop", "replace")


class AnalysisError(CharlensError):
    """An input the analysis cannot use."""


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class TextSplit:
    source: str
    windows: list[str]
    n_chars: int

    def describe(self) -> dict:
        return {"source": self.source, "n_windows": len(self.windows), "n_chars": self.n_chars}


@dataclass(frozen=True)
class AnalysisInputs:
    ckpt_path: str
    name: str
    lang: str
    model: TransformerLM
    tokenizer: Tokenizer
    state: dict
    discovery: TextSplit
    heldout: TextSplit
    corpus: Optional[Corpus] = None  # the checkpoint's corpus when the texts come from it (not for --text)


def sample_windows(text: str, T: int, n: int, rng: np.random.Generator) -> list[str]:
    """Up to `n` non-overlapping windows of `T` characters, a seeded random choice, in text order."""
    return [text[s:s + T] for s in window_starts(len(text), T, n, rng)]


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
    """Load the checkpoint and cut the texts into windows; a CharlensError on any unusable input.
    --unknown-chars is applied to --text / --sentences here, before windows are cut; characters of the
    corpus's own held-out text that its training text lacked are encoded as the unknown token."""
    state = load_checkpoint(ckpt_path)
    try:
        model = model_from_checkpoint(state)
        tokenizer = tokenizer_from_dict(state["tokenizer"])
    except (RuntimeError, TypeError, ValueError, KeyError) as e:
        raise AnalysisError(f"{ckpt_path} does not hold a usable model ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    T = model.config.block_size
    rng = np.random.default_rng(settings.seed)
    unknown_detectors = [s for s in settings.detectors if s not in det.REGISTRY]
    if unknown_detectors:
        raise AnalysisError(f"unknown detector(s): {', '.join(unknown_detectors)}; known: {', '.join(det.REGISTRY)}")
    corpus = None
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
    return AnalysisInputs(str(ckpt_path), Path(ckpt_path).stem, lang, model, tokenizer, state, discovery, heldout, corpus)


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


def parallel_windows(units_a: Sequence[tuple[str, str]], units_b: Sequence[tuple[str, str]], T: int, n: int,
                     seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """Held-out windows of T characters that start at the same verse in both texts.
    Both texts are the verses whose references ("Ruth 1:1") appear in both, joined by
    newlines in the order of `units_a`; windows do not overlap in either text; a seeded
    choice of at most `n` of them. Returns (windows_a, windows_b, starting references)."""
    b_text = dict(units_b)
    keys = [k for k, _ in units_a if k in b_text]
    a_text = dict(units_a)
    texts, starts = [], []
    for source in (a_text, b_text):
        pos, start = 0, {}
        for k in keys:
            start[k] = pos
            pos += len(source[k]) + 1
        texts.append("\n".join(source[k] for k in keys) + "\n")
        starts.append(start)
    chosen, ends = [], [0, 0]
    for k in keys:
        s = [starts[0][k], starts[1][k]]
        if all(s[i] >= ends[i] and s[i] + T <= len(texts[i]) for i in range(2)):
            chosen.append(k)
            ends = [s[0] + T, s[1] + T]
    if len(chosen) > n:
        pick = np.sort(np.random.default_rng(seed).choice(len(chosen), n, replace=False))
        chosen = [chosen[i] for i in pick]
    return ([texts[0][starts[0][k]:starts[0][k] + T] for k in chosen],
            [texts[1][starts[1][k]:starts[1][k] + T] for k in chosen], chosen)


def parallel_heldout(a: AnalysisInputs, b: AnalysisInputs, n_windows: int,
                     seed: int = 0) -> Optional[tuple[AnalysisInputs, AnalysisInputs]]:
    """When both analyses read the default Bibles, copies of both whose held-out windows start at the
    same held-out verses (`parallel_windows`), each in its own language; else None."""
    if not (a.corpus and b.corpus and a.corpus.identity.get("kind") == b.corpus.identity.get("kind") == "bible"):
        return None
    T = min(a.model.config.block_size, b.model.config.block_size)
    wa, wb, keys = parallel_windows(a.corpus.heldout_units, b.corpus.heldout_units, T, n_windows, seed)

    def replaced(inputs: AnalysisInputs, windows: list[str], other: Corpus) -> AnalysisInputs:
        assert inputs.corpus is not None
        source = (f"{inputs.corpus.name} held-out verses, {len(keys)} windows starting at the same verses as in "
                  f"{other.name} ({keys[0]} ... {keys[-1]})" if keys else "none")
        return dataclasses.replace(inputs, heldout=TextSplit(source, windows, sum(map(len, windows))))
    return replaced(a, wa, b.corpus), replaced(b, wb, a.corpus)
