"""Where a run executes: its device, and its place among the DDP processes torchrun started.

``init_distributed`` reads torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (gloo on CPU, nccl on CUDA). The
global batch is split across ranks; the collectives here make every rank compute what one process over the whole
batch computes (``global_logits``), log global means (``all_mean``) and stop at the same step (``agree``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass
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


def init_distributed(device_name: str) -> Dist:
    """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK; gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    d = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    cuda = device_name in ("cuda", "auto") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(d.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return d


def close_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(d: Dist, name: str) -> Any:
    """The device of rank ``d``: its local GPU under DDP on CUDA, else ``srgan.options.resolve_device(name)``."""
    import torch

    from srgan.options import resolve_device

    if d.enabled and name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", d.local_rank)
    return resolve_device(name)


def global_logits(d: Dist, logits: Any) -> Any:
    """Logits of the whole global batch, gradients flowing only into this rank's part.

    The relativistic loss compares each sample with the batch mean, so it is not a sum over samples;
    computing it on the gathered batch (times the world size, since DDP averages gradients) gives every
    rank's parameters exactly the single-process gradient. For BCE it changes nothing.
    """
    if not d.enabled:
        return logits
    import torch
    import torch.distributed as dist

    parts = [torch.empty_like(logits) for _ in range(d.world)]
    dist.all_gather(parts, logits.detach().contiguous())
    parts[d.rank] = logits
    return torch.cat(parts)


def all_mean(d: Dist, logs: dict, device: Any) -> dict:
    """``logs`` averaged over the ranks (every rank passes the same keys in the same order)."""
    if not d.enabled:
        return logs
    import torch
    import torch.distributed as dist

    keys = list(logs)
    t = torch.tensor([float(logs[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: v / d.world for k, v in zip(keys, t.tolist())}


def agree(d: Dist, flag: bool, device: Any) -> bool:
    """Rank 0's decision, shared so every rank stops at the same step."""
    if not d.enabled:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())
