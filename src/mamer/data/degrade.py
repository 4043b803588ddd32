"""Degradations that real input brings, applied to a 16 kHz mono waveform: the augmentation of issue 35.

Each is a plain function of the wave and its parameters: speed (resampled, so pitch moves with it, as sox's
`speed`), gain, reverberation by a synthetic room impulse response (exponentially decaying noise with a given
RT60), additive coloured noise (white, pink, brown) or babble (other speakers' clips summed) at a signal-to-noise
ratio, the telephone band (300-3,400 Hz, through 8 kHz and 8-bit mu-law), and a lossy codec round trip (Opus or
MP3 at a low bit rate, encoded and decoded by PyAV as an upload would be). `random_chain` draws a chain of them
from a seeded generator; `apply_chain` runs it. A chain is a list of `(kind, params)` that JSON can hold, so the
augmentation of every copy is written down and can be replayed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import av
import numpy as np

from mamer.data.audio import decode_bytes, resample

SR = 16_000
KINDS = ("speed", "gain", "reverb", "noise", "babble", "telephone", "codec")
NOISE_COLOURS = ("white", "pink", "brown")
PEAK = 0.99  # a degraded wave louder than this is scaled down to it, never clipped

Chain = list[tuple[str, dict]]


def change_speed(wave: np.ndarray, factor: float) -> np.ndarray:
    """Played `factor` times as fast (0.9: slower and lower): resampled to SR / factor, read at SR."""
    if not 0.5 <= factor <= 2.0:
        raise ValueError(f"speed factor must be in [0.5, 2], got {factor}")
    return resample(wave, SR, int(round(SR / factor / 100)) * 100)


def apply_gain(wave: np.ndarray, db: float) -> np.ndarray:
    """`wave` louder by `db` decibels (negative: quieter)."""
    return (wave * 10 ** (db / 20)).astype(np.float32)


def room_response(rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: a direct path, then noise decaying by 60 dB in `rt60` seconds."""
    if not 0.05 <= rt60 <= 3.0:
        raise ValueError(f"rt60 must be in [0.05, 3] seconds, got {rt60}")
    t = np.arange(int(SR * min(1.2 * rt60, 1.5))) / SR
    tail = rng.standard_normal(len(t)) * np.exp(-6.908 * t / rt60)  # ln(1000): -60 dB at rt60
    tail[: int(0.002 * SR)] = 0.0  # the first reflections arrive after the direct sound
    response = 0.3 * tail / (np.abs(tail).max() + 1e-9)
    response[0] = 1.0
    return response.astype(np.float32)


def reverberate(wave: np.ndarray, response: np.ndarray) -> np.ndarray:
    """`wave` convolved with `response`, cut to its own length, at its own RMS."""
    from scipy.signal import fftconvolve

    wet = fftconvolve(wave, response)[: len(wave)]
    return _at_rms(wet, _rms(wave))


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of white, pink (1/f power) or brown (1/f^2) noise at unit RMS."""
    if colour not in NOISE_COLOURS:
        raise ValueError(f"noise colour must be one of {NOISE_COLOURS}, got {colour!r}")
    spectrum = np.fft.rfft(rng.standard_normal(max(n, 2)))
    f = np.maximum(np.fft.rfftfreq(max(n, 2)), 1.0 / max(n, 2))
    spectrum *= {"white": 1.0, "pink": f**-0.5, "brown": f**-1.0}[colour]
    return _at_rms(np.fft.irfft(spectrum, max(n, 2))[:n], 1.0)


def babble(others: Sequence[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of babble: each of `others` (other speakers' clips) looped from a random start, summed,
    at unit RMS."""
    if not others:
        raise ValueError("babble needs at least one other clip")
    total = np.zeros(n, dtype=np.float64)
    for clip in others:
        if len(clip) == 0:
            continue
        start = int(rng.integers(len(clip)))
        looped = np.resize(np.roll(clip, -start), n)
        total += _at_rms(looped, 1.0)
    return _at_rms(total, 1.0)


def add_at_snr(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`wave` plus `noise` (cut or looped to its length) scaled so that the wave is `snr_db` dB above it."""
    noise = np.resize(noise, len(wave))
    return (wave + _at_rms(noise, _rms(wave) / 10 ** (snr_db / 20))).astype(np.float32)


def telephone(wave: np.ndarray) -> np.ndarray:
    """The telephone channel: band-passed to 300-3,400 Hz, sampled at 8 kHz with 8-bit mu-law, back to SR."""
    from scipy.signal import butter, sosfilt

    band = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=SR, output="sos"), wave)
    narrow = resample(band, SR, 8_000)
    peak = max(float(np.abs(narrow).max()), 1e-9)
    mu = 255.0
    x = narrow / peak
    coded = np.round(np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) * 127) / 127
    decoded = np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(mu)) / mu * peak
    return resample(decoded.astype(np.float32), 8_000, SR)[: len(wave)]


CODECS = {"opus": ("ogg", "libopus"), "mp3": ("mp3", "libmp3lame")}


def codec_round_trip(wave: np.ndarray, codec: str, bitrate: int) -> np.ndarray:
    """`wave` encoded with `codec` ("opus" or "mp3") at `bitrate` bit/s and decoded again (PyAV, in memory)."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    container_format, encoder = CODECS[codec]
    buffer = io.BytesIO()
    pcm = (np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16)[None, :]
    with av.open(buffer, "w", format=container_format) as out:
        stream = out.add_stream(encoder, rate=SR, layout="mono")
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SR
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    decoded = decode_bytes(buffer.getvalue(), SR, what=f"{codec} round trip")
    decoded = decoded[: len(wave)]
    return np.pad(decoded, (0, len(wave) - len(decoded))).astype(np.float32)


def random_chain(rng: np.random.Generator, kinds: Sequence[str] = KINDS, babble_ok: bool = True) -> Chain:
    """A chain of degradations drawn from `kinds`, at least one: speed and gain each half the time, a room
    40%, then noise or babble (at most one: 5-20 dB SNR, babble 5-15 dB), then the channel: telephone or a
    codec (at most one). `babble_ok` False leaves babble out (no other speakers' clips to draw)."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown degradation(s) {sorted(unknown)}; known: {', '.join(KINDS)}")
    kinds = [k for k in kinds if babble_ok or k != "babble"]
    if not kinds:
        raise ValueError("no degradation to draw from (babble alone needs other speakers' clips)")
    while True:
        chain: Chain = []
        if "speed" in kinds and rng.random() < 0.5:
            chain.append(("speed", {"factor": float(rng.choice([0.9, 0.95, 1.05, 1.1]))}))
        if "gain" in kinds and rng.random() < 0.5:
            chain.append(("gain", {"db": round(float(rng.uniform(-12, 6)), 1)}))
        if "reverb" in kinds and rng.random() < 0.4:
            chain.append(
                ("reverb", {"rt60": round(float(rng.uniform(0.2, 0.8)), 2), "seed": int(rng.integers(2**31))})
            )
        additive = [k for k in ("noise", "babble") if k in kinds]
        if additive and rng.random() < 0.6:
            kind = str(rng.choice(additive))
            if kind == "noise":
                params = {
                    "colour": str(rng.choice(NOISE_COLOURS)),
                    "snr_db": round(float(rng.uniform(5, 20)), 1),
                }
            else:
                params = {"speakers": int(rng.integers(3, 6)), "snr_db": round(float(rng.uniform(5, 15)), 1)}
            chain.append((kind, {**params, "seed": int(rng.integers(2**31))}))
        channels = [k for k in ("telephone", "codec") if k in kinds]
        if channels and rng.random() < 0.5:
            kind = str(rng.choice(channels))
            if kind == "telephone":
                chain.append(("telephone", {}))
            else:
                codec = str(rng.choice(sorted(CODECS)))
                rate = int(
                    rng.choice(
                        [8_000, 12_000, 16_000, 24_000] if codec == "opus" else [32_000, 48_000, 64_000]
                    )
                )
                chain.append(("codec", {"codec": codec, "bitrate": rate}))
        if chain:
            return chain


def apply_chain(wave: np.ndarray, chain: Chain, others: Sequence[np.ndarray] = ()) -> np.ndarray:
    """`wave` through each degradation of `chain` in order; `others` are the clips babble draws from (the
    first `speakers` of them). The result is scaled down to PEAK if it is louder."""
    wave = np.asarray(wave, dtype=np.float32)
    for kind, params in chain:
        if kind == "speed":
            wave = change_speed(wave, params["factor"])
        elif kind == "gain":
            wave = apply_gain(wave, params["db"])
        elif kind == "reverb":
            wave = reverberate(wave, room_response(params["rt60"], np.random.default_rng(params["seed"])))
        elif kind == "noise":
            noise = coloured_noise(len(wave), params["colour"], np.random.default_rng(params["seed"]))
            wave = add_at_snr(wave, noise, params["snr_db"])
        elif kind == "babble":
            noise = babble(others[: params["speakers"]], len(wave), np.random.default_rng(params["seed"]))
            wave = add_at_snr(wave, noise, params["snr_db"])
        elif kind == "telephone":
            wave = telephone(wave)
        elif kind == "codec":
            wave = codec_round_trip(wave, params["codec"], params["bitrate"])
        else:
            raise ValueError(f"unknown degradation {kind!r}; known: {', '.join(KINDS)}")
    peak = float(np.abs(wave).max()) if len(wave) else 0.0
    return (wave * (PEAK / peak) if peak > PEAK else wave).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def _at_rms(x: np.ndarray, target: float) -> np.ndarray:
    return (x * (target / max(_rms(x), 1e-12))).astype(np.float32)
