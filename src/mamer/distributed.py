"""torchrun / torch.distributed plumbing: which process this is, and the few collectives MAMER needs.

A run started without torchrun (no `WORLD_SIZE` in the environment) is a single process: every helper here is
then a no-op, so training and extraction have one code path. Under torchrun the process group is always
started, also for `--nproc_per_node 1`, so a one-process torchrun job takes the same path as a larger one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: global `rank` of `world_size`, and `local_rank` on its machine.

    `enabled`: a process group is running (torchrun started this process), even when it is the only one.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE_PROCESS = DistContext()  # a run without torchrun


def setup(backend: str | None = None) -> DistContext:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, MASTER_ADDR...).

    `backend`: "nccl" when CUDA is available, else "gloo", unless given. Without torchrun: a 1-process context.
    Calling it again returns the context of the group already joined.
    """
    if "WORLD_SIZE" not in os.environ:
        return SINGLE_PROCESS
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(local_rank)  # NCCL collectives run on the current device
        dist.init_process_group(backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, enabled=True)


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process in the running group: (0, 1) outside torchrun."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_device(device: str | torch.device) -> torch.device:
    """`device`, where a plain "cuda" under torchrun means this rank's GPU, cuda:LOCAL_RANK (made current)."""
    device = torch.device(device)
    if device.type != "cuda" or device.index is not None or not dist.is_initialized():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local_rank)  # NCCL collectives use the current device
    return torch.device("cuda", local_rank)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_object(value: Any) -> list[Any]:
    """`value` of every rank, in rank order (pickled: for small things such as predictions or RNG states)."""
    if not dist.is_initialized():
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def gather_rows(*blocks: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each block (n, E_k) -> (N, E_k): the rows of every rank in rank order; n may differ between ranks.

    For a loss that every rank then computes identically over all N rows (so its gradient reaches the other
    ranks' rows on their own ranks): the local rows keep their gradient, multiplied by the world size, because
    DistributedDataParallel averages the ranks' gradients. The average is then the exact gradient of that loss,
    as one process holding all N rows would get. The blocks share one collective.
    """
    if not dist.is_initialized():
        return blocks
    rows, widths = torch.cat(blocks, dim=1), [b.shape[1] for b in blocks]
    world = dist.get_world_size()
    counts = [torch.zeros(1, dtype=torch.long, device=rows.device) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([len(rows)], device=rows.device))
    sizes = [int(c) for c in counts]
    padded = rows.new_zeros((max(sizes), rows.shape[1]))
    padded[: len(rows)] = rows.detach()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)  # gloo and NCCL gather equal shapes only, hence the padding
    parts = [part[:size] for part, size in zip(parts, sizes, strict=True)]
    parts[dist.get_rank()] = rows + (world - 1) * (rows - rows.detach())  # the same values; gradient x world
    return tuple(torch.cat(parts).split(widths, dim=1))
