"""How a run uses its machine: the autocast dtype and whether to torch.compile, chosen from the
device when the flags say `auto` (measurements behind each choice: docs/benchmarks.md)."""
from __future__ import annotations

import shutil
from contextlib import AbstractContextManager, nullcontext
from typing import Optional

import torch

# On a 2-core CPU, torch.compile took up to 70 s to compile the small model (10-20 s with inductor's
# cache warm) and then saved 0-14% per step (docs/benchmarks.md), so it can pay only in long runs.
CPU_COMPILE_MIN_STEPS = 5000


def native_bf16_cpu() -> bool:
    """The CPU has bfloat16 arithmetic (AVX-512 BF16 or AMX); elsewhere bfloat16 is emulated and slower."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_dtype(name: str, device: torch.device) -> str:
    """`auto`: bfloat16 autocast on a GPU or CPU with native bfloat16, float32 elsewhere."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device.type == "cpu" and native_bf16_cpu() else "float32"


def autocast_for(dtype: str, device: torch.device) -> AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bfloat16" else nullcontext()


def compiler_available() -> bool:
    """torch.compile on a CPU builds C++ kernels: it needs a C++ compiler."""
    return any(shutil.which(cxx) for cxx in ("g++", "clang++", "c++"))


def resolve_compile(flag: Optional[bool], device: torch.device, max_iters: int) -> bool:
    """`None` (auto): compile on CUDA, and on a CPU for runs of at least CPU_COMPILE_MIN_STEPS steps.
    It depends on the total steps, not the steps left, so a resumed run decides as the original did."""
    if flag is not None:
        return flag
    if device.type == "cuda":
        return True
    return device.type == "cpu" and max_iters >= CPU_COMPILE_MIN_STEPS and compiler_available()
