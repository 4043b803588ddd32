"""Whisper's encoder and log-mel frontend in plain torch, without importing transformers.

The same computation as `transformers.WhisperEncoder` (pre-LayerNorm layers, exact GELU, the query scaled before
the product, no key bias) and `WhisperFeatureExtractor` (Slaney mel filters, log10, floor at max - 8), with the
same parameter names, so a state dict moves between the two unchanged. tests/test_encoders.py holds both to
transformers'. transformers is 1-4 s of a cold start; the audio path needs nothing else from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from mamer.encoders.no_init import Conv1d, Embedding, LayerNorm, Linear

SAMPLE_RATE, HOP, N_FFT, N_MELS = 16000, 160, 400, 80


@dataclass(frozen=True)
class WhisperDims:
    """The encoder's sizes, named as in transformers' WhisperConfig."""

    d_model: int
    num_mel_bins: int
    encoder_layers: int
    encoder_attention_heads: int
    encoder_ffn_dim: int
    max_source_positions: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class WhisperAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scaling = heads, (dim // heads) ** -0.5
        self.q_proj = Linear(dim, dim)
        self.k_proj = Linear(dim, dim, bias=False)
        self.v_proj = Linear(dim, dim)
        self.out_proj = Linear(dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """`x` `(B, T, D)`, `keep` `(B, 1, 1, T)` True for valid frames (None: all) -> `(B, T, D)`."""
        b, t, d = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, -1).transpose(1, 2)

        q = heads(self.q_proj(x) * self.scaling)  # scaled first, as Whisper (and transformers) do
        k, v = heads(self.k_proj(x)), heads(self.v_proj(x))
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=1.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class WhisperEncoderLayer(nn.Module):
    def __init__(self, dims: WhisperDims):
        super().__init__()
        self.self_attn = WhisperAttention(dims.d_model, dims.encoder_attention_heads)
        self.self_attn_layer_norm = LayerNorm(dims.d_model)
        self.fc1 = Linear(dims.d_model, dims.encoder_ffn_dim)
        self.fc2 = Linear(dims.encoder_ffn_dim, dims.d_model)
        self.final_layer_norm = LayerNorm(dims.d_model)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x), keep)
        return x + self.fc2(nn.functional.gelu(self.fc1(self.final_layer_norm(x))))


class WhisperEncoder(nn.Module):
    """Two convolutions, sinusoidal positions (stored) and the layers; parameter names as transformers'."""

    def __init__(self, dims: WhisperDims):
        super().__init__()
        self.dims = dims
        self.conv1 = Conv1d(dims.num_mel_bins, dims.d_model, kernel_size=3, padding=1)
        self.conv2 = Conv1d(dims.d_model, dims.d_model, kernel_size=3, stride=2, padding=1)
        self.embed_positions = Embedding(dims.max_source_positions, dims.d_model)
        self.layers = nn.ModuleList(WhisperEncoderLayer(dims) for _ in range(dims.encoder_layers))
        self.layer_norm = LayerNorm(dims.d_model)


def whisper_hidden_states(
    encoder: WhisperEncoder, mel: torch.Tensor, mel_lengths: torch.Tensor, depth: int | None = None
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Run the encoder on unpadded-length mels: `mel` `(B, 80, L)` zero-padded, `mel_lengths` `(B,)`.

    Returns `(hidden_states, lengths)`: `depth + 1` tensors `(B, T, D)` with `T = ceil(L / 2)` (index 0:
    conv + position embedding, i: after layer i, the encoder's last one after the final LayerNorm, as in
    transformers), and the valid output frames per row `(B,)`. A row's valid frames do not depend on the batch
    padding. `depth` (default: all layers) stops after that many layers: the states above are never needed.
    """
    lengths = (mel_lengths + 1) // 2
    frames = torch.arange(mel.shape[-1], device=mel.device)
    x = nn.functional.gelu(encoder.conv1(mel))
    x = x * (frames < mel_lengths[:, None]).unsqueeze(1)  # the conv2 zero padding, per row
    x = nn.functional.gelu(encoder.conv2(x)).transpose(1, 2)  # (B, T, D)
    num_out = x.shape[1]
    if num_out > encoder.embed_positions.num_embeddings:
        raise ValueError(f"{num_out} frames exceed Whisper's {encoder.embed_positions.num_embeddings}")
    x = x + encoder.embed_positions.weight[:num_out]
    keep = None
    if bool((lengths < num_out).any()):
        keep = (torch.arange(num_out, device=x.device) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, T)
    states = [x]
    depth = len(encoder.layers) if depth is None else depth
    for layer in encoder.layers[:depth]:
        x = layer(x, keep)
        states.append(x)
    if depth == len(encoder.layers):
        states[-1] = encoder.layer_norm(x)
    return states, lengths


# ---------------------------------------------------------------- the log-mel frontend


def _hertz_to_mel(hertz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    mels = 3.0 * hertz / 200.0
    log_part = hertz >= 1000.0
    mels[log_part] = 15.0 + np.log(hertz[log_part] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hertz(mels: np.ndarray) -> np.ndarray:
    hertz = 200.0 * mels / 3.0
    log_part = mels >= 15.0
    hertz[log_part] = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels[log_part] - 15.0))
    return hertz


def mel_filters(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney-normalised triangular mel filters on the Slaney scale, 0-8 kHz: `(n_fft // 2 + 1, n_mels)`
    (what Whisper's feature extractor uses)."""
    fft_freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    mel_edges = np.linspace(
        _hertz_to_mel(np.array([0.0]))[0], _hertz_to_mel(np.array([8000.0]))[0], n_mels + 2
    )
    edges = _mel_to_hertz(mel_edges)
    width = np.diff(edges)
    slopes = edges[None, :] - fft_freqs[:, None]
    down, up = -slopes[:, :-2] / width[:-1], slopes[:, 2:] / width[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return filters * (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[None]


class WhisperLogMel(nn.Module):
    """Whisper's log-mel frontend on one waveform, identical to `WhisperFeatureExtractor` on the real frames.

    `(N,)` float32 at 16 kHz -> `(80, N // 160)`. The clip is zero-padded on the right before the STFT so
    the last frames see what they see in Whisper's 30 s zero padding; the log floor (max - 8) is per clip.
    """

    def __init__(self, n_mels: int = N_MELS):
        super().__init__()
        filters = torch.from_numpy(mel_filters(n_mels).T.astype(np.float32))
        self.register_buffer("filters", filters, persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        num_frames = wave.shape[0] // HOP
        padded = nn.functional.pad(wave, (0, N_FFT))
        stft = torch.stft(padded, N_FFT, HOP, window=self.window, return_complex=True)[:, :num_frames]
        log_spec = torch.clamp(self.filters @ stft.abs().pow(2), min=1e-10).log10()  # (80, T)
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0
