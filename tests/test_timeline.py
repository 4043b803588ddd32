"""Recordings of any length: timelines (VAD, windows, none), no cropping, ASR on demand, richer outputs."""

from __future__ import annotations

import json
from itertools import pairwise

import numpy as np
import pytest
import soundfile as sf

from mamer import EmotionRecognizer
from mamer.cli import main
from mamer.data.espeak import EspeakSynthesizer

SR = 16000
SENTENCES = (
    "The weather was lovely this morning.",
    "I cannot believe you did that again!",
    "Please bring the papers to the office before noon.",
    "We walked along the river until sunset.",
)


@pytest.fixture(scope="module")
def runs(train_tiny, tmp_path_factory):
    """A tiny unified model (limit 41 s), one with a 1.28 s audio limit, and a dedicated audio model."""
    folder = tmp_path_factory.mktemp("timeline_runs")
    short = ("model.max_audio_tokens=16", "name=short", f"run_dir={folder / 'short'}")
    return {
        "unified": train_tiny(folder),
        "short": train_tiny(folder, "quickstart", *short),
        "audio_only": train_tiny(folder, "quickstart_audio_only"),
    }


@pytest.fixture(scope="module")
def voices():
    tts = EspeakSynthesizer()
    return [load_audio_array(tts.synthesize(s), tts.sample_rate) for s in SENTENCES]


def load_audio_array(wave, sr):
    from mamer.data.audio import resample

    return resample(wave, sr, SR)


@pytest.fixture(scope="module")
def recording(voices, tmp_path_factory):
    """About 50 s of sentences with 0.8-1.6 s pauses, as a WAV file, and each sentence's (start, end)."""
    rng = np.random.default_rng(0)
    parts, spans, at = [], [], 0
    while at < 50 * SR:
        pause = round(rng.uniform(0.8, 1.6) * SR)
        wave = voices[len(spans) % len(voices)]
        parts += [np.zeros(pause, np.float32), wave]
        spans.append(((at + pause) / SR, (at + pause + len(wave)) / SR))
        at += pause + len(wave)
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, np.concatenate([*parts, np.zeros(SR, np.float32)]), SR, subtype="PCM_16")
    return path, spans


def test_vad_timeline_covers_the_speech_in_order(runs, recording):
    path, spans = recording
    result = EmotionRecognizer.load(runs["unified"]).timeline(path, segment="auto")
    assert result.mode == "vad" and len(result.segments) >= 3
    for a, b in pairwise(result.segments):
        assert a.end <= b.start
    for start, end in spans:  # every sentence's middle lies in a segment
        assert any(s.start <= (start + end) / 2 <= s.end for s in result.segments)
    summary = result.summary()
    assert abs(sum(summary["share"].values()) - 1) < 1e-3 and summary["segments"] == len(result.segments)
    row = result.rows()[0]
    assert {"start", "end", "view", "label", "probabilities"} <= set(row) and row["view"] == "audio"


def test_window_timeline_covers_the_whole_file(runs, recording):
    path, _ = recording
    result = EmotionRecognizer.load(runs["unified"]).timeline(path, segment="window", window=8, hop=4)
    segments = result.segments
    assert segments[0].start == 0 and segments[-1].end == pytest.approx(result.duration, abs=1e-3)
    assert all(b.start <= a.end and b.start > a.start for a, b in pairwise(segments))


def test_long_audio_is_never_cropped(runs, voices):
    recognizer = EmotionRecognizer.load(runs["short"])
    assert recognizer.max_seconds == pytest.approx(1.28)
    wave = np.concatenate(voices)  # ~7 s: several windows of the 1.28 s limit
    features = recognizer.featurize([wave], [None])[0]
    assert len(features.audio) == len(wave) // 160  # 100 frames/s, nothing cut before the model
    assert len(recognizer._windows(features)) == -(-len(features.audio) // recognizer.max_frames)
    whole = recognizer.predict(audio=wave, sample_rate=SR)
    head = recognizer.predict(audio=wave[: int(1.2 * SR)], sample_rate=SR)
    assert whole.probabilities != head.probabilities  # the rest of the clip counts
    result = recognizer.timeline(wave, sample_rate=SR, segment="none")
    assert len(result.segments) == 1 and result.segments[0].end == pytest.approx(len(wave) / SR, abs=1e-3)
    pooled = result.segments[0].prediction.probabilities
    assert abs(sum(pooled.values()) - 1) < 1e-5


def test_top_k_labels_and_embeddings(runs, voices):
    recognizer = EmotionRecognizer.load(runs["unified"])
    full = recognizer.predict(audio=voices[0], sample_rate=SR, text="what a day")
    assert full.top_k is None and full.embedding is None and "top_k" not in full.to_dict()
    result = recognizer.predict(
        audio=voices[0],
        sample_rate=SR,
        text="what a day",
        top_k=2,
        labels=["happy", "sad"],
        return_embedding=True,
    )
    assert (
        set(result.probabilities) == {"happy", "sad"} and abs(sum(result.probabilities.values()) - 1) < 1e-6
    )
    ratio = full.probabilities["happy"] / full.probabilities["sad"]
    assert result.probabilities["happy"] / result.probabilities["sad"] == pytest.approx(ratio, rel=1e-5)
    assert [k for k, _ in result.top_k] == sorted(result.probabilities, key=result.probabilities.get)[::-1]
    assert len(result.embedding) == recognizer.meta.run_config.model.width
    with pytest.raises(ValueError, match="unknown labels"):
        recognizer.predict(text="hello", labels=["bored"])


def test_asr_fills_the_transcript_only_when_needed(runs, voices):
    recognizer = EmotionRecognizer.load(runs["unified"], asr="whisper-tiny.en")
    heard = recognizer.predict(audio=voices[0], sample_rate=SR, transcribe=True)
    assert heard.view == "audio+text" and heard.asr_model == "whisper-tiny.en" and heard.language == "en"
    assert "lovely" in heard.transcript.lower()
    given = EmotionRecognizer.load(runs["unified"], asr="no-such-asr-model")  # would fail if ever loaded
    assert given.predict(audio=voices[0], sample_rate=SR, text="hello", transcribe=True).transcript is None
    assert given.predict(text="hello", transcribe=True).view == "text"
    assert given._transcriber is None
    audio_only = EmotionRecognizer.load(runs["audio_only"], asr="no-such-asr-model")
    assert audio_only.predict(audio=voices[0], sample_rate=SR, transcribe=True).transcript is None


def test_cli_timeline_asr_none_window_and_plot(runs, recording, tmp_path, capsys):
    path, _ = recording
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "long.wav").write_bytes(path.read_bytes())
    (folder / "corrupt.mp3").write_bytes(b"ID3 not really an mp3" * 50)
    out, plot = tmp_path / "timeline.csv", tmp_path / "timeline.png"
    args = ["predict", str(runs["unified"]), "--audio", str(folder), "--asr", "none"]
    assert main([*args, "--segment", "window", "--out", str(out), "--plot", str(plot)]) == 0
    err = capsys.readouterr().err
    assert "corrupt.mp3" in err and "1 of 2 inputs skipped" in err
    header = out.read_text().splitlines()[0].split(",")
    assert header[:5] == ["id", "file", "start", "end", "view"] and "transcript" not in header
    assert plot.stat().st_size > 1000
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["long"]["segments"] == len(out.read_text().splitlines()) - 1


def test_training_crop_is_logged(tiny_config, tmp_path, caplog):
    from mamer.workflows.training.loop import train

    with caplog.at_level("WARNING", logger="mamer.data.dataset"):
        train(tiny_config(tmp_path, "quickstart", "train.epochs=1", "model.max_audio_tokens=16"))
    assert any("utterances have more than 128 audio frames" in r.getMessage() for r in caplog.records)


def test_serve_answers_audio_beyond_the_limit_with_a_timeline(runs, voices):
    pytest.importorskip("fastapi")
    import io

    from fastapi.testclient import TestClient

    from mamer.workflows.service.app import create_app

    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate(voices), SR, format="WAV")
    # a 1.28 s limit: ~7 s of speech is long
    client = TestClient(create_app(runs["short"], asr=None, allow_hosts=["testserver"]))
    body = client.post("/predict", files={"audio": ("talk.wav", buffer.getvalue(), "audio/wav")}).json()
    assert len(body["segments"]) >= 2 and body["summary"]["segments"] == len(body["segments"])
    assert all(s["end"] - s["start"] <= 1.28 + 1e-6 for s in body["segments"])


def test_streamed_spans_match_the_whole_decoded_file(runs, recording):
    from mamer.data.audio import stream_audio
    from mamer.workflows.inference.timeline import _Source

    path, _ = recording
    whole = np.concatenate(list(stream_audio(path, SR, 10.0)))
    spans = [(0.0, 3.0), (2.0, 12.5), (9.9, 10.1), (30.0, 45.0), (44.0, 60.0)]  # overlapping, past the end
    source = _Source(EmotionRecognizer.load(runs["unified"]), path, None)
    for (start, end), cut in zip(spans, source.spans(spans), strict=True):
        np.testing.assert_array_equal(cut, whole[round(start * SR) : round(end * SR)])
