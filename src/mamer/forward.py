"""One view of a batch through the shared model: the forward pass that training and scoring share."""

from __future__ import annotations

import torch

from mamer.data.dataset import Batch
from mamer.model.mamer import MAMER, MAMEROutput


def view_rows(batch: Batch, view: str) -> torch.Tensor:
    """(B,) bool: the rows a view can score (they have every modality the view reads)."""
    if view == "audio":
        return batch.has_audio
    if view == "text":
        return batch.has_text
    return batch.has_audio & batch.has_text


def run_view(
    model: MAMER,
    batch: Batch,
    view: str,
    audio_masked: torch.Tensor | None = None,
    text_masked: torch.Tensor | None = None,
) -> MAMEROutput | None:
    """Forward one view; None when the batch has none of the modalities the view reads."""
    use_audio = view in ("audio", "audio+text") and batch.audio is not None and model.audio_in is not None
    use_text = view in ("text", "audio+text") and batch.text is not None and model.text_in is not None
    if not (use_audio or use_text):
        return None
    return model(
        audio=batch.audio if use_audio else None,
        audio_mask=batch.audio_mask if use_audio else None,
        text=batch.text if use_text else None,
        text_mask=batch.text_mask if use_text else None,
        audio_masked=audio_masked if use_audio else None,
        text_masked=text_masked if use_text else None,
    )
