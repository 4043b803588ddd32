"""openSMILE low-level descriptors (eGeMAPS, ComParE) as frame features: the hand-crafted acoustic baseline.

Optional: the `opensmile` package is under audEERING's research licence (non-commercial use only), so it is an
extra (`pip install 'mamer[opensmile]'`) and is imported only when an encoder is built.
"""

from __future__ import annotations

import numpy as np
import torch

from mamer.encoders.base import AudioEncoder, check_waveforms

INSTALL_HINT = (
    "pip install 'mamer[opensmile]' (openSMILE's licence allows research and other non-commercial use only; "
    "commercial use needs a licence from audEERING)"
)

# Registry name -> openSMILE feature set, all at the LLD level: per 10 ms frame, no deltas. ComParE_2016 also has
# an LLD_de level (the 65 deltas alone), but it has 2 frames more than the LLDs, so the two do not line up.
FEATURE_SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}

# Both sets give no frame (a NaN row and a warning) under 60 ms: shorter clips are zero-padded to this.
MIN_SAMPLES = 960


class OpenSmileEncoder(AudioEncoder):
    """openSMILE LLDs at 16 kHz, 10 ms hop: `(T, dim)` at 100 frames/s, `T = (max(N, 960) - 800) // 160 + 1`.

    `egemaps`: eGeMAPSv02, 25 LLDs (loudness, spectral slopes, MFCC 1-4, F0, jitter, shimmer, HNR, formants).
    `compare`: ComParE_2016, 65 LLDs (energy, ZCR, 26 RASTA bands, spectral shape, F0, voicing, MFCC 1-14).
    `normalize=True` standardises each LLD per utterance (zero mean, unit variance over time; an LLD constant
    over the utterance, std under 1e-5, becomes 0), since their scales differ wildly (Hz, dB, ratios: ComParE's
    spectral variance reaches 1e7, beyond the float16 feature cache, which skips such clips and says why). NaN/inf
    values become 0.
    """

    sample_rate = 16000
    frame_rate = 100.0

    def __init__(self, name: str = "egemaps", normalize: bool = True):
        if name not in FEATURE_SETS:
            raise ValueError(f"unknown openSMILE encoder {name!r}; known: {', '.join(FEATURE_SETS)}")
        try:
            import opensmile
        except ImportError as err:
            raise ImportError(f"the {name} encoder needs the opensmile package: {INSTALL_HINT}") from err
        self.name = name
        self.normalize = normalize
        self.feature_set = FEATURE_SETS[name]
        self.version = opensmile.__version__
        self.smile = opensmile.Smile(
            feature_set=opensmile.FeatureSet[self.feature_set],
            feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
        )
        self.feature_names = list(self.smile.feature_names)
        self.dim = len(self.feature_names)

    def spec(self) -> dict:
        return {
            "name": self.name,
            "feature_set": self.feature_set,
            "feature_level": "lld",
            "opensmile": self.version,
            "dim": self.dim,
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "min_samples": MIN_SAMPLES,
            "normalize": self.normalize,
            "weights": None,
        }

    def features(self, wave: np.ndarray) -> torch.Tensor:
        """LLDs of one waveform `(N,)` float32 at 16 kHz -> `(max(2, (N - 800) // 160 + 1), dim)` float32."""
        if len(wave) < MIN_SAMPLES:
            wave = np.pad(wave, (0, MIN_SAMPLES - len(wave)))
        frames = self.smile.process_signal(wave, self.sample_rate).to_numpy(np.float64)  # (T, dim)
        frames = np.nan_to_num(frames, nan=0.0, posinf=0.0, neginf=0.0)
        if self.normalize:  # exact unit variance (jitter's std is ~1e-3), and 0 for a constant LLD
            std = frames.std(0)
            frames = (frames - frames.mean(0)) / np.where(std > 1e-5, std, np.inf)
        return torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))

    def encode(self, waveforms: list[np.ndarray]) -> list[torch.Tensor]:
        return [self.features(w) for w in check_waveforms(waveforms)]
