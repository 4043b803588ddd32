"""What the recognizer's model reads: one utterance's frozen-encoder features, and a batch of them padded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mamer.modality import view_of


@dataclass
class Features:
    """Frozen-encoder features of one utterance: audio (Ta, Da) of any length, text (Tt, Dt); `normalised` once
    the audio is as a model with `audio_normalise` reads it (`EmotionRecognizer.normalise`)."""

    audio: torch.Tensor | None
    text: torch.Tensor | None
    normalised: bool = False

    @property
    def view(self) -> str:
        return view_of(m for m, x in (("audio", self.audio), ("text", self.text)) if x is not None)


def pad(blocks: Sequence[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (T_i, D) -> zero-padded (B, T, D) float32 and mask (B, T) bool, True = valid."""
    length = max(len(b) for b in blocks)
    out = torch.zeros(len(blocks), length, blocks[0].shape[1])
    mask = torch.zeros(len(blocks), length, dtype=torch.bool)
    for i, b in enumerate(blocks):
        out[i, : len(b)], mask[i, : len(b)] = b.float(), True
    return out.to(device), mask.to(device)
