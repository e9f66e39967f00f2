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

from bert4rec.errors import Bert4RecError


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


# (rank, world size, local rank) as each launcher names them: torchrun and `accelerate launch --multi_gpu` set the
# first; `accelerate launch --cpu` with several processes runs mpirun, which sets one of the others.
_LAUNCHER_VARIABLES = (
    ("RANK", "WORLD_SIZE", "LOCAL_RANK"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),  # Open MPI
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),  # Intel MPI, MPICH
    ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_LOCAL_RANK"),  # MVAPICH
)


def from_environment() -> Dist:
    """The launcher's rank, world size and local rank, or a single process when none are set."""
    for rank, world, local in _LAUNCHER_VARIABLES:
        if rank in os.environ and world in os.environ:
            return Dist(int(os.environ[rank]), int(os.environ[world]), int(os.environ.get(local, 0)))
    return Dist()


def start(dist: Dist, device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); each CUDA rank gets its own GPU."""
    if not dist.enabled:
        return device
    if device.type == "cuda":
        gpus = torch.cuda.device_count()
        if dist.local_rank >= gpus:
            raise Bert4RecError(f"process {dist.local_rank} on this machine has no GPU of its own ({gpus} CUDA "
                                f"device(s)): launch at most {gpus} per machine, or train on CPUs with --device cpu")
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if not torch_dist.is_initialized():
        # Rank and size passed explicitly: under mpirun only MASTER_ADDR / MASTER_PORT are in the environment.
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29500")
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=dist.rank,
                                      world_size=dist.world)
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
    # NCCL moves CUDA tensors only, gloo CPU ones.
    on_gpu = torch_dist.get_backend() == "nccl"
    tensor = torch.tensor([int(flag)], device=torch.cuda.current_device() if on_gpu else "cpu")
    torch_dist.broadcast(tensor, src=0)
    return bool(tensor.item())
