"""Tiny checkpoints for the analyzer tests: a file corpus and a model, saved as a real checkpoint."""
from __future__ import annotations

from pathlib import Path

import torch

from charlens.data.corpora import bible_corpus, file_corpus
from charlens.data.tokenizer import CharTokenizer
from charlens.model.checkpoint import save_checkpoint
from charlens.model.transformer import ModelConfig, TransformerLM

ENGLISH = (
    "In the beginning God created the heaven and the earth. And the earth was without form, and void; "
    "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.\n"
    "And God said, Let there be light: and there was light. And God saw the light, that it was good: "
    "and God divided the light from the darkness. And God called the light Day, and the darkness he called Night.\n"
)


def write_corpus(path: Path, text: str = ENGLISH, repeat: int = 30) -> Path:
    path.write_text(text * repeat, encoding="utf-8")
    return path


def make_checkpoint(tmp_path: Path, seed: int = 0, block_size: int = 32, n_layer: int = 2, n_head: int = 2,
                    n_embd: int = 32, text: str = ENGLISH, bible: bool = False, lang: str = "en") -> tuple[Path, TransformerLM]:
    """A checkpoint of a freshly initialized model over a file corpus made of `text`, or over the
    default Bible of `lang` (training books vs held-out books)."""
    corpus = bible_corpus(lang) if bible else file_corpus(write_corpus(tmp_path / f"corpus{seed}.txt", text), block_size=block_size)
    tok = CharTokenizer.from_text(corpus.train + corpus.heldout)
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
    model = TransformerLM(cfg).eval()
    state = {"model_config": model.config.to_dict(), "model": model.state_dict(), "tokenizer": tok.to_dict(),
             "corpus": corpus.identity, "iter": 0, "train_args": {}}
    path = tmp_path / f"model{seed}.pt"
    save_checkpoint(state, path)
    return path, model
