"""Segmentation: VAD segments over a streamed 3-minute recording cover all its speech; windows cover the file."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import soundfile as sf

from mamer.data.audio import resample
from mamer.data.espeak import EspeakSynthesizer
from mamer.workflows.inference.segments import Segment, vad_segments, window_segments

SR = 16000
SENTENCES = (
    "The weather was lovely this morning.",
    "I cannot believe you did that again!",
    "Please bring the papers to the office before noon.",
    "We walked along the river until sunset.",
    "That is the best news I have heard all year.",
    "The train was late and nobody told us why.",
)


@pytest.fixture(scope="module")
def voices() -> dict[str, np.ndarray]:
    """Each sentence (and a one-word 'Hi.') synthesised at 16 kHz."""
    tts = EspeakSynthesizer()
    return {text: resample(tts.synthesize(text), tts.sample_rate, SR) for text in (*SENTENCES, "Hi.")}


def speech_span(wave: np.ndarray, offset: int) -> tuple[float, float]:
    """Seconds from the first to the last sample louder than 2% of full scale, `offset` samples in."""
    loud = np.flatnonzero(np.abs(wave) > 0.02)
    return (offset + loud[0]) / SR, (offset + loud[-1]) / SR


def join(pieces: list[tuple[float, np.ndarray]]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Silence of the given seconds before each wave, concatenated; returns the audio and each speech span."""
    parts, spans, at = [], [], 0
    for pause, wave in pieces:
        parts += [np.zeros(round(pause * SR), np.float32), wave]
        spans.append(speech_span(wave, at + round(pause * SR)))
        at += round(pause * SR) + len(wave)
    return np.concatenate(parts + [np.zeros(SR, np.float32)]), spans


@pytest.fixture(scope="module")
def recording(voices, tmp_path_factory) -> tuple[str, np.ndarray, list[tuple[float, float]]]:
    """About 3 minutes of sentences with 0.8-2 s pauses, as a WAV file, its samples, and each sentence's span."""
    rng = np.random.default_rng(0)
    pieces, seconds = [], 0.0
    while seconds < 180:
        wave = voices[SENTENCES[len(pieces) % len(SENTENCES)]]
        pieces.append((float(rng.uniform(0.8, 2.0)), wave))
        seconds += pieces[-1][0] + len(wave) / SR
    audio, spans = join(pieces)
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, audio, SR, subtype="PCM_16")
    return str(path), audio, spans


def check_layout(segments: list[Segment], duration: float) -> None:
    """Segments are in order, do not overlap, and lie within [0, duration]."""
    assert segments and segments[0].start >= 0 and segments[-1].end <= duration + 1e-6
    for a, b in pairwise(segments):
        assert a.start < a.end <= b.start < b.end


def uncovered(spans: list[tuple[float, float]], segments: list[Segment], step: float = 0.01) -> list[float]:
    """Times (every `step` s inside the speech spans) that no segment covers."""
    times = np.concatenate([np.arange(a, b, step) for a, b in spans])
    inside = np.zeros(len(times), bool)
    for s in segments:
        inside |= (times >= s.start) & (times <= s.end)
    return times[~inside].round(2).tolist()


def test_vad_segments_of_a_streamed_recording_cover_every_sentence(recording):
    path, audio, spans = recording
    block = 10.0
    assert any(int(a // block) != int(b // block) for a, b in spans)  # some sentence straddles a block seam
    segments = vad_segments(path, block_seconds=block)
    check_layout(segments, len(audio) / SR)
    assert len(segments) >= 0.8 * len(spans)
    assert all(1.0 <= s.duration <= 20.0 for s in segments)
    assert uncovered(spans, segments) == []


def test_vad_on_a_waveform_matches_the_stream(recording):
    path, audio, _ = recording
    streamed, whole = vad_segments(path, block_seconds=10.0), vad_segments(audio)
    assert len(streamed) == len(whole)
    for a, b in zip(streamed, whole, strict=True):
        assert abs(a.start - b.start) < 0.1 and abs(a.end - b.end) < 0.1


def test_long_speech_is_split_at_pauses_within_the_maximum(voices):
    # 0.3 s pauses: shorter than min_pause, so all of it is one stretch of speech, ~60 s long.
    audio, spans = join([(0.3, voices[SENTENCES[i % len(SENTENCES)]]) for i in range(20)])
    segments = vad_segments(audio, max_seconds=12.0)
    check_layout(segments, len(audio) / SR)
    assert len(segments) >= 5 and all(s.duration <= 12.0 for s in segments)
    assert uncovered(spans, segments) == []
    for left, right in pairwise(segments):  # each cut lies in a pause, not inside a sentence
        cut = (left.end + right.start) / 2
        assert not any(a + 0.05 < cut < b - 0.05 for a, b in spans)


def test_short_bits_merge_with_a_near_neighbour_or_are_dropped(voices):
    sentence, hi = voices[SENTENCES[0]], voices["Hi."]
    audio, spans = join([(1.0, sentence), (0.6, hi), (6.0, hi), (6.0, sentence)])
    segments = vad_segments(audio, max_seconds=10.0)  # the clip is longer than that, so VAD runs
    assert len(segments) == 2
    assert uncovered(spans[:2], segments[:1]) == []  # the near 'Hi.' joined the sentence before it
    assert uncovered(spans[2:3], segments) != []  # the isolated one is gone
    assert uncovered(spans[3:], segments[1:]) == []


def test_a_clip_shorter_than_the_maximum_is_one_segment(voices):
    audio, _ = join([(0.5, voices[SENTENCES[0]]), (1.5, voices[SENTENCES[1]])])
    assert vad_segments(audio) == [Segment(0.0, len(audio) / SR)]
    assert vad_segments(np.zeros(0, np.float32)) == []


@pytest.mark.parametrize("duration", [0.5, 8.0, 9.0, 30.25])
def test_window_segments_cover_the_duration(duration):
    windows = window_segments(duration, window=8.0, hop=4.0)
    assert windows[0].start == 0 and windows[-1].end == pytest.approx(duration)
    assert all(w.duration <= 8.0 for w in windows)
    for a, b in pairwise(windows):
        assert b.start == pytest.approx(a.start + 4.0) and b.start <= a.end
    assert window_segments(0.0) == []
    with pytest.raises(ValueError, match="hop"):
        window_segments(10.0, window=2.0, hop=3.0)
