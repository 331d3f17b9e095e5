"""Behaviour detectors: one function per behaviour, each a target mask; scoring is in `scoring`.

A detector turns a batch of windows' characters into a target mask M (B, T, T): M[b, i, j] is
True when key j is a target of query i (always j <= i). Row 0 is never scored (one key, no choice).
There is no BOS token and no BOS assumption: a word or line cut by the window's start has no
known start, so detectors that need one give its rows no target.

Each detector also names its control, the baseline its selectivity is measured against:
- "uniform": uniform causal attention (where the key is, by offset alone: offsets, the local window, position 0);
- "structure": a head that picks keys by offset alone, with the head's own attention at every offset (where the
  key is in the text's words and lines: word, line and separator detectors, analysis.measures.structural), so a
  head that merely looks nearby is not credited with knowing words;
- "position": a class-blind head with the head's own positional profile (what the key is: a class,
  a letter set, the query's character), so a head is credited only beyond its structure;
- "prefix": a one-character prefix matcher with the head's own mass on one-character matches
  (prefix matches of length k >= 2), so copying after any single matching character is not induction.

Adding a detector: write `def my_targets(b: CharBatch) -> torch.Tensor` (bool (B, T, T)) and
register it with `@detector("name", "one line: what the target set is", control=...)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

import torch

from charlens.data.charclasses import CLASS_INDEX, FEATURE_BITS, LANGUAGE_DETECTORS

MAX_OFFSET = 8  # the offset profile covers offsets 0..MAX_OFFSET
LOCAL_WINDOW = 2  # the local detector's window: offsets 0..LOCAL_WINDOW
MAX_PREFIX = 4  # prefix-match detectors for prefix lengths 1..MAX_PREFIX

Control = Literal["uniform", "structure", "position", "prefix"]


@dataclass
class CharBatch:
    """What detectors see of a batch of windows: token ids, class codes and feature bits, each (B, T) long
    (features: data.charclasses.features; None = no character has a feature)."""

    ids: torch.Tensor
    classes: torch.Tensor
    features: Optional[torch.Tensor] = None
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """`compute()` once per batch: word structure, prefix matches and strata are shared by several detectors."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.ids.shape)  # type: ignore[return-value]

    def positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Query index i (T, 1) and key index j (1, T)."""
        t = torch.arange(self.ids.shape[1], device=self.ids.device)
        return t[:, None], t[None, :]

    def in_class(self, *names: str) -> torch.Tensor:
        """(B, T) bool: the character is in one of the named classes."""
        return torch.isin(self.classes, torch.tensor([CLASS_INDEX[n] for n in names], device=self.classes.device))

    def has_feature(self, name: str) -> torch.Tensor:
        """(B, T) bool: the character has the named feature (data.charclasses.FEATURES)."""
        if self.features is None:
            return torch.zeros(self.shape, dtype=torch.bool, device=self.ids.device)
        return (self.features & FEATURE_BITS[name]) != 0


@dataclass(frozen=True)
class Detector:
    name: str
    description: str
    targets: Callable[[CharBatch], torch.Tensor]
    control: Control = "uniform"
    language_specific: bool = False  # applies only to the languages whose LANGUAGE_DETECTORS entry names it
    key: Optional[Callable[[CharBatch], torch.Tensor]] = None  # at most one target per row: its index (B, T), -1 none
    key_set: Optional[Callable[[CharBatch], torch.Tensor]] = None  # targets = every key up to i with this flag (B, T)
    offsets: tuple[int, ...] = ()  # targets = the keys at these offsets i - j (whatever the text)


REGISTRY: dict[str, Detector] = {}


def detector(name: str, description: str, control: Control = "uniform", language_specific: bool = False):
    def register(fn: Callable[[CharBatch], torch.Tensor]) -> Callable[[CharBatch], torch.Tensor]:
        REGISTRY[name] = Detector(name, description, fn, control, language_specific)
        return fn
    return register


def key_set_detector(name: str, description: str, flags: Callable[[CharBatch], torch.Tensor], language_specific: bool = False,
                     control: Control = "position") -> None:
    """Register a detector whose targets are every key j <= i with `flags(b)[j]` ((B, T) bool: what the key is;
    separators are where words end, so they take the structural control). Its mask is derived; the scoring needs
    only the attention each key receives."""
    REGISTRY[name] = Detector(name, description, _key_is(flags), control, language_specific, key_set=flags)


def offset_detector(name: str, description: str, offsets: tuple[int, ...]) -> None:
    """Register a detector whose targets are the keys at fixed offsets i - j: scored from the matrix's diagonals."""
    def targets(b: CharBatch) -> torch.Tensor:
        i, j = b.positions()
        return torch.isin(i - j, torch.tensor(offsets, device=b.ids.device)).expand(b.shape[0], -1, -1)
    REGISTRY[name] = Detector(name, description, targets, offsets=offsets)


def key_detector(name: str, description: str, control: Control = "structure"):
    """Register a detector with at most one target per row, given as `fn(b)`: the key's index per row ((B, T)
    long, -1 = none). Its mask is derived; the scoring gathers the one weight per row instead of a T x T mask."""
    def register(fn: Callable[[CharBatch], torch.Tensor]) -> Callable[[CharBatch], torch.Tensor]:
        REGISTRY[name] = Detector(name, description, lambda b: _at(b, fn(b)), control, key=fn)
        return fn
    return register


def detectors_for(lang: str) -> list[str]:
    """The detectors that apply to a language, in registry order."""
    own = LANGUAGE_DETECTORS.get(lang, ())
    return [n for n, d in REGISTRY.items() if not d.language_specific or n in own]


# ---- word and line structure -------------------------------------------------------------------------

def word_structure(b: CharBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return b.memo("words", lambda: _word_structure(b))


def _word_structure(b: CharBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Words are maximal runs of characters other than space, newline and punctuation.
    Returns in_word (B, T) bool, starts (B, T) bool (first character of a word whose start is in the
    window: position 0 never counts, its word may have begun before the window) and word_id (B, T)
    long: 1, 2, ... for the words that start in the window, counted up to each position (0: the word
    cut by the window's start, or none yet). A separator carries the id of the last word before it."""
    in_word = ~b.in_class("space", "newline", "punctuation")
    starts = in_word.clone()
    starts[:, 0] = False
    starts[:, 1:] &= ~in_word[:, :-1]
    return in_word, starts, starts.long().cumsum(dim=1)


def line_starts(b: CharBatch) -> torch.Tensor:
    """(B, T) bool: the character follows a newline (position 0 never counts)."""
    def compute() -> torch.Tensor:
        after = torch.zeros(b.shape, dtype=torch.bool, device=b.ids.device)
        after[:, 1:] = b.in_class("newline")[:, :-1]
        return after
    return b.memo("lines", compute)


def _last_before(flags: torch.Tensor, strict: bool) -> torch.Tensor:
    """(B, T) long: the last position p with flags[p], p < t (strict) or p <= t; -1 if none."""
    t = torch.arange(flags.shape[1], device=flags.device).expand_as(flags)
    last = torch.where(flags, t, torch.full_like(t, -1)).cummax(dim=1).values
    if not strict:
        return last
    return torch.cat([torch.full_like(last[:, :1], -1), last[:, :-1]], dim=1)


def _at(b: CharBatch, key_of_row: torch.Tensor) -> torch.Tensor:
    """Mask with one target per row: key_of_row (B, T) long, -1 = no target."""
    _, j = b.positions()
    return (j[None] == key_of_row[:, :, None]) & (key_of_row[:, :, None] >= 0)


# ---- offsets -----------------------------------------------------------------------------------------

def _key_is(flags: Callable[[CharBatch], torch.Tensor]) -> Callable[[CharBatch], torch.Tensor]:
    """Targets: every key up to the query whose character has `flags(b)` (B, T)."""
    def targets(b: CharBatch) -> torch.Tensor:
        i, j = b.positions()
        return flags(b)[:, None, :] & (j <= i)
    return targets


offset_detector("self", "the query's own position (j = i)", (0,))
offset_detector("previous_char", "the previous character (j = i - 1)", (1,))
for _k in range(2, MAX_OFFSET + 1):
    offset_detector(f"offset_{_k}", f"the character {_k} back (j = i - {_k})", (_k,))
offset_detector("local", f"the query and the {LOCAL_WINDOW} characters before it (offsets 0..{LOCAL_WINDOW})",
                tuple(range(LOCAL_WINDOW + 1)))


# ---- key classes (separators: structural control; letter classes: positional) ------------------------

key_set_detector("space", "every space or newline up to the query (word boundaries)", lambda b: b.in_class("space", "newline"),
                 control="structure")
key_set_detector("punctuation", "every punctuation mark up to the query", lambda b: b.in_class("punctuation"),
                 control="structure")
key_set_detector("vowel", "every vowel up to the query (Hebrew: vowel letters and niqqud)", lambda b: b.in_class("vowel"))
key_set_detector("consonant", "every consonant up to the query", lambda b: b.in_class("consonant"))
key_set_detector("capital", "every capital letter up to the query", lambda b: b.in_class("upper"), language_specific=True)
key_set_detector("prefix_letter", "every word-initial prefix letter (ו ה ב ל מ ש כ) up to the query",
                 lambda b: b.has_feature("prefix_letter") & word_structure(b)[1], language_specific=True)
key_set_detector("final_form", "every final letter form (ך ם ן ף ץ) up to the query", lambda b: b.has_feature("final_form"),
                 language_specific=True)


@detector("duplicate", "earlier occurrences of the query's character (text[j] = text[i], j < i)", control="position")
def duplicate(b: CharBatch) -> torch.Tensor:
    i, j = b.positions()
    return (b.ids[:, :, None] == b.ids[:, None, :]) & (j < i)


# ---- word and line structure -------------------------------------------------------------------------

@key_detector("recent_space", "the most recent space or newline before the query")
def recent_space(b: CharBatch) -> torch.Tensor:
    return _last_before(b.in_class("space", "newline"), strict=True)


@key_detector("word_start", "the first character of the query's word (the query inside a word)")
def word_start(b: CharBatch) -> torch.Tensor:
    in_word, starts, _ = word_structure(b)
    start = _last_before(starts, strict=False)
    return torch.where(in_word, start, torch.full_like(start, -1))


@detector("same_word", "every character of the query's word up to the query (the query inside a word)", control="structure")
def same_word(b: CharBatch) -> torch.Tensor:
    in_word, _, wid = word_structure(b)
    i, j = b.positions()
    same = (wid[:, :, None] == wid[:, None, :]) & (wid[:, :, None] > 0)
    return same & in_word[:, :, None] & in_word[:, None, :] & (j <= i)


@detector("previous_word", "every character of the word before the query's word (from a separator: the word just ended)",
          control="structure")
def previous_word(b: CharBatch) -> torch.Tensor:
    in_word, _, wid = word_structure(b)
    wanted = wid - in_word.long()  # inside a word: the one before it; on a separator: the last one
    return (wid[:, None, :] == wanted[:, :, None]) & (wanted[:, :, None] > 0) & in_word[:, None, :]


@key_detector("line_start", "the first character of the query's line (a verse in the Bibles)")
def line_start(b: CharBatch) -> torch.Tensor:
    return _last_before(line_starts(b), strict=False)


@key_detector("first_position", "the window's first position (j = 0, an attention sink)", control="uniform")
def first_position(b: CharBatch) -> torch.Tensor:
    return torch.zeros(b.shape, dtype=torch.long, device=b.ids.device)


# ---- prefix matching (induction) ---------------------------------------------------------------------

def prefix_match_name(k: int) -> str:
    return f"prefix_match_{k}"


def prefix_match(b: CharBatch, k: int) -> torch.Tensor:
    """The character right after an earlier occurrence of the query's last k characters:
    text[j-k .. j-1] = text[i-k+1 .. i], j < i. (Built from the k-1 matches, once per batch.)"""
    return b.memo(("prefix", k), lambda: _prefix_match(b, k))


def _prefix_match(b: CharBatch, k: int) -> torch.Tensor:
    B, T = b.shape
    if k == 1:
        i, j = b.positions()
        one = torch.zeros(B, T, T, dtype=torch.bool, device=b.ids.device)
        one[:, :, 1:] = b.ids[:, :, None] == b.ids[:, None, :-1]  # one[i, j] = (text[j-1] = text[i])
        return one & (j < i)
    one, s = prefix_match(b, 1), k - 1
    out = torch.zeros_like(one)
    out[:, s:, s:] = prefix_match(b, k - 1)[:, s:, s:] & one[:, :-s, :-s]  # and text[j-1-s] = text[i-s]
    return out


for _k in range(1, MAX_PREFIX + 1):
    detector(prefix_match_name(_k), f"the character after an earlier occurrence of the query's last {_k} character(s) "
             f"(text[j-{_k}..j-1] = text[i-{_k - 1}..i], j < i)" if _k > 1 else
             "the character after an earlier occurrence of the query's character (text[j-1] = text[i], j < i)",
             control="prefix" if _k > 1 else "uniform")(lambda b, _k=_k: prefix_match(b, _k))


def offset_detector_names() -> list[str]:
    """Detector names of offsets 0..MAX_OFFSET, in order (the offset profile)."""
    return ["self", "previous_char"] + [f"offset_{k}" for k in range(2, MAX_OFFSET + 1)]


def target_masks(b: CharBatch, names: list[str], dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """Stacked target masks (B, D, T, T) of the named detectors as `dtype` (1 = target), row 0 cleared."""
    B, T = b.shape
    masks = torch.empty(B, len(names), T, T, dtype=dtype, device=b.ids.device)
    for d, name in enumerate(names):
        masks[:, d] = REGISTRY[name].targets(b)
    masks[:, :, 0, :] = 0
    return masks
