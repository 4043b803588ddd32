"""80-bin log-mel filterbank features: the no-download acoustic fallback."""

from __future__ import annotations

import math

import numpy as np
import torch

from mamer.encoders.base import AudioEncoder, check_waveforms


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None):
    """Triangular HTK-scale mel filters, `(n_fft // 2 + 1, n_mels)` float32, peak 1 per filter."""
    f_max = sample_rate / 2 if f_max is None else f_max

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))  # (n_mels + 2,)
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)[:, None]  # (F, 1)
    lower, center, upper = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
    rising = (freqs - lower) / (center - lower)
    falling = (upper - freqs) / (upper - center)
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


class LogMelEncoder(AudioEncoder):
    """log(mel power + 1e-6), 25 ms Hann window, 10 ms hop: `(T, n_mels)` at 100 frames/s.

    `normalize=True` standardises each mel bin per utterance (zero mean, unit variance over time).
    """

    name = "logmel"

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000, normalize: bool = True):
        self.sample_rate = sample_rate
        self.dim = n_mels
        self.normalize = normalize
        self.win_length = round(0.025 * sample_rate)
        self.hop_length = round(0.010 * sample_rate)
        self.n_fft = 2 ** math.ceil(math.log2(self.win_length))
        self.frame_rate = sample_rate / self.hop_length
        self._window = torch.hann_window(self.win_length)
        self._filters = torch.from_numpy(mel_filterbank(n_mels, self.n_fft, sample_rate))

    def spec(self) -> dict:
        return {
            "name": self.name,
            "dim": self.dim,
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "win_length": self.win_length,
            "hop_length": self.hop_length,
            "n_fft": self.n_fft,
            "mel_scale": "htk",
            "normalize": self.normalize,
            "weights": None,
        }

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """Log-mel of one waveform `(N,)` -> `(max(1, N // hop), n_mels)`."""
        num_frames = max(1, wave.shape[0] // self.hop_length)
        stft = torch.stft(
            wave,
            self.n_fft,
            self.hop_length,
            self.win_length,
            window=self._window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )  # (F, N // hop + 1)
        power = stft[:, :num_frames].abs().pow(2).T  # (T, F)
        logmel = torch.log(power @ self._filters + 1e-6)  # (T, n_mels)
        if self.normalize:
            logmel = (logmel - logmel.mean(0)) / (logmel.std(0, correction=0) + 1e-5)
        return logmel

    @torch.inference_mode()
    def encode(self, waveforms: list[np.ndarray]) -> list[torch.Tensor]:
        return [self.features(torch.from_numpy(w)).float().contiguous() for w in check_waveforms(waveforms)]
