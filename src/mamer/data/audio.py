"""Read audio files into mono float32 waveforms at the rate an encoder expects."""

from __future__ import annotations

import shutil
import subprocess
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

VIA_FFMPEG = (".mp4", ".m4a")  # containers libsndfile cannot read


class AudioLoadError(ValueError):
    """An audio file could not be turned into a usable waveform; the message names the file and why."""


def resample(wave: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling of `wave` `(N,)` or `(N, C)` from `sr` to `target_sr` Hz; returns float32."""
    if sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {sr} -> {target_sr}")
    wave = np.asarray(wave, dtype=np.float32)
    if sr == target_sr:
        return wave
    g = gcd(int(sr), int(target_sr))
    return resample_poly(wave, target_sr // g, sr // g, axis=0).astype(np.float32)


def load_audio(path: str | Path, target_sr: int) -> np.ndarray:
    """Load `path` (wav/flac/ogg/mp3; mp4/m4a through ffmpeg) as a mono float32 waveform `(N,)` at `target_sr` Hz.

    Stereo is averaged to mono. Raises AudioLoadError for a missing, unreadable, empty or non-finite file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioLoadError(f"{path}: no such audio file")
    if path.suffix.lower() in VIA_FFMPEG:
        wave, sr = decode_with_ffmpeg(path, target_sr), target_sr
    else:
        wave, sr = _read_soundfile(path)
    if wave.shape[0] == 0:
        raise AudioLoadError(f"{path}: zero-length audio (no samples)")
    if not np.isfinite(wave).all():
        raise AudioLoadError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(resample(wave, sr, target_sr))


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 `(N,)` and its sample rate, through libsndfile."""
    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ...
        raise AudioLoadError(f"{path}: unreadable audio ({type(err).__name__}: {err})") from err
    return wave.mean(axis=1), sr


def decode_with_ffmpeg(path: Path, sr: int) -> np.ndarray:
    """Mono float32 `(N,)` at `sr` Hz of a container libsndfile cannot read (MELD's mp4), via the ffmpeg program."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioLoadError(
            f"{path}: {path.suffix} files are decoded by ffmpeg, which is not on PATH; install ffmpeg or convert "
            f"to wav first: ffmpeg -i {path.name} -vn -ac 1 -ar 16000 {path.stem}.wav"
        )
    command = [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(sr)]
    result = subprocess.run([*command, "-f", "f32le", "-"], capture_output=True, check=False)
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip()[-300:]
        raise AudioLoadError(f"{path}: ffmpeg could not decode it (exit {result.returncode}: {reason})")
    return np.frombuffer(result.stdout, dtype="<f4").copy()
