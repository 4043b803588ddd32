"""Decoding any container with PyAV: lossy formats match the WAV they came from; bad files raise AudioLoadError."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest
import soundfile as sf

from mamer.data import audio
from mamer.data.audio import AudioLoadError, audio_duration, decode_bytes, load_audio, stream_audio
from mamer.data.espeak import EspeakSynthesizer

SR = 16000


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    """About 3 s of synthesised English speech `(N,)` and its rate (22.05 kHz)."""
    tts = EspeakSynthesizer()
    return tts.synthesize("The quick brown fox jumps over the lazy dog near the river."), tts.sample_rate


@pytest.fixture(scope="module")
def speech_wav(speech, tmp_path_factory) -> tuple[str, np.ndarray]:
    """The speech as a 16-bit WAV file, and its reference decoding at 16 kHz."""
    path = tmp_path_factory.mktemp("wav") / "speech.wav"
    wave, sr = speech
    sf.write(path, wave, sr, subtype="PCM_16")
    return str(path), load_audio(path, SR)


def encode(path, wave: np.ndarray, sr: int, codec: str, rate: int, video: bool = False) -> None:
    """Write mono `wave` at `sr` Hz with `codec` at `rate` Hz (plus a tiny video track) into `path`."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        if video:  # every stream is added before the first packet is written
            picture = out.add_stream("mpeg4", rate=10)
            picture.width, picture.height, picture.pix_fmt = 32, 32, "yuv420p"
            black = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            for packet in [*(p for _ in range(10) for p in picture.encode(black)), *picture.encode(None)]:
                out.mux(packet)
        pcm = np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = sr
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)


def aligned_correlation(x: np.ndarray, ref: np.ndarray, max_lag: int = 1600) -> float:
    """Correlation of `x` with `ref` at the best lag within ±`max_lag` samples (codec delay, AAC priming)."""
    n = len(x) + len(ref)
    xc = np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(ref, n)), n)
    lags = np.r_[0 : max_lag + 1, n - max_lag : n]
    lag = int(lags[np.argmax(xc[lags])])
    lag = lag - n if lag > n // 2 else lag
    a, b = x[max(lag, 0) :], ref[max(-lag, 0) :]
    m = min(len(a), len(b))
    return float(np.corrcoef(a[:m], b[:m])[0, 1])


@pytest.mark.parametrize(
    "name, codec, rate, video",
    [
        ("clip.webm", "libopus", 48000, False),  # what browsers' MediaRecorder sends
        ("clip.ogg", "libopus", 48000, False),
        ("clip.m4a", "aac", 44100, False),
        ("clip.mp3", "libmp3lame", 44100, False),
        ("clip.mp4", "aac", 16000, True),  # the audio track of a video
    ],
)
def test_lossy_containers_decode_close_to_the_wav(speech, speech_wav, tmp_path, name, codec, rate, video):
    wave, sr = speech
    path = tmp_path / name
    encode(path, wave, sr, codec, rate, video)
    decoded = load_audio(path, SR)
    reference = speech_wav[1]
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    assert abs(len(decoded) - len(reference)) < 0.1 * SR  # codecs pad by up to a frame or two
    assert aligned_correlation(decoded, reference) > 0.95
    assert audio_duration(path) == pytest.approx(len(reference) / SR, abs=0.1)


def test_stereo_is_averaged_and_resampled(tmp_path):
    t = np.arange(22050) / 22050
    left, right = np.sin(2 * np.pi * 200 * t), 0.2 * np.sin(2 * np.pi * 200 * t)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], 1), 22050, subtype="FLOAT")
    sf.write(tmp_path / "stereo.flac", np.stack([left, right], 1), 22050)
    encode(tmp_path / "mono.mp3", 0.6 * left, 22050, "libmp3lame", 22050)
    for name in ("stereo.wav", "stereo.flac"):
        wave = load_audio(tmp_path / name, SR)
        assert wave.shape == (SR,) and np.abs(wave).max() == pytest.approx(0.6, abs=0.01)
    assert np.abs(load_audio(tmp_path / "mono.mp3", SR)).max() == pytest.approx(0.6, abs=0.05)


def test_decode_bytes_matches_the_file_and_names_the_upload(speech, tmp_path):
    wave, sr = speech
    encode(tmp_path / "clip.webm", wave, sr, "libopus", 48000)
    data = (tmp_path / "clip.webm").read_bytes()
    np.testing.assert_allclose(decode_bytes(data, SR), load_audio(tmp_path / "clip.webm", SR), atol=1e-6)
    with pytest.raises(AudioLoadError, match=r"^recording\.webm: .*not an audio file") as caught:
        decode_bytes(os.urandom(2000), SR, what="recording.webm")
    assert "BytesIO" not in str(caught.value)
    with pytest.raises(AudioLoadError, match=r"^upload: empty file"):
        decode_bytes(b"", SR)


def test_max_seconds_refuses_long_audio_from_the_header_or_while_decoding(speech, tmp_path, monkeypatch):
    wave, sr = speech
    encode(tmp_path / "clip.mp3", wave, sr, "libmp3lame", 44100)
    data = (tmp_path / "clip.mp3").read_bytes()
    with pytest.raises(
        AudioLoadError, match=r"clip\.mp3: audio is longer than the limit of 1 s \(3\.\d s stated"
    ):
        load_audio(tmp_path / "clip.mp3", SR, max_seconds=1)
    assert decode_bytes(data, SR, max_seconds=10).shape[0] > 2 * SR
    monkeypatch.setattr(audio, "_header_duration", lambda source, what: None)  # a header that states nothing
    with pytest.raises(AudioLoadError, match=r"^clip: audio is longer than the limit of 1\.5 s$"):
        decode_bytes(data, SR, what="clip", max_seconds=1.5)


def test_stream_audio_blocks_concatenate_to_the_whole_file(speech, speech_wav, tmp_path):
    wave, sr = speech
    encode(tmp_path / "clip.mp3", wave, sr, "libmp3lame", 44100)
    for path, exact in ((tmp_path / "clip.mp3", True), (speech_wav[0], False)):
        blocks = list(stream_audio(path, SR, block_seconds=0.5))
        assert all(len(b) == SR // 2 for b in blocks[:-1]) and 0 < len(blocks[-1]) <= SR // 2
        joined, whole = np.concatenate(blocks), load_audio(path, SR)
        assert joined.dtype == np.float32 and len(joined) == len(whole)
        if exact:  # the same decoder and resampler as load_audio
            np.testing.assert_array_equal(joined, whole)
        else:  # PyAV's resampler against libsndfile + resample_poly
            assert np.corrcoef(joined, whole)[0, 1] > 0.999


def test_bad_files_raise_audio_load_error_naming_the_file(speech, tmp_path):
    wave, sr = speech
    encode(tmp_path / "good.m4a", wave, sr, "aac", 44100)
    data = (tmp_path / "good.m4a").read_bytes()
    (tmp_path / "truncated.m4a").write_bytes(data[: len(data) // 2])  # the index (moov) is at the end
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + os.urandom(3000))
    (tmp_path / "corrupt.webm").write_bytes(os.urandom(3000))
    sf.write(tmp_path / "nan.wav", np.array([0.1, np.nan, 0.2] * 100, np.float32), SR, subtype="FLOAT")
    sf.write(tmp_path / "silent.wav", np.zeros(0, np.float32), SR)
    (tmp_path / "folder.wav").mkdir()
    os.symlink(tmp_path / "loop_b.wav", tmp_path / "loop_a.wav")
    os.symlink(tmp_path / "loop_a.wav", tmp_path / "loop_b.wav")
    expected = {
        "truncated.m4a": "not an audio file",
        "empty.wav": "empty file",
        "corrupt.wav": "not an audio file",
        "corrupt.webm": "not an audio file",
        "nan.wav": "NaN or infinite",
        "silent.wav": "zero-length",
        "folder.wav": "is a folder",
        "loop_a.wav": "symlink loop",
        "missing.wav": "no such audio file",
    }
    for name, reason in expected.items():
        with pytest.raises(AudioLoadError, match=reason) as caught:
            load_audio(tmp_path / name, SR)
        assert str(caught.value).startswith(f"{tmp_path / name}: ")
    for name in ("empty.wav", "corrupt.webm", "missing.wav"):
        with pytest.raises(AudioLoadError, match=name):
            list(stream_audio(tmp_path / name, SR))
