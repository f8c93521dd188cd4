"""The training process's place in a run: DDP from torchrun's environment, and its device.

    with distributed("auto") as (ddp, rank, world_size, device):
        ...
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
import torch.distributed as dist


class Distributed(NamedTuple):
    """This process in the run: under torchrun `ddp` with its rank, else the only process (rank 0)."""
    ddp: bool
    rank: int
    world_size: int
    device: torch.device


@contextmanager
def distributed(device: str) -> Iterator[Distributed]:
    """DDP from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK): the process group is set up for the
    block and torn down after it, however it ends. Without RANK, one process and no group.

    Raises:
        ValueError: device 'cuda' without a CUDA device.
    """
    ddp = int(os.environ.get("RANK", -1)) != -1
    rank, world_size, local_rank = 0, 1, 0
    if ddp:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = _device(device, local_rank)
    if ddp:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    try:
        yield Distributed(ddp=ddp, rank=rank, world_size=world_size, device=dev)
    finally:
        if ddp:
            dist.destroy_process_group()


def _device(name: str, local_rank: int) -> torch.device:
    """auto → cuda:<local_rank> when CUDA is available, else cpu. Raises ValueError for cuda without one."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("train.device: 'cuda' requested but torch sees no CUDA device")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)
