"""The unified model: one shared transformer over `[CLS] audio [SEP] text`, any subset of the modalities."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from mamer.config import ModelConfig
from mamer.model.heads import PredictionHead
from mamer.model.tokens import AudioDownProjection, SequenceBuilder, TextProjection


@dataclass
class MAMEROutput:
    """What one forward pass gives. Hidden blocks are None for a modality absent from the view."""

    cls: torch.Tensor  # (B, W)
    logits: torch.Tensor | None  # (B, C)
    dims: torch.Tensor | None  # (B, 3), normalised scale
    audio_hidden: torch.Tensor | None  # (B, Na, W)
    audio_tokens_valid: torch.Tensor | None  # (B, Na) bool
    text_hidden: torch.Tensor | None  # (B, Nt, W)
    text_valid: torch.Tensor | None  # (B, Nt) bool


class MAMER(nn.Module):
    """Frozen-feature projections + shared pre-norm transformer + one prediction head for every view."""

    def __init__(
        self,
        config: ModelConfig,
        audio_dim: int,
        text_dim: int,
        num_classes: int,
        num_dims: int,
        stacked_layers: tuple[int, int] = (1, 1),
    ):
        """`*_dim`: feature widths; `stacked_layers`: encoder hidden states side by side in each (audio, text)
        feature vector, mixed by learned weights (1 = one state, or their mean, as cached)."""
        super().__init__()
        if config.audio_downsample < 1:
            raise ValueError("model.audio_downsample must be resolved to >= 1 before building the model")
        self.config = config
        w = config.width
        # A dedicated unimodal model has no projection for the modality it never reads (dim 0).
        audio_layers, text_layers = stacked_layers
        self.audio_in = (
            AudioDownProjection(
                audio_dim,
                w,
                config.audio_downsample,
                audio_layers,
                config.audio_standardise,
                reference=config.audio_normalise == "speaker",
            )  # fmt: skip
            if audio_dim
            else None
        )
        self.text_in = TextProjection(text_dim, w, text_layers) if text_dim else None
        self.sequence = SequenceBuilder(w, config.max_audio_tokens, config.max_text_tokens)
        layer = nn.TransformerEncoderLayer(
            w,
            config.heads,
            int(w * config.ffn_ratio),
            config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(
            layer, config.depth, norm=nn.LayerNorm(w), enable_nested_tensor=False
        )
        head_width = 2 * w if config.pooling == "cls+mean" else w
        self.head = PredictionHead(head_width, num_classes, num_dims, config.dropout)

    def audio_token_valid(self, audio_mask: torch.Tensor) -> torch.Tensor:
        """Frame mask (B, T) -> audio token mask (B, ceil(T/k)): a token is valid if any frame it covers is."""
        k = self.config.audio_downsample
        padded = F.pad(audio_mask, (0, (-audio_mask.shape[1]) % k))
        return padded.reshape(audio_mask.shape[0], -1, k).any(dim=-1)

    def forward(
        self,
        audio: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        audio_masked: torch.Tensor | None = None,
        text_masked: torch.Tensor | None = None,
    ) -> MAMEROutput:
        """audio: (B, Ta, Da) frozen frames, audio_mask: (B, Ta) bool True = valid; text: (B, Tt, Dt), text_mask.

        Either modality may be None (that view leaves it out of the sequence). audio_masked: (B, Na) and
        text_masked: (B, Tt) bool select the tokens replaced by [MASK] (training).
        """
        if audio is None and text is None:
            raise ValueError("MAMER needs audio, text, or both; got neither")
        for name, given, projection in (("audio", audio, self.audio_in), ("text", text, self.text_in)):
            if given is not None and projection is None:
                raise ValueError(f"this model was trained without {name}; it cannot read a {name} input")
        audio_block = audio_valid = text_block = None
        if audio is not None:
            audio_mask = _default_mask(audio, audio_mask)
            tokens, audio_valid = self.audio_in(audio, audio_mask)
            audio_block = self.sequence.embed_block(
                tokens, audio_masked, self.sequence.audio_pos, SequenceBuilder.AUDIO, "audio"
            )
        if text is not None:
            text_mask = _default_mask(text, text_mask)
            text_block = self.sequence.embed_block(
                self.text_in(text), text_masked, self.sequence.text_pos, SequenceBuilder.TEXT, "text"
            )
        seq, valid, a_slice, t_slice = self.sequence(audio_block, audio_valid, text_block, text_mask)
        hidden = self.transformer(seq, src_key_padding_mask=~valid)
        cls = hidden[:, 0]
        logits, dims = self.head(self._pooled(cls, hidden, valid))
        return MAMEROutput(
            cls=cls,
            logits=logits,
            dims=dims,
            audio_hidden=hidden[:, a_slice] if audio is not None else None,
            audio_tokens_valid=audio_valid,
            text_hidden=hidden[:, t_slice] if text is not None else None,
            text_valid=text_mask if text is not None else None,
        )

    def _pooled(self, cls: torch.Tensor, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """What the head reads (model.pooling): the [CLS] output, or beside it the mean of the valid outputs."""
        if self.config.pooling == "cls":
            return cls
        return torch.cat([cls, mean_pool(hidden, valid).to(cls.dtype)], dim=-1)


def mean_pool(hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """hidden: (B, N, W), valid: (B, N) -> (B, W): the mean of each row's valid outputs."""
    weights = valid.float()[..., None]
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def _default_mask(features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
    return mask.bool()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
