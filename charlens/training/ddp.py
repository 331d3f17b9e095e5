"""Several processes, one model: torch.distributed data parallel for `torchrun ... train.py`.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them training is one process and every
function here is a no-op. `--batch-size` is the global batch: every process draws the same global
batch from the same generator and trains on its own contiguous slice of rows, so N processes take
the steps one process would (gradients are averaged over the whole batch), the data sharding is
deterministic, and a checkpoint resumes under any process count that divides the batch.
Rank 0 alone writes checkpoints, logs, plots and the progress bar.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from charlens.data.errors import UsageError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that writes files and prints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def from_env() -> Dist:
    """The process's place in a torchrun job (rank 0 of 1 when not launched by torchrun)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Dist()
    try:
        return Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)") from None


def check_batch(d: Dist, batch_size: int) -> None:
    """The global batch must split evenly across the processes (refused before any work)."""
    if batch_size % d.world:
        raise UsageError(f"--batch-size {batch_size} (the global batch) is not divisible by the {d.world} processes")


def start(d: Dist, device: torch.device) -> torch.device:
    """Join the process group (gloo on CPU, nccl on CUDA); returns this process's device."""
    if not d.active:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def stop(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()


def wrap(d: Dist, forward: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The (possibly compiled) model wrapped so that backward averages gradients across processes."""
    if not d.active:
        return forward
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)


def all_sum(d: Dist, t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over the processes (in place; `t` itself when there is one process)."""
    if d.active:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_objects(d: Dist, obj: object) -> list:
    """Every process's `obj`, in rank order (collective: every process must call it)."""
    if not d.active:
        return [obj]
    out = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def local_rows(d: Dist, n: int) -> slice:
    """This process's contiguous share of n rows (n divisible by the world size)."""
    per = n // d.world
    return slice(d.rank * per, (d.rank + 1) * per)
