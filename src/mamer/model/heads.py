"""Output heads: the prediction head every view shares, and the training-only heads of the objective."""

from __future__ import annotations

import math

import torch
from torch import nn


class PredictionHead(nn.Module):
    """[CLS] output -> class logits (B, C) and/or arousal/valence/dominance (B, 3)."""

    def __init__(self, width: int, num_classes: int, num_dims: int, dropout: float):
        super().__init__()
        self.num_classes, self.num_dims = num_classes, num_dims
        self.net = nn.Sequential(
            nn.LayerNorm(width), nn.Dropout(dropout), nn.Linear(width, num_classes + num_dims)
        )

    def forward(self, cls: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        out = self.net(cls)
        logits = out[:, : self.num_classes] if self.num_classes else None
        dims = out[:, self.num_classes :] if self.num_dims else None
        return logits, dims


def _ffn(width: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, out_dim))


class AudioUpProjection(nn.Module):
    """Each audio token's output -> the k frozen-encoder frames it was folded from."""

    def __init__(self, width: int, feature_dim: int, k: int):
        super().__init__()
        self.k, self.feature_dim = k, feature_dim
        self.proj = nn.Linear(width, k * feature_dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (B, N, W) -> frames (B, N * k, D)."""
        b, n, _ = hidden.shape
        return self.proj(hidden).reshape(b, n * self.k, self.feature_dim)


class PretrainingHeads(nn.Module):
    """Heads that exist only in training: contrastive ffns, feature reconstruction, and the CLIP logit scale."""

    def __init__(
        self, width: int, audio_dim: int, text_dim: int, k: int, contrastive_dim: int, temperature: float
    ):
        super().__init__()
        self.audio_contrastive = _ffn(width, contrastive_dim)
        self.text_contrastive = _ffn(width, contrastive_dim)
        self.audio_up = AudioUpProjection(width, audio_dim, k)
        self.text_up = nn.Linear(width, text_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
