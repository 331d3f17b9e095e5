"""Tokenizers behind one small interface; a checkpoint stores the kind and its vocabulary.

Character-level: a subword tokenizer would implement the same four methods and a `kind`.
"""
from __future__ import annotations

import unicodedata
from typing import Literal, Protocol

import numpy as np

UNKNOWN_CHAR = "\ufffd"  # reserved token for characters outside the vocabulary
UNKNOWN_ID = 0  # its id in every CharTokenizer

UnknownPolicy = Literal["error", "replace"]


def ids_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every id of a vocabulary: uint8 up to 256 tokens, else
    uint16 (up to 65,536, the largest vocabulary charlens builds: model.limits.ARCH_RANGES)."""
    if vocab_size > 65_536:
        raise ValueError(f"a vocabulary of {vocab_size:,} tokens does not fit uint16 ids (at most 65,536)")
    return np.dtype(np.uint8 if vocab_size <= 256 else np.uint16)


class UnknownCharactersError(ValueError):
    """Text holds characters the vocabulary lacks."""


def normalize(text: str) -> str:
    """NFC, so that a letter with points has one spelling whatever the source."""
    return unicodedata.normalize("NFC", text)


def describe_chars(chars: set[str] | list[str], limit: int = 10) -> str:
    shown = sorted(chars)[:limit]
    desc = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in shown)
    return desc + (f" and {len(chars) - limit} more" if len(chars) > limit else "")


class Tokenizer(Protocol):
    kind: str

    @property
    def vocab_size(self) -> int: ...
    def encode(self, text: str, unknown: UnknownPolicy = "error") -> np.ndarray: ...
    def unknown_chars(self, text: str) -> set[str]: ...
    def decode(self, ids) -> str: ...
    def to_dict(self) -> dict: ...


class CharTokenizer:
    """One token per (NFC-normalized) character; id 0 is reserved for unknown characters."""

    kind = "char"

    def __init__(self, chars: list[str]):
        chars = [c for c in chars if c != UNKNOWN_CHAR]
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("vocabulary must be distinct single characters")
        self.chars = [UNKNOWN_CHAR] + chars
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        # id of every code point up to the largest in the vocabulary, and one slot beyond for all larger ones
        codes = np.array([ord(c) for c in self.chars[1:]], dtype=np.int64)
        self._ids = np.full(int(codes.max(initial=0)) + 2, UNKNOWN_ID, dtype=np.uint16)
        self._ids[codes] = np.arange(1, len(self.chars), dtype=np.uint16)

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(normalize(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown_chars(self, text: str) -> set[str]:
        return set(normalize(text)) - self.stoi.keys()

    def encode(self, text: str, unknown: UnknownPolicy = "error") -> np.ndarray:
        """Ids as uint16 (vocabularies are small). Characters outside the vocabulary raise
        UnknownCharactersError naming them, or map to the reserved token with unknown='replace'."""
        text = normalize(text)
        missing = self.unknown_chars(text)
        if missing and unknown == "error":
            raise UnknownCharactersError(f"{len(missing)} character(s) not in the model's vocabulary: {describe_chars(missing)}")
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)  # one look-up, no Python loop
        return self._ids[np.minimum(codes, len(self._ids) - 1)]

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": "".join(self.chars[1:])}


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """The tokenizer a checkpoint stores; ValueError saying what is wrong for anything else."""
    if not isinstance(d, dict):
        raise ValueError(f"expected a dict, got {type(d).__name__}")
    if d.get("kind") != "char":
        raise ValueError(f"unknown tokenizer kind {d.get('kind')!r}")
    if not isinstance(d.get("chars"), str):
        raise ValueError(f"chars must be a string, got {type(d.get('chars')).__name__}")
    return CharTokenizer(list(d["chars"]))
