"""The two interfaces every frozen feature extractor implements."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

import numpy as np
import torch


class AudioEncoder(abc.ABC):
    """Frozen audio feature extractor: waveforms in, per-utterance frame features out."""

    name: str
    sample_rate: int = 16000
    dim: int
    frame_rate: float

    @abc.abstractmethod
    def spec(self) -> dict:
        """JSON-serialisable description (name, layers, dims, weights source): keys the feature cache."""

    @abc.abstractmethod
    def encode(self, waveforms: list[np.ndarray]) -> list[torch.Tensor]:
        """Encode mono float32 waveforms at `sample_rate`.

        Returns one float32 CPU tensor `(T_i, dim)` per waveform, `T_i ≈ len_i / sample_rate * frame_rate`.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, frame_rate={self.frame_rate})"


class TextEncoder(abc.ABC):
    """Frozen text feature extractor: strings in, per-text token features out."""

    name: str
    dim: int

    @abc.abstractmethod
    def spec(self) -> dict:
        """JSON-serialisable description (name, layers, dims, weights source): keys the feature cache."""

    @abc.abstractmethod
    def encode(self, texts: list[str]) -> list[torch.Tensor]:
        """Encode texts into one float32 CPU tensor `(T_i, dim)` per text.

        Special tokens ([CLS]/[SEP]) are excluded; `T_i >= 1` for a text with any word or punctuation,
        `T_i == 0` for an empty or whitespace-only text.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def check_waveforms(waveforms: list[np.ndarray]) -> list[np.ndarray]:
    """Validate encoder input: a list of non-empty 1-D arrays; returns them as contiguous float32."""
    if isinstance(waveforms, np.ndarray):
        raise TypeError("encode() takes a list of 1-D waveforms, not a single array: wrap it in a list")
    out = []
    for i, wave in enumerate(waveforms):
        wave = np.ascontiguousarray(np.asarray(wave, dtype=np.float32))
        if wave.ndim != 1:
            raise ValueError(f"waveform {i} has shape {wave.shape}: expected mono 1-D (see load_audio)")
        if wave.size == 0:
            raise ValueError(f"waveform {i} is empty")
        out.append(wave)
    return out


def resolve_layers(layers: int | Sequence[int], num_states: int) -> list[int]:
    """Layer choice (an index or a list; negatives count from the end) -> sorted hidden-state indices."""
    chosen = [layers] if isinstance(layers, int) else list(layers)
    if not chosen:
        raise ValueError("layers must name at least one hidden state")
    resolved = []
    for index in chosen:
        if not -num_states <= int(index) < num_states:
            raise ValueError(f"layer {index} out of range: the encoder has hidden states 0..{num_states - 1}")
        resolved.append(int(index) % num_states)
    return sorted(set(resolved))


# How the chosen hidden states become features: the `layer_pooling` option -> the spec's "pooling" entry.
LAYER_POOLINGS = {"mean": "mean of layers", "learned": "stacked layers for a learned weighted sum"}


def choose_layers(
    layers: int | Sequence[int] | None, default: int | Sequence[int], num_states: int, layer_pooling: str
) -> list[int]:
    """The hidden states an encoder keeps (see `resolve_layers`): `layers`, or when None the encoder's
    `default`, every state for "learned" pooling (to learn from). Checks `layer_pooling`."""
    if layer_pooling not in LAYER_POOLINGS:
        raise ValueError(f"layer_pooling must be one of {', '.join(LAYER_POOLINGS)}; got {layer_pooling!r}")
    if layers is None:
        layers = list(range(num_states)) if layer_pooling == "learned" else default
    return resolve_layers(layers, num_states)


def pooled_dim(hidden_size: int, layers: list[int], layer_pooling: str) -> int:
    """Width of the features `pool_layers` gives: one hidden state, or for "learned" all `layers` side by side."""
    return hidden_size * (len(layers) if layer_pooling == "learned" else 1)


def pool_layers(states: Sequence[torch.Tensor], layers: list[int], layer_pooling: str) -> torch.Tensor:
    """Hidden states `(B, T, D)` -> features: their mean `(B, T, D)`, or for "learned" the chosen states side by
    side `(B, T, len(layers) * D)`, layer-major, for the model's learned weighted sum (`model.tokens.LayerMix`)."""
    chosen = [states[i] for i in layers]
    return torch.cat(chosen, dim=-1) if layer_pooling == "learned" else torch.stack(chosen).mean(0)


def stacked_layers(spec: dict) -> int:
    """How many hidden states an encoder spec's features hold side by side (1 when they are averaged)."""
    return len(spec["layers"]) if spec.get("pooling") == LAYER_POOLINGS["learned"] else 1


def layers_to_run(layers: list[int]) -> int:
    """Transformer layers an encoder must run to give hidden states `layers` (index i = after layer i):
    everything above the deepest one is skipped. At least one, so the model still reports its states."""
    return max(max(layers), 1)


def split_windows(
    num_samples: int, window: int, overlap: int, samples_per_frame: int
) -> list[tuple[int, int, int, int]]:
    """Cut `num_samples` into windows of at most `window` samples overlapping by `overlap`.

    `window` and `overlap` are multiples of `samples_per_frame` (the encoder's samples per output frame).

    Returns `(start_sample, end_sample, keep_from, keep_to)` per window, keep_* in output frames relative to
    the window: consecutive windows hand over at the middle of their overlap, so kept frames tile the clip.
    """
    if num_samples <= window:
        return [(0, num_samples, 0, 1 << 30)]
    hop = window - overlap
    half_overlap = overlap // 2 // samples_per_frame
    starts = list(range(0, num_samples - overlap, hop))
    windows = []
    for i, start in enumerate(starts):
        last = i == len(starts) - 1
        end = num_samples if last else start + window
        keep_from = 0 if i == 0 else half_overlap
        keep_to = 1 << 30 if last else hop // samples_per_frame + half_overlap
        windows.append((start, end, keep_from, keep_to))
    return windows


def shortest_first(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices into `lengths`, shortest first, in batches of at most `batch_size` (little padding)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[b : b + batch_size] for b in range(0, len(order), batch_size)]


def encode_in_windows(
    waveforms: list[np.ndarray],
    windows: Callable[[int], list[tuple[int, int, int, int]]],
    batches: Callable[[list[int]], list[list[int]]],
    encode_batch: Callable[[list[np.ndarray]], list[torch.Tensor]],
) -> list[torch.Tensor]:
    """Cut each waveform into `windows(num_samples)`, encode them in `batches(window lengths)`, keep each
    window's own frames and stitch them back: per utterance `(T_i, dim)` float32 on the CPU."""
    segments = [(i, *w) for i, wave in enumerate(waveforms) for w in windows(len(wave))]
    outputs: list[torch.Tensor | None] = [None] * len(segments)
    for batch in batches([end - start for _, start, end, _, _ in segments]):
        waves = [waveforms[segments[k][0]][segments[k][1] : segments[k][2]] for k in batch]
        for k, features in zip(batch, encode_batch(waves), strict=True):
            outputs[k] = features[segments[k][3] : segments[k][4]]
    stitched: list[list[torch.Tensor]] = [[] for _ in waveforms]
    for (i, *_), features in zip(segments, outputs, strict=True):
        stitched[i].append(features)
    return [torch.cat(parts).float().cpu().contiguous() for parts in stitched]
