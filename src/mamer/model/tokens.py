"""From frozen encoder features to the token sequence `[CLS] audio [SEP] text` the shared transformer reads."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LayerMix(nn.Module):
    """A learned weighted sum of an encoder's hidden states, cached side by side (as SUPERB's featurizer does).

    `(..., L * D)` layer-major -> `(..., D)`: softmax weights over the L states, each state first normalised
    (LayerNorm without parameters) so that the weights compare layers rather than their scales. The weights
    start equal and train with the model; `weights` reads them.
    """

    def __init__(self, num_layers: int, dim: int):
        super().__init__()
        self.num_layers, self.dim = num_layers, dim
        self.logits = nn.Parameter(torch.zeros(num_layers))

    @property
    def weights(self) -> torch.Tensor:
        return self.logits.softmax(0)

    def split(self, features: torch.Tensor) -> torch.Tensor:
        """(..., L * D) -> (..., L, D)."""
        return features.unflatten(-1, (self.num_layers, self.dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        states = F.layer_norm(self.split(features), (self.dim,))
        return (states * self.weights.to(states.dtype)[:, None]).sum(-2)


class FeatureProjection(nn.Module):
    """What both projections share: frozen features `(..., layers * D)` -> normalised `(..., D)` (with several
    stacked hidden states, their `LayerMix` first), and the masked autoencoder's target for them."""

    def __init__(self, feature_dim: int, layers: int):
        super().__init__()
        if layers < 1 or feature_dim % layers:
            raise ValueError(f"{feature_dim} feature dims do not split into {layers} stacked layers")
        self.feature_dim = feature_dim  # the input width: `layers` hidden states of `dim` each
        self.dim = feature_dim // layers
        self.mix = LayerMix(layers, self.dim) if layers > 1 else None
        self.norm = nn.LayerNorm(self.dim)

    def normalised(self, features: torch.Tensor) -> torch.Tensor:
        return self.norm(features if self.mix is None else self.mix(features))

    def target(self, features: torch.Tensor) -> torch.Tensor:
        """What the masked autoencoder rebuilds: the features, or with stacked layers their fixed mean `(..., D)`
        (a learned mix would let the model choose an easy target)."""
        return features if self.mix is None else self.mix.split(features).mean(-2)


class AudioDownProjection(FeatureProjection):
    """Fold every `k` audio frames into one token of the model width (dimension and frame rate down).

    With `standardise`, each feature dimension is first standardised by `mean` and `std` (`(layers * D,)`
    buffers, saved with the model; `set_statistics` fills them from the train split). The per-frame LayerNorm
    alone lets the few huge dimensions of Whisper's hidden states set every frame's scale; a probe's
    StandardScaler gives each dimension unit variance (docs/results.md, "EmoBox protocol").

    With `reference` (`model.audio_normalise: speaker`), `reference_mean` and `reference_std` hold the training
    rows' raw frame statistics (`set_reference`): what a clip with no speaker group is standardised by, in place
    of its speaker's statistics (`mamer.data.frame_norm`). They are not read in `forward`."""

    def __init__(
        self,
        feature_dim: int,
        width: int,
        k: int,
        layers: int = 1,
        standardise: bool = False,
        reference: bool = False,
    ):
        super().__init__(feature_dim, layers)
        self.k = k
        self.proj = nn.Linear(k * self.dim, width)
        if standardise:
            self.register_buffer("mean", torch.zeros(feature_dim))
            self.register_buffer("std", torch.ones(feature_dim))
        self.standardise = standardise
        if reference:
            self.register_buffer("reference_mean", torch.zeros(feature_dim))
            self.register_buffer("reference_std", torch.ones(feature_dim))
        self.reference = reference

    def set_reference(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """The training rows' raw per-dimension `mean` and `std` `(layers * D,)` (std floored)."""
        self.reference_mean.copy_(mean)
        self.reference_std.copy_(std.clamp(min=1e-5))  # as set_statistics and mamer.data.frame_norm floor it

    def reference_statistics(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(mean, std) on the CPU of `set_reference`, or None for a projection without them."""
        return (self.reference_mean.cpu(), self.reference_std.cpu()) if self.reference else None

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """The per-dimension `mean` and `std` `(layers * D,)` that `standardise` divides by (std floored)."""
        self.mean.copy_(mean)
        self.std.copy_(std.clamp(min=1e-5))

    def forward(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames: (B, T, layers * D), frame_mask: (B, T) bool -> tokens (B, ceil(T/k), width), token_mask
        (B, ceil(T/k))."""
        if self.standardise:
            frames = (frames - self.mean) / self.std
        frames = self.normalised(frames) * frame_mask[..., None]
        b, t, d = frames.shape
        pad = (-t) % self.k
        frames = F.pad(frames, (0, 0, 0, pad))
        frame_mask = F.pad(frame_mask, (0, pad))
        n = (t + pad) // self.k
        tokens = self.proj(frames.reshape(b, n, self.k * d))
        return tokens, frame_mask.reshape(b, n, self.k).any(dim=-1)


class TextProjection(FeatureProjection):
    """Project frozen text-encoder token features to the model width."""

    def __init__(self, feature_dim: int, width: int, layers: int = 1):
        super().__init__(feature_dim, layers)
        self.proj = nn.Linear(self.dim, width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, T, layers * D) -> (B, T, width)."""
        return self.proj(self.normalised(features))


class SequenceBuilder(nn.Module):
    """Learned [CLS]/[SEP]/[MASK], modality (type) and position embeddings; assembles one view's sequence.

    A modality that is absent from the view is absent from the sequence; a sample that lacks a modality inside
    a batch has that block's padding mask all False, so attention never reads it.
    """

    CLS, AUDIO, SEP, TEXT = range(4)  # type ids

    def __init__(self, width: int, max_audio_tokens: int, max_text_tokens: int):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(width) * 0.02)
        self.sep = nn.Parameter(torch.randn(width) * 0.02)
        self.mask = nn.Parameter(torch.randn(width) * 0.02)
        self.types = nn.Embedding(4, width)
        self.audio_pos = nn.Embedding(max_audio_tokens, width)
        self.text_pos = nn.Embedding(max_text_tokens, width)
        nn.init.normal_(self.types.weight, std=0.02)
        nn.init.normal_(self.audio_pos.weight, std=0.02)
        nn.init.normal_(self.text_pos.weight, std=0.02)

    def embed_block(
        self,
        tokens: torch.Tensor,
        masked: torch.Tensor | None,
        positions: nn.Embedding,
        type_id: int,
        what: str,
    ) -> torch.Tensor:
        """tokens: (B, N, W); masked: (B, N) bool or None -> tokens with [MASK], position and type added."""
        n = tokens.shape[1]
        if n > positions.num_embeddings:
            raise ValueError(
                f"{what} has {n} tokens but the model takes at most {positions.num_embeddings}; "
                f"crop the input or raise model.max_{what}_tokens"
            )
        if masked is not None:
            tokens = torch.where(masked[..., None], self.mask.to(tokens.dtype), tokens)
        index = torch.arange(n, device=tokens.device)
        return tokens + positions(index)[None] + self.types.weight[type_id]

    def special(self, vector: torch.Tensor, type_id: int, batch: int) -> torch.Tensor:
        return (vector + self.types.weight[type_id]).expand(batch, 1, -1)

    def forward(
        self,
        audio: torch.Tensor | None,
        audio_mask: torch.Tensor | None,
        text: torch.Tensor | None,
        text_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, slice, slice]:
        """Embedded blocks (B, Na, W), (B, Nt, W) -> sequence (B, L, W), valid (B, L), audio and text slices."""
        ref = audio if audio is not None else text
        b = ref.shape[0]
        ones = torch.ones(b, 1, dtype=torch.bool, device=ref.device)
        parts, masks = [self.special(self.cls, self.CLS, b)], [ones]
        na = 0 if audio is None else audio.shape[1]
        if audio is not None:
            parts.append(audio)
            masks.append(audio_mask)
        parts.append(self.special(self.sep, self.SEP, b))
        masks.append(ones)
        if text is not None:
            parts.append(text)
            masks.append(text_mask)
        audio_slice = slice(1, 1 + na)
        text_slice = slice(2 + na, 2 + na + (0 if text is None else text.shape[1]))
        return torch.cat(parts, dim=1), torch.cat(masks, dim=1), audio_slice, text_slice
