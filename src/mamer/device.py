"""The device a run uses, and the autocast its precision setting asks for."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """ "auto" = CUDA when available, else the CPU; any other name as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def available_device(name: str | torch.device) -> torch.device:
    """`name` (as `resolve_device` reads it) as a device this machine has; a ValueError saying what to give
    instead for a name torch does not know or a CUDA device that is not here."""
    try:
        device = resolve_device(str(name))
    except RuntimeError:
        raise ValueError(f"device {str(name)!r}: not a device name; give cpu, cuda or cuda:N") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        found = torch.cuda.device_count()
        raise ValueError(f"device {str(name)!r}: this machine has {found} CUDA device(s) for torch; give cpu")
    return device


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bf16 autocast for precision "bf16", or "auto" on CUDA; disabled otherwise (fp32)."""
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
