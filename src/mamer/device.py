"""The device a run uses, and the autocast its precision setting asks for."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """ "auto" = CUDA when available, else the CPU; any other name as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bf16 autocast for precision "bf16", or "auto" on CUDA; disabled otherwise (fp32)."""
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
