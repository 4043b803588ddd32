import hashlib
import subprocess
import sys

import numpy as np
import pytest

from mamer.data.espeak import EspeakError, EspeakSynthesizer, variants

TEXT = "Hello there, this is a short test of the speech synthesiser."


@pytest.fixture(scope="module")
def tts() -> EspeakSynthesizer:
    return EspeakSynthesizer()


def median_f0(x: np.ndarray, sr: int, fmin: float = 60, fmax: float = 450) -> float:
    """Median autocorrelation F0 (Hz) over voiced 40 ms frames."""
    n, hop = int(0.04 * sr), int(0.01 * sr)
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop]
    frames = frames - frames.mean(1, keepdims=True)
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * n)) ** 2)[:, :n]
    lo, hi = int(sr / fmax), int(sr / fmin)
    lag = lo + ac[:, lo:hi].argmax(1)
    voiced = (ac[np.arange(len(ac)), lag] > 0.5 * ac[:, 0]) & (np.sqrt((frames**2).mean(1)) > 0.02)
    return float(np.median(sr / lag[voiced]))


def test_synthesizes_audible_speech_of_plausible_length(tts):
    x = tts.synthesize(TEXT)
    assert tts.sample_rate == 22050 and x.dtype == np.float32 and x.ndim == 1
    assert 1.5 < len(x) / tts.sample_rate < 6.0
    assert np.sqrt(np.mean(x**2)) > 0.01 and np.abs(x).max() <= 1.0


def test_same_arguments_give_identical_samples_whatever_came_before(tts):
    a = tts.synthesize(TEXT, voice="en-gb-x-rp+f2", rate=190, pitch=60)
    tts.synthesize("Something else entirely.", voice="en-us+m3", rate=120, word_gap=5)
    b = tts.synthesize(TEXT, voice="en-gb-x-rp+f2", rate=190, pitch=60)
    assert np.array_equal(a, b)


def test_prosody_parameters_move_the_signal_the_expected_way(tts):
    sr = tts.sample_rate
    low, high = tts.synthesize(TEXT, pitch=15), tts.synthesize(TEXT, pitch=85)
    assert median_f0(high, sr) > 1.3 * median_f0(low, sr)
    assert len(tts.synthesize(TEXT, rate=120)) > 1.3 * len(tts.synthesize(TEXT, rate=240))
    quiet, loud = tts.synthesize(TEXT, volume=50), tts.synthesize(TEXT, volume=150)
    assert np.sqrt(np.mean(loud**2)) > 2 * np.sqrt(np.mean(quiet**2))


def test_unknown_voice_or_variant_is_a_clear_error(tts):
    assert {"f1", "m1", "m7"} <= set(variants())
    with pytest.raises(EspeakError, match="voice"):
        tts.synthesize("hi", voice="xx-not-a-voice")
    with pytest.raises(EspeakError, match="variant"):
        tts.synthesize("hi", voice="en-us+nope")


def test_breathy_variant_is_identical_across_processes(tts):
    # f2 adds breath noise from espeak's own time-seeded generator; it must be reseeded per utterance.
    code = (
        "import sys, hashlib; from mamer.data.espeak import EspeakSynthesizer;"
        "x = EspeakSynthesizer().synthesize('Breathy voice.', voice='en+f2');"
        "sys.stdout.write(hashlib.sha1(x.tobytes()).hexdigest())"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert other == hashlib.sha1(tts.synthesize("Breathy voice.", voice="en+f2").tobytes()).hexdigest()
