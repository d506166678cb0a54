"""Multi-process training under ``torchrun``: process group and gradient averaging.

Each rank samples its own batches (seeded by rank); gradients are averaged
across ranks before every optimiser step, which is what DistributedDataParallel
does, without wrapping modules whose forward is split into stages.
"""
from __future__ import annotations

import os
from typing import Iterable, Tuple


def init_distributed() -> Tuple[int, int]:
    """(rank, world size); under ``torchrun`` (WORLD_SIZE > 1) joins a gloo/nccl process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def average_gradients(params: Iterable, world: int) -> None:
    if world <= 1:
        return
    import torch.distributed as dist

    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world
