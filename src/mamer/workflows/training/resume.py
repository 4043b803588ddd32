"""The state saved after every epoch (`last/`), and `--resume` from it on any number of processes."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from mamer import distributed
from mamer.checkpoint import (
    LAST_DIR,
    load_training_state,
    save_training_state,
)
from mamer.workflows.training.session import Session

log = logging.getLogger(__name__)


def device_rng(device: torch.device) -> torch.Tensor:
    """The random state of `device`'s own generator (CUDA's, which dropout on the GPU draws from); empty on
    the CPU, whose generator `torch.get_rng_state` already holds."""
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    return torch.empty(0, dtype=torch.uint8)


def save_last(s: Session, run_dir: Path) -> None:
    """The state after an epoch, for --resume on any number of processes: rank 0 writes it, with the random
    streams of every rank (gathered), while the others wait."""
    streams = distributed.all_gather_object(
        (torch.get_rng_state(), s.mask_rng.get_state(), device_rng(s.device))
    )
    if s.context.is_main:
        save_training_state(run_dir / LAST_DIR, s.model, s.heads, {
            **s.state, "best_epoch": s.meta.epoch, "optimizer": s.optimizer.state_dict(),
            "rng": [rng for rng, _, _ in streams], "mask_rng": [mask for _, mask, _ in streams],
            "device_rng": [device for _, _, device in streams],
            "shuffle_rng": s.loaders.train.generator.get_state(), "world_size": s.context.world_size,
        })  # fmt: skip
    distributed.barrier()


def resume_last(s: Session, run_dir: Path) -> None:
    """Continue from `last/`, whatever number of processes wrote it.

    Weights, optimizer, counters and the learning-rate schedule (a function of the epoch) carry over exactly.
    Rank r takes the random streams rank r saved; a rank the saved run did not have keeps fresh ones. The
    train order of a resumed epoch is the one an uninterrupted run would draw with the same number of
    processes (a 1-process run: its saved shuffle generator; torchrun: the seed and epoch); with another
    number of processes it is another, equally random, order.
    """
    saved = load_training_state(run_dir / LAST_DIR, s.model, s.heads)
    s.optimizer.load_state_dict(saved["optimizer"])
    s.loaders.train.generator.set_state(saved["shuffle_rng"])
    if s.context.rank < len(saved["rng"]):
        torch.set_rng_state(saved["rng"][s.context.rank])
        s.mask_rng.set_state(saved["mask_rng"][s.context.rank])
        device = saved.get("device_rng", [])  # absent in states saved before 0.2
        if s.device.type == "cuda" and s.context.rank < len(device) and device[s.context.rank].numel():
            torch.cuda.set_rng_state(device[s.context.rank], s.device)  # dropout on the GPU draws from it
    s.meta.epoch, s.meta.dev_score = saved["best_epoch"], saved["best"]
    s.state = {k: saved[k] for k in s.state}
    log.info("resumed %s after epoch %d (saved by %d process(es), now %d)", run_dir, s.state["epoch"],
             saved["world_size"], s.context.world_size)  # fmt: skip
