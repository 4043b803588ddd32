"""Any Hugging Face speech encoder (WavLM, HuBERT, wav2vec2, data2vec-audio) by local folder or hub name.

The model comes from `transformers.AutoModel`; with no network (or `allow_download=False`, the default) only
local files are read, so a hub name that is not in the local cache fails at once with a message saying how to
pass a local folder. Long recordings are cut into overlapping windows and stitched at the overlap midpoints,
so memory stays bounded whatever the clip length.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mamer.encoders.base import (
    LAYER_POOLINGS,
    AudioEncoder,
    check_waveforms,
    choose_layers,
    encode_in_windows,
    pool_layers,
    pooled_dim,
    split_windows,
)
from mamer.encoders.hf import drop_unused_layers, load_hf_config, load_hf_model, local_only

SAMPLE_RATE = 16000


def wants_normalized_input(path: str | Path, local: bool) -> bool:
    """The feature extractor's `do_normalize` if the folder has one, else True (what wav2vec2-style models expect)."""
    from transformers import AutoFeatureExtractor

    try:
        extractor = AutoFeatureExtractor.from_pretrained(str(path), local_files_only=local)
    except (OSError, ValueError):
        return True
    return bool(getattr(extractor, "do_normalize", True))


def receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Samples the convolutional feature encoder needs for one output frame."""
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides, strict=True):
        field += (kernel - 1) * jump
        jump *= stride
    return field


def batching(config) -> str:
    """How padded batches give each clip exactly its unpadded features (under the attention mask).

    "mask": layer-norm feature encoders with one positional convolution (WavLM-large, wav2vec2-large,
    HuBERT-large): every step is per frame, masked, or sees zeroed padding as its own zero padding.
    "clipwise": the same models with a group-norm feature encoder (the base models): only the first conv
    layer's GroupNorm, which normalises each channel over the whole clip, would see the padding, so that
    layer runs clip by clip (`ClipwiseFirstLayer`) and the rest in the batch.
    "equal": data2vec-audio, whose stacked positional convolutions carry padding into valid frames:
    batches hold clips of equal length only.
    """
    if config.model_type not in ("wavlm", "wav2vec2", "hubert"):
        return "equal"
    return "mask" if getattr(config, "feat_extract_norm", "group") == "layer" else "clipwise"


class ClipwiseFirstLayer(nn.Module):
    """A feature encoder's first conv layer (conv, GroupNorm, activation) applied to each clip's own samples.

    `lengths` (samples per row of the next batch) is set before each forward; `(B, 1, N)` -> `(B, C, T)`,
    zero beyond each clip's frames (later layers only carry that into frames outside the clip's length).
    """

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer
        self.lengths: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if all(n == x.shape[-1] for n in self.lengths):  # no padding (one clip, or equal lengths): as is
            return self.layer(x)
        rows = [self.layer(x[b : b + 1, :, :n]) for b, n in enumerate(self.lengths)]
        out = x.new_zeros(len(rows), rows[0].shape[1], max(r.shape[-1] for r in rows))
        for b, row in enumerate(rows):
            out[b, :, : row.shape[-1]] = row[0]
        return out


class HFAudioEncoder(AudioEncoder):
    """Frame features `(T, hidden_size)` at 16 kHz / prod(conv_stride) frames/s (50 for the usual models).

    `layers` picks hidden states (0 = after the feature projection, i = after transformer layer i, -1 = last)
    and averages them, or with `layer_pooling="learned"` keeps them side by side `(T, len(layers) *
    hidden_size)` for the model to weigh (default then: all of them). Layers above the deepest chosen one are
    not run. Waveforms are standardised per utterance when the model's feature extractor does so.
    Audio longer than `window_seconds` is encoded in windows overlapping by `overlap_seconds`. The weights
    load on the first `encode`: the spec (the feature cache's key) needs only the config.
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        path: str | Path,
        name: str = "hf",
        layers: int | Sequence[int] | None = None,
        batch_size: int = 8,
        device: str | torch.device = "cpu",
        window_seconds: float = 20.0,
        overlap_seconds: float = 2.0,
        allow_download: bool = False,
        source: dict | None = None,
        layer_pooling: str = "mean",
    ):
        self.path, self.allow_download = path, allow_download
        self.config = config = load_hf_config(path, "audio", allow_download)
        if not hasattr(config, "conv_stride"):
            raise ValueError(
                f"{path}: {config.model_type} is not a wav2vec2-style speech encoder (no conv_stride)"
            )
        self.normalize = wants_normalized_input(path, local_only(path, allow_download))
        self.samples_per_frame = math.prod(config.conv_stride)
        self.min_samples = receptive_field(config.conv_kernel, config.conv_stride)
        self.batching = batching(config)
        self.device = torch.device(device)
        self.name, self.batch_size = name, batch_size
        self.frame_rate = SAMPLE_RATE / self.samples_per_frame
        self.num_states = int(config.num_hidden_layers) + 1
        self.layer_pooling = layer_pooling
        self.layers = choose_layers(layers, -1, self.num_states, layer_pooling)
        self.dim = pooled_dim(int(config.hidden_size), self.layers, layer_pooling)
        self.window = self._frames(window_seconds) * self.samples_per_frame
        self.overlap = self._frames(overlap_seconds) * self.samples_per_frame
        if not 0 < self.overlap < self.window:
            raise ValueError(
                f"need 0 < overlap_seconds < window_seconds, got {overlap_seconds}, {window_seconds}"
            )
        self.source = source or {"path": str(path)}

    @functools.cached_property
    def model(self):
        """The frozen transformers model, loaded on first use (the spec needs only its config)."""
        model = load_hf_model(self.path, "audio", self.allow_download).to(self.device)
        drop_unused_layers(model, self.layers)
        if self.batching == "clipwise":
            layers = model.feature_extractor.conv_layers
            layers[0] = ClipwiseFirstLayer(layers[0])
        return model

    def _frames(self, seconds: float) -> int:
        return round(seconds * SAMPLE_RATE / self.samples_per_frame)

    def spec(self) -> dict:
        return {
            "name": self.name,
            "model_type": self.config.model_type,
            "dim": self.dim,
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "layers": self.layers,
            "num_hidden_states": self.num_states,
            "pooling": LAYER_POOLINGS[self.layer_pooling],
            "normalize_input": self.normalize,
            "window_seconds": self.window / SAMPLE_RATE,
            "overlap_seconds": self.overlap / SAMPLE_RATE,
            "weights": self.source,
        }

    @torch.inference_mode()
    def encode(self, waveforms: list[np.ndarray]) -> list[torch.Tensor]:
        return encode_in_windows(
            [self._standardise(w) for w in check_waveforms(waveforms)],
            lambda n: split_windows(n, self.window, self.overlap, self.samples_per_frame),
            self._batches,
            self._encode_batch,
        )

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices into `lengths`, shortest first, in batches of at most `batch_size`.

        Where padding would leak into valid frames (see `batching`), batches hold equal lengths only:
        features never depend on what they were batched with.
        """
        batches: list[list[int]] = []
        for k in sorted(range(len(lengths)), key=lengths.__getitem__):
            full = batches and len(batches[-1]) == self.batch_size
            mixed = self.batching == "equal" and batches and lengths[batches[-1][0]] != lengths[k]
            if not batches or full or mixed:
                batches.append([])
            batches[-1].append(k)
        return batches

    def _standardise(self, wave: np.ndarray) -> np.ndarray:
        if not self.normalize:
            return wave
        return ((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)).astype(np.float32)

    def _encode_batch(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        """Features `(T_i, dim)` for a batch of waveforms; a row's frames do not depend on the padding."""
        lengths = torch.tensor([max(len(w), self.min_samples) for w in waves])
        batch = torch.zeros(len(waves), int(lengths.max()))
        mask = torch.zeros(batch.shape, dtype=torch.long)
        for row, wave in enumerate(waves):
            batch[row, : len(wave)] = torch.from_numpy(wave)
            mask[row, : lengths[row]] = 1
        kwargs = {} if self.batching == "equal" else {"attention_mask": mask.to(self.device)}
        if self.batching == "clipwise":
            self.model.feature_extractor.conv_layers[0].lengths = lengths.tolist()
        out = self.model(batch.to(self.device), output_hidden_states=True, **kwargs)
        pooled = pool_layers(out.hidden_states, self.layers, self.layer_pooling)  # (B, T, dim)
        frames = self.model._get_feat_extract_output_lengths(lengths).tolist()
        return [pooled[row, : int(n)] for row, n in enumerate(frames)]
