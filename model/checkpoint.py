"""Checkpoints: written atomically, read with `weights_only=True` so that a file crafted
to run code when unpickled is refused instead of executed.

A checkpoint is a plain dict:
    model_config  dict for ModelConfig
    model         state_dict
    tokenizer     dict (see data.tokenizer.tokenizer_from_dict)
    corpus        corpus identity (see data.corpora.Corpus.identity)
    iter          number of optimizer steps taken
    train_args    the training settings, to resume with the same schedule
    optimizer     optimizer state_dict (optional)
    rng           RNG states (optional)
"""
from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from data.errors import CharlensError
from model.transformer import ModelConfig, TransformerLM

REQUIRED_KEYS = ("model_config", "model", "tokenizer", "corpus", "iter")


class CheckpointError(CharlensError):
    """A checkpoint that cannot be read or is not a charlens checkpoint (one-line message)."""


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call write(file) on a temporary file in the same folder, then rename it to `path`,
    so that a crash mid-write never leaves a truncated file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are ordinary shareable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write `state` to `path` atomically (see atomic_write)."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; raise CheckpointError with one clear line on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if not zipfile.is_zipfile(path):  # not torch's format at all, e.g. a text file
            raise CheckpointError(f"{path} is not a readable checkpoint (truncated or not a torch file)") from None
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        what = f"it would call {found.group(1)}" if found else "it holds objects a safe checkpoint may not hold"
        raise CheckpointError(f"refused to load {path}: {what} (only tensors and plain containers are allowed)") from None
    except PermissionError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError):
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or not a torch file)") from None
    missing = [k for k in REQUIRED_KEYS if k not in state] if isinstance(state, dict) else list(REQUIRED_KEYS)
    if missing:
        raise CheckpointError(f"{path} is not a charlens checkpoint (missing {', '.join(missing)})")
    return state


def model_from_checkpoint(state: dict[str, Any], device: str | torch.device = "cpu") -> TransformerLM:
    """Rebuild the model in eval mode (dropout off) from a loaded checkpoint."""
    model = TransformerLM(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval()
