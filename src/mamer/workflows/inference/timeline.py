"""Recordings of any length: segments (voice activity or fixed windows), each with its emotion and transcript.

`timeline(recognizer, "meeting.mp3")` plans the segments, then decodes the recording once more, block by block,
cutting out groups of neighbouring segments (at most `ASR_SPAN` seconds each) as the blocks pass: memory holds
one block and one group, whatever the recording's length. ASR runs once per group (Whisper reads 30 s at a
time, so a 2 s segment alone would cost as much as 30 s) and each segment gets the words whose middle falls in
it. Segment modes:

- `auto`: `none` for audio within the model's limit (`recognizer.max_seconds`), `vad` beyond;
- `none`: one segment, the whole recording; beyond the limit it is read in windows of the limit and pooled
  (duration-weighted mean of probabilities and A/V/D), never cropped;
- `vad`: speech segments from `segments.vad_segments` (at most 20 s, or the model's limit if lower);
- `window`: windows of `window` s every `hop` s (`segments.window_segments`).

A model trained with `audio_normalise: speaker` reads every segment standardised by the whole recording's frames
(a first pass over it), from `RECORDING_SEGMENTS` segments on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mamer.data.audio import audio_duration, load_audio, resample, stream_audio
from mamer.data.frame_norm import frame_statistics
from mamer.modality import DIMENSIONS
from mamer.workflows.inference.asr import TimedText
from mamer.workflows.inference.prediction import Prediction, pooled, reshaped
from mamer.workflows.inference.segments import Segment, vad_segments, window_segments

log = logging.getLogger(__name__)

SR = 16000  # VAD and ASR read 16 kHz; the recognizer resamples for its own encoder
ASR_SPAN = 28.0  # seconds of neighbouring segments transcribed in one Whisper call (it reads 30 s windows)
MODES = ("auto", "none", "vad", "window")
# a speaker-normalised model standardises a recording's segments by all of them once it has this many; fewer
# (or one pooled row), each by the training rows' statistics, as a clip alone: a clip standardised by its own
# frames loses what the model reads (benchmarks/group_size.py: groups of 2 nEMO clips fall below a clip alone
# in-corpus, groups of 4 rise above it, and across corpora both do)
RECORDING_SEGMENTS = 4


class TimelineStopped(RuntimeError):
    """Raised between segment groups once the caller's `stop` event is set (a client that left)."""


@dataclass
class TimelineSegment:
    """One stretch of the recording (seconds from its start), its prediction and the words heard in it."""

    start: float
    end: float
    prediction: Prediction
    words: tuple[TimedText, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """start, end, then the prediction's fields (the row `mamer predict` writes)."""
        return {"start": self.start, "end": self.end} | self.prediction.to_dict()


@dataclass
class Timeline:
    """A recording's segments in time order, with how they were found."""

    duration: float
    mode: str
    segments: list[TimelineSegment] = field(default_factory=list)

    @property
    def words(self) -> list[TimedText]:
        """Every transcribed word, in time order (times from the recording's start)."""
        return [w for s in self.segments for w in s.words]

    def summary(self) -> dict[str, Any]:
        """Whole-file figures: the share of segmented time per emotion, and duration-weighted mean A/V/D."""
        durations = np.array([s.end - s.start for s in self.segments])
        total = float(durations.sum())
        out: dict[str, Any] = {"duration": round(self.duration, 3), "segments": len(self.segments)}
        out["segmented_seconds"] = round(total, 3)
        if not self.segments or total <= 0:
            return out
        predictions = [s.prediction for s in self.segments]
        if predictions[0].label is not None:
            share = {k: 0.0 for k in predictions[0].probabilities}
            for p, d in zip(predictions, durations, strict=True):
                share[p.label] += float(d) / total  # plain floats: numpy's would leak into JSON and reprs
            out["share"] = {k: round(v, 4) for k, v in share.items()}
        for name in DIMENSIONS:
            if getattr(predictions[0], name) is not None:
                values = np.array([getattr(p, name) for p in predictions])
                out[name] = float(values @ durations / total)
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One dict per segment (start, end, prediction fields)."""
        return [s.to_dict() for s in self.segments]


def timeline(
    recognizer,  # an EmotionRecognizer (not imported: the recognizer imports this module)
    audio: str | Path | np.ndarray,
    sample_rate: int | None = None,
    text: str | None = None,
    segment: str = "auto",
    window: float = 8.0,
    hop: float = 4.0,
    transcribe: bool = False,
    language: str | None = None,
    top_k: int | None = None,
    labels: Sequence[str] | None = None,
    return_embedding: bool = False,
    batch_size: int = 32,
    stop: threading.Event | None = None,
) -> Timeline:
    """Segment `audio` (a file of any container, or an array + `sample_rate`) and predict every segment.

    `text` (a transcript of the whole recording) only goes with one segment (`segment="none"`); otherwise
    `transcribe=True` gives each segment its own words by ASR. Once `stop` is set (from another thread), the
    work ends before the next group of segments with TimelineStopped.
    """
    if segment not in MODES:
        raise ValueError(f"segment={segment!r}: choose one of {', '.join(MODES)}")
    source = _Source(recognizer, audio, sample_rate)
    limit = recognizer.max_seconds
    mode = segment
    if mode == "auto":
        mode = "none" if source.duration <= limit else "vad"
    segments, pool = _plan(source, mode, limit, window, hop)
    if text is not None and len(segments) > 1 and not pool:
        raise ValueError(
            "a transcript of the whole recording cannot be split into segments: use ASR (transcribe / --asr) "
            "for per-segment text, or segment='none'"
        )
    options = {"top_k": top_k, "labels": labels, "return_embedding": return_embedding}
    speaker_normalised = recognizer.model.config.audio_normalise == "speaker"
    if speaker_normalised and not pool and len(segments) >= RECORDING_SEGMENTS:  # one voice, or one room
        options["source"] = _recording_statistics(recognizer, source, segments, batch_size, stop)
    planned = _predicted(recognizer, source, segments, text, transcribe, language, batch_size, options, stop)
    done = list(planned)
    if pool and done:
        weights = [s.end - s.start for s in done]
        merged = reshaped(pooled([s.prediction for s in done], weights), labels, top_k)
        words = tuple(w for s in done for w in s.words)
        done = [TimelineSegment(0.0, round(source.duration, 3), merged, words)]
    return Timeline(source.duration, mode, done)


# ---------------------------------------------------------------- the recording


class _Source:
    """A file (decoded lazily, block by block) or an in-memory waveform, at 16 kHz."""

    def __init__(self, recognizer, audio: str | Path | np.ndarray, rate: int | None) -> None:
        self.path, self.wave = None, None
        if isinstance(audio, str | Path):
            self.path = Path(audio)
        else:  # checked and resampled to the encoder's rate by the recognizer, then to 16 kHz
            self.wave = resample(recognizer.load_wave(audio, rate), recognizer.sample_rate, SR)
        self._duration: float | None = None

    @property
    def duration(self) -> float:
        """Seconds: the array's length, the header's duration, or (no header duration) counted by streaming."""
        if self._duration is None:
            if self.wave is not None:
                self._duration = self.wave.shape[0] / SR
            else:
                stated = audio_duration(self.path)
                self._duration = stated if stated else sum(b.shape[0] for b in self.blocks()) / SR
        return self._duration

    def blocks(self) -> Iterator[np.ndarray]:
        """Consecutive 16 kHz blocks of the recording."""
        if self.wave is not None:
            return iter([self.wave])
        return stream_audio(self.path, SR, block_seconds=10.0)

    def vad_input(self) -> str | Path | np.ndarray:
        return self.wave if self.wave is not None else self.path

    def spans(self, spans: Sequence[tuple[float, float]]) -> Iterator[np.ndarray]:
        """The samples of each (start, end) span in seconds; spans sorted by start. Streams files: memory
        holds the blocks from the current span's start on, never the whole recording."""
        if self.wave is not None:
            for start, end in spans:
                yield self.wave[round(start * SR) : round(end * SR)]
            return
        if self.duration <= ASR_SPAN:  # a short file: read whole by the fastest reader
            wave = load_audio(self.path, SR)
            for start, end in spans:
                yield wave[round(start * SR) : round(end * SR)]
            return
        blocks = self.blocks()
        held, held_start = np.zeros(0, np.float32), 0  # samples kept, and the index of the first one
        for start, end in spans:
            a, b = round(start * SR), round(end * SR)
            while held_start + held.shape[0] < b:
                block = next(blocks, None)
                if block is None:
                    break
                held = np.concatenate([held, block])
                drop = min(max(0, a - held_start), held.shape[0])
                held, held_start = held[drop:], held_start + drop
            drop = min(max(0, a - held_start), held.shape[0])
            held, held_start = held[drop:], held_start + drop
            yield held[: b - held_start].copy()


def _plan(source: _Source, mode: str, limit: float, window: float, hop: float) -> tuple[list[Segment], bool]:
    """The segments of `mode`, and whether they are windows of one segment to pool into one prediction."""
    duration = source.duration
    if mode == "none":
        if duration <= limit:
            return [Segment(0.0, duration)], False
        return window_segments(duration, limit, limit), True
    if mode == "window":
        return window_segments(duration, window, hop), False
    longest = min(20.0, limit)
    shortest = min(1.0, max(0.0, longest - 0.5))
    return vad_segments(source.vad_input(), min_seconds=shortest, max_seconds=longest), False


def _groups(segments: Sequence[Segment]) -> list[list[Segment]]:
    """Neighbouring segments whose span (first start to last end) stays within `ASR_SPAN` seconds."""
    groups: list[list[Segment]] = []
    for s in segments:
        if groups and s.end - groups[-1][0].start <= ASR_SPAN:
            groups[-1].append(s)
        else:
            groups.append([s])
    return groups


def _predicted(recognizer, source, segments, text, transcribe, language, batch_size, options, stop=None):
    """TimelineSegments of `segments` in order: decoded group by group, predicted in batches; TimelineStopped
    before a group once `stop` is set."""
    groups = _groups(segments)
    spans = source.spans([(g[0].start, g[-1].end) for g in groups])
    pending: list[tuple[Segment, dict, tuple[TimedText, ...], Any]] = []
    language = language or recognizer.language
    for group, wave in zip(groups, spans, strict=True):
        if stop is not None and stop.is_set():
            raise TimelineStopped(f"stopped at {group[0].start:.1f} s of {source.duration:.1f} s")
        heard = None
        if transcribe and text is None and recognizer.can_transcribe:
            heard = recognizer.transcriber.transcribe(wave, language=language, word_timestamps=True)
            if language is None and heard.text:  # detected once per recording: a 30 s encoder pass per group
                language = heard.language  # saved, and one language for the whole file
        for s in group:
            piece = _cut(wave, group[0].start, s)
            if piece.shape[0] == 0:
                continue
            words = _words_in(heard, s, group[0].start)
            item = {"audio": piece, "sample_rate": SR, "text": text}
            if heard is not None and not recognizer.skipped_transcript(heard.language):
                item["text"] = " ".join(w.text for w in words) or None
            pending.append((s, item, words, heard))
        if len(pending) >= batch_size:
            yield from _flush(recognizer, pending, options)
            pending = []
    yield from _flush(recognizer, pending, options)


def _recording_statistics(recognizer, source, segments, batch_size, stop=None):
    """What a model with `audio_normalise: speaker` standardises every segment of a recording by: the statistics
    of all its segments' frames (a recording is one voice, or one room), a first pass that encodes them one
    batch at a time."""
    groups = _groups(segments)
    spans = source.spans([(g[0].start, g[-1].end) for g in groups])

    def encoded(waves: list[np.ndarray]) -> Iterator[torch.Tensor]:
        return (f.audio for f in recognizer.featurize(waves, [None] * len(waves)))

    def blocks() -> Iterator[torch.Tensor]:
        pending: list[np.ndarray] = []
        for group, wave in zip(groups, spans, strict=True):
            if stop is not None and stop.is_set():
                raise TimelineStopped(f"stopped while reading the voice at {group[0].start:.1f} s")
            for s in group:
                piece = _cut(wave, group[0].start, s)
                if piece.shape[0]:
                    pending.append(recognizer.load_wave(piece, SR))
            while len(pending) >= batch_size:
                yield from encoded(pending[:batch_size])
                pending = pending[batch_size:]
        if pending:
            yield from encoded(pending)

    return frame_statistics(blocks())


def _cut(wave: np.ndarray, offset: float, segment: Segment) -> np.ndarray:
    """The samples of `segment` from `wave`, a stretch of the recording that starts at `offset` seconds."""
    return wave[round((segment.start - offset) * SR) : round((segment.end - offset) * SR)]


def _words_in(heard, segment: Segment, offset: float) -> tuple[TimedText, ...]:
    """The words (times from the recording's start) whose middle falls in `segment`."""
    if heard is None:
        return ()
    timed = heard.words or heard.segments
    moved = [TimedText(w.text, round(w.start + offset, 3), round(w.end + offset, 3)) for w in timed]
    return tuple(w for w in moved if segment.start <= (w.start + w.end) / 2 < segment.end)


def _flush(recognizer, pending, options) -> Iterator[TimelineSegment]:
    """Predict the pending segments in one batch."""
    if not pending:
        return
    predictions = recognizer.predict_batch([item for _, item, _, _ in pending], **options)
    for (s, _, words, heard), p in zip(pending, predictions, strict=True):
        if heard is not None:
            transcript = " ".join(w.text for w in words)
            skipped = recognizer.skipped_transcript(heard.language)
            p = replace(
                p, transcript=transcript, language=heard.language, asr_model=heard.model, text_skipped=skipped
            )
        yield TimelineSegment(s.start, s.end, p, words)
