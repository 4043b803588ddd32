"""Random token masking for the masked-autoencoding objective."""

from __future__ import annotations

import torch


def random_token_mask(
    valid: torch.Tensor, ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Pick round(ratio * n_valid) valid tokens per row, uniformly at random, to replace by [MASK].

    valid: (B, N) bool, True = a real token. Returns (B, N) bool, True = masked; never masks padding, and
    leaves at least one token of every row unmasked.
    """
    if ratio <= 0 or valid.numel() == 0:
        return torch.zeros_like(valid)
    n_valid = valid.sum(dim=1)
    n_masked = torch.minimum(torch.round(n_valid.float() * ratio).long(), (n_valid - 1).clamp(min=0))
    scores = torch.rand(valid.shape, generator=generator, device="cpu").to(valid.device)
    scores = scores.masked_fill(~valid, 2.0)  # padding sorts last
    rank = scores.argsort(dim=1).argsort(dim=1)
    return rank < n_masked[:, None]
