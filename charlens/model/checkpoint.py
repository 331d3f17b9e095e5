"""Checkpoints: written atomically with a content hash, read with `weights_only=True` (a file crafted
to run code when unpickled is refused instead of executed), and returned only once every field has
been checked (model/checkpoint_schema.py): a damaged or foreign file gives one line, never a traceback
or an allocation it asked for.

A checkpoint is a plain dict:
    model_config    dict for ModelConfig
    model           state_dict (names as TransformerLM has them; nanoGPT's transformer.h.* renamed on load)
    tokenizer       dict (see data.tokenizer.tokenizer_from_dict)
    corpus          corpus identity (see data.corpora.Corpus.identity)
    iter            number of optimizer steps taken
    train_args      the training settings, to resume with the same schedule (optional)
    optimizer       AdamW state_dict (optional)
    rng             RNG states (optional)
    history         the training log's records (optional), timeline records of kind "probe" included
    probe           the timeline's probe set (optional; training/timeline.py)
    content_sha256  sha256 of all the above (checkpoint_schema.content_hash; absent before it was added)
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from charlens.data.errors import CharlensError
from charlens.model.atomic import atomic_write
from charlens.model.checkpoint_schema import HASH_KEY, OPTIONAL_KEYS, REQUIRED_KEYS, FieldError, check_state, content_hash
from charlens.model.limits import available_memory, gib
from charlens.model.transformer import ModelConfig, TransformerLM, current_names

__all__ = ["CheckpointError", "atomic_write", "load_checkpoint", "model_from_checkpoint", "save_checkpoint"]


class CheckpointError(CharlensError):
    """A checkpoint that cannot be read, is damaged, or is not a charlens checkpoint (one-line message)."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write `state` with its content hash to `path` atomically (see model.atomic.atomic_write)."""
    state = {**state, HASH_KEY: content_hash(state)}
    atomic_write(path, lambda f: torch.save(state, f))


def _unpickle(path: Path, map_location: str | torch.device) -> Any:
    """torch.load with weights_only=True; any failure becomes one line."""
    free = available_memory()
    if free is not None and path.stat().st_size > free:
        raise CheckpointError(f"{path} is too large to load ({gib(path.stat().st_size)}; {gib(free)} of memory available)")
    unreadable = f"{path} is not a readable checkpoint (damaged, truncated or not a torch file)"
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if not zipfile.is_zipfile(path):  # not torch's format at all, e.g. a text file
            raise CheckpointError(unreadable) from None
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        what = f"it would call {found.group(1)}" if found else "it holds objects a safe checkpoint may not hold"
        raise CheckpointError(f"refused to load {path}: {what} (only tensors and plain containers are allowed)") from None
    except PermissionError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    except MemoryError:
        raise CheckpointError(f"{path} is not a readable checkpoint (it asks for more memory than there is)") from None
    except Exception:  # the unpickler of a damaged file raises almost anything: IndexError, KeyError, RuntimeError, ...
        raise CheckpointError(unreadable) from None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely and check every field (type, range, shape, finite values, content hash)
    before returning it; CheckpointError with one line naming the file and the field otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    state = _unpickle(path, map_location)
    if isinstance(state, dict) and isinstance(state.get(HASH_KEY), str) and state[HASH_KEY] != content_hash(state):
        raise CheckpointError(f"{path} is damaged: its content does not match the checksum stored when it was saved")
    missing = [k for k in REQUIRED_KEYS if k not in state] if isinstance(state, dict) else list(REQUIRED_KEYS)
    if missing:
        raise CheckpointError(f"{path} is not a charlens checkpoint (missing {', '.join(missing)})")
    unknown = [k for k in state if k not in REQUIRED_KEYS + OPTIONAL_KEYS]
    if unknown:
        raise CheckpointError(f"{path} is not a charlens checkpoint this version can read (unknown field {unknown[0]!r})")
    if isinstance(state["model"], dict):  # written before the blocks were named `blocks`: nanoGPT's names
        state["model"] = current_names(state["model"])
    try:
        check_state(state)
    except FieldError as e:
        raise CheckpointError(f"{path} holds no usable {e.field}: {e.problem}") from None
    return state


def model_from_checkpoint(state: dict[str, Any], device: str | torch.device = "cpu") -> TransformerLM:
    """Rebuild the model in eval mode (dropout off) from a checkpoint returned by load_checkpoint."""
    model = TransformerLM(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval()
