"""Data-parallel training under ``torchrun`` or ``accelerate launch``: one process per device, DDP.

Every rank draws the same cloze samples and global batches (same seed); rank r trains on its slice of each global
batch, so N processes with per-rank batch b compute exactly what one process with batch N·b computes. Rank 0 alone
logs, validates and writes files; the others follow its decisions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_environment() -> Dist:
    """The launcher's RANK / WORLD_SIZE / LOCAL_RANK, or a single process when they are absent."""
    return Dist(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))


def start(dist: Dist, device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); each CUDA rank gets its own GPU."""
    if not dist.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def stop(dist: Dist) -> None:
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def barrier(dist: Dist) -> None:
    if dist.enabled:
        torch_dist.barrier()


def agree(flag: bool, dist: Dist) -> bool:
    """Rank 0's value of ``flag`` on every rank."""
    if not dist.enabled:
        return flag
    tensor = torch.tensor([int(flag)])
    torch_dist.broadcast(tensor, src=0)
    return bool(tensor.item())
