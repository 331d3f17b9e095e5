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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from charlens.analysis.measures import detectors as det
from charlens.data.corpora import Corpus, corpus_from_identity
from charlens.data.textfile import FilteredText, TextFile, char_tally, window_starts
from charlens.data.errors import CharlensError
from charlens.data.tokenizer import Tokenizer, describe_chars, normalize, tokenizer_from_dict
from charlens.model.checkpoint import load_checkpoint, model_from_checkpoint
from charlens.model.transformer import TransformerLM

UNKNOWN_POLICIES = ("error", "drop", "replace")
FOREIGN_SHARE = 0.5  # a text with more than this share of its letters outside the vocabulary is in another alphabet


class AnalysisError(CharlensError):
    """An input the analysis cannot use."""


@dataclass(frozen=True)
class Settings:
    """Every setting that changes a number; recorded in summary.json."""

    n_windows: int = 256  # per split
    batch_size: int = 32
    min_selectivity: float = 0.3  # the cut: a behaviour's selectivity bound must clear it (analysis.measures.stats)
    alpha: float = 0.05
    n_boot: int = 1000
    min_windows: int = 10
    induction_windows: int = 32  # repeated random sequences in each of the two repetition sets
    decompose_windows: int = 32  # windows of each split for the attention decomposition (fit / held-out share)
    seed: int = 0
    n_examples: int = 4
    unknown_chars: str = "error"  # characters of --text/--sentences outside the vocabulary: error, drop or replace
    value_weighted: bool = False  # score detectors on value-weighted attention instead of raw weights (--value-weighted)
    detectors: Optional[list[str]] = None  # None: every detector that applies to the language (detectors_for)

    def to_dict(self) -> dict:
        return asdict(self)

    def detectors_for(self, lang: str) -> list[str]:
        """The detectors an analysis of text in `lang` scores."""
        return list(self.detectors) if self.detectors else det.detectors_for(lang)


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
    unknown: Optional["UnknownChars"] = None  # what --unknown-chars did to --text / --sentences (None: nothing to do)


@dataclass(frozen=True)
class UnknownChars:
    """Characters of --text / --sentences outside the model's vocabulary and what the policy did with them."""

    policy: str
    characters: str  # the distinct characters, sorted
    count: int  # occurrences dropped (drop) or replaced by the unknown token (replace)
    n_chars: int  # characters of the text before the policy
    foreign_letters: float  # share of the text's letters outside the vocabulary

    @property
    def foreign(self) -> bool:
        return self.foreign_letters > FOREIGN_SHARE

    def describe(self) -> dict:
        return {"policy": self.policy, "characters": self.characters, "count": self.count,
                "share": self.count / max(self.n_chars, 1), "foreign_letters": self.foreign_letters, "foreign": self.foreign}

    def message(self) -> str:
        """One line for the console and report.md."""
        done = "removed" if self.policy == "drop" else "replaced by the unknown token"
        line = (f"--unknown-chars {self.policy} {done} {self.count:,} of {self.n_chars:,} characters "
                f"({100 * self.count / max(self.n_chars, 1):.1f}%): {describe_chars(set(self.characters))}")
        if self.foreign:
            line += (f"; {100 * self.foreign_letters:.0f}% of its letters are outside the model's alphabet: the text is not "
                     "in the model's language, and what the heads do on it says little about the model")
        return line


def sample_windows(text: str, T: int, n: int, rng: np.random.Generator) -> list[str]:
    """Up to `n` non-overlapping windows of `T` characters, a seeded random choice, in text order."""
    return [text[s:s + T] for s in window_starts(len(text), T, n, rng)]


def _unknown_report(tally: dict[str, int], missing: set[str], what: str, policy: str) -> UnknownChars:
    """What the policy does with the `missing` characters of a text whose characters are tallied; under
    `error` an AnalysisError naming them (and saying so when most of its letters are foreign)."""
    letters = sum(n for c, n in tally.items() if c.isalpha())
    foreign = sum(n for c, n in tally.items() if c.isalpha() and c in missing) / letters if letters else 0.0
    report = UnknownChars(policy, "".join(sorted(missing)), sum(tally.get(c, 0) for c in missing), sum(tally.values()),
                          foreign)
    if policy == "error":
        if report.foreign:
            raise AnalysisError(f"{what}: {100 * report.foreign_letters:.0f}% of its letters are outside the model's alphabet "
                                "(a text in another language or script?); --unknown-chars drop or replace analyzes it anyway")
        raise AnalysisError(f"{what} holds {len(missing)} character(s) outside the model's vocabulary: {describe_chars(missing)} "
                            "(--unknown-chars drop or replace analyzes it anyway)")
    return report


def _apply_unknown_policy(tokenizer: Tokenizer, texts: list[str], what: str, policy: str) -> tuple[list[str], Optional[UnknownChars]]:
    """The texts to analyze under the policy for characters outside the vocabulary: `error` refuses
    them, `drop` deletes them, `replace` keeps them (encoded as the reserved unknown token); with what
    was done, for the report."""
    missing = set().union(*(tokenizer.unknown_chars(t) for t in texts))
    if not missing:
        return texts, None
    report = _unknown_report(char_tally("".join(texts)), missing, what, policy)
    if policy == "drop":
        texts = [t.translate(dict.fromkeys(map(ord, missing))) for t in texts]
    return texts, report


def _file_splits(path: str, tokenizer: Tokenizer, T: int, n_windows: int, policy: str,
                 rng: np.random.Generator) -> tuple[TextSplit, TextSplit, str, Optional[UnknownChars]]:
    """--text: discovery windows from the file's first half, held-out windows from its second, read from
    disk in pieces (memory flat in the file's size); with characters outside the vocabulary, one more
    pass counts them (and, under `drop`, indexes the text without them)."""
    file = TextFile(path, progress=True)
    stats = file.stats()
    missing = tokenizer.unknown_chars("".join(stats.chars))
    text: TextFile | FilteredText = file
    n, lang, unknown = stats.n_chars, stats.lang, None
    if missing:
        filtered = FilteredText(file, missing)
        unknown = _unknown_report(filtered.tally, missing, path, policy)
        if policy == "drop":
            text, n, lang = filtered, filtered.n_chars, filtered.lang
    if n // 2 < T:
        raise AnalysisError(f"{path} holds {n:,} characters; at least {2 * T:,} are needed "
                            f"(one {T}-character window in each half)")
    return (TextSplit(f"{path} (first half)", text.sample_windows("first", T, n_windows, rng), n // 2),
            TextSplit(f"{path} (second half)", text.sample_windows("second", T, n_windows, rng), n - n // 2),
            lang, unknown)


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
    if T < 2:
        raise AnalysisError(f"{ckpt_path}: a model with a context of {T} character attends only to the character itself: "
                            "there is no attention to analyse (train with --block-size 2 or more)")
    rng = np.random.default_rng(settings.seed)
    unknown_detectors = [s for s in settings.detectors or () if s not in det.REGISTRY]
    if unknown_detectors:
        raise AnalysisError(f"unknown detector(s): {', '.join(unknown_detectors)}; known: {', '.join(det.REGISTRY)}")
    corpus, unknown = None, None
    if text_path is not None:
        discovery, heldout, lang, unknown = _file_splits(str(text_path), tokenizer, T, settings.n_windows,
                                                         settings.unknown_chars, rng)
    else:
        corpus = corpus_from_identity(state["corpus"])
        lang = corpus.lang
        if len(corpus.train) < T:
            raise AnalysisError(f"the training text holds {len(corpus.train):,} characters, fewer than one window ({T})")
        discovery = TextSplit(f"{corpus.name} training text", sample_windows(corpus.train, T, settings.n_windows, rng),
                              len(corpus.train))
        if sentences is not None:
            heldout, unknown = _sentence_split(sentences, tokenizer, T, settings.unknown_chars)
        else:
            if len(corpus.heldout) < T:
                raise AnalysisError(f"the held-out text holds {len(corpus.heldout):,} characters, fewer than one window ({T})")
            heldout = TextSplit(f"{corpus.name} held-out text", sample_windows(corpus.heldout, T, settings.n_windows, rng),
                                len(corpus.heldout))
    return AnalysisInputs(str(ckpt_path), Path(ckpt_path).stem, lang, model, tokenizer, state, discovery, heldout, corpus,
                          unknown)


def _sentence_split(sentences: list[str], tokenizer: Tokenizer, T: int, unknown_chars: str) -> tuple[TextSplit, Optional[UnknownChars]]:
    kept, unknown = _apply_unknown_policy(tokenizer, [normalize(s) for s in sentences if s.strip()], "--sentences", unknown_chars)
    if not kept:
        raise AnalysisError("--sentences needs at least one non-empty sentence")
    for s in kept:
        if len(s) < 2:
            raise AnalysisError(f"sentence {s!r} is too short: a window needs at least 2 characters")
        if len(s) > T:
            raise AnalysisError(f"sentence {s[:30]!r}... holds {len(s)} characters; the model's window is {T}")
    return TextSplit("--sentences", kept, sum(map(len, kept))), unknown


def parallel_windows(units: Sequence[Sequence[tuple[str, str]]], T: int, n: int,
                     seed: int = 0) -> tuple[list[list[str]], list[str]]:
    """Held-out windows of T characters that start at the same verse in every text (two languages, or the
    four conditions of a study). Each text is the verses whose references ("Ruth 1:1") appear in all of
    them, joined by newlines in the order of the first; windows overlap in no text; a seeded choice of at
    most `n` of them. Returns (the windows of each text, the starting references)."""
    common = set.intersection(*(set(k for k, _ in u) for u in units))
    keys = [k for k, _ in units[0] if k in common]
    texts, starts = [], []
    for source in map(dict, units):
        pos, start = 0, {}
        for k in keys:
            start[k] = pos
            pos += len(source[k]) + 1
        texts.append("\n".join(source[k] for k in keys) + "\n")
        starts.append(start)
    chosen, ends = [], [0] * len(units)
    for k in keys:
        s = [start[k] for start in starts]
        if all(s[i] >= ends[i] and s[i] + T <= len(texts[i]) for i in range(len(units))):
            chosen.append(k)
            ends = [x + T for x in s]
    if len(chosen) > n:
        pick = np.sort(np.random.default_rng(seed).choice(len(chosen), n, replace=False))
        chosen = [chosen[i] for i in pick]
    return [[text[start[k]:start[k] + T] for k in chosen] for text, start in zip(texts, starts)], chosen


def parallel_heldout(inputs: Sequence[AnalysisInputs], n_windows: int, seed: int = 0) -> Optional[list[AnalysisInputs]]:
    """When every analysis reads a default Bible (either language, any script variant), copies of them whose
    held-out windows start at the same held-out verses (`parallel_windows`), each in its own text; else None."""
    corpora = [i.corpus for i in inputs]
    if not all(c is not None and c.identity.get("kind") == "bible" for c in corpora):
        return None
    T = min(i.model.config.block_size for i in inputs)
    windows, keys = parallel_windows([c.heldout_units for c in corpora if c is not None], T, n_windows, seed)

    def replaced(one: AnalysisInputs, texts: list[str]) -> AnalysisInputs:
        assert one.corpus is not None
        others = sorted({c.name for c in corpora if c is not None} - {one.corpus.name})
        source = (f"{one.corpus.name} held-out verses, {len(keys)} windows starting at the same verses as in "
                  f"{', '.join(others) or 'the other models'} ({keys[0]} ... {keys[-1]})" if keys else "none")
        return dataclasses.replace(one, heldout=TextSplit(source, texts, sum(map(len, texts))))
    return [replaced(one, texts) for one, texts in zip(inputs, windows)]
