"""A new user's first minute (issue 37): a request loads only what it needs, output is readable in any script,
mistakes are refused up front in words, ASR costs what it should, and the figures match the page."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from ast import literal_eval
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import speechlike
from mamer import EmotionRecognizer
from mamer.cli import main
from mamer.encoders import registry
from mamer.workflows.inference.prediction import Prediction
from mamer.workflows.inference.timeline import Timeline, TimelineSegment
from test_corpora import DATA

HEAVY = (
    "transformers",
    "scipy.signal",
    "faster_whisper",
    "ctranslate2",
    "matplotlib",
    "mamer.encoders.whisper",
)
EMODB_CLIP = None if DATA is None else DATA / "emodb" / "audio" / "03a01Fa.flac"  # German, 2.0 s, 16 kHz


@pytest.fixture(scope="module")
def run(train_tiny, tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("first_minute"))


def loaded_by(*argv: str) -> set[str]:
    """The heavy modules a whole `mamer ...` process imported, run in a fresh interpreter."""
    code = (
        "import sys; from mamer.cli.main import main; code = main(sys.argv[1:]); "
        f"print('LOADED', sorted(m for m in sys.modules if m.startswith({HEAVY!r}))); sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("LOADED"))
    return {
        m.split(".")[0] if m.startswith(("transformers", "faster_whisper")) else m
        for m in literal_eval(line[7:])
    }


def test_a_text_prediction_loads_no_audio_asr_or_transformers():
    if not registry.installed("minilm"):
        pytest.skip("the minilm weights are not installed")
    assert loaded_by("predict", "--text", "what a lovely surprise") == set()


def test_audio_without_asr_loads_no_asr_or_transformers():
    if EMODB_CLIP is None or not registry.installed("whisper-base"):
        pytest.skip("needs ../shared/data/emodb and the whisper-base weights")
    loaded = loaded_by("predict", "--audio", str(EMODB_CLIP), "--asr", "none")
    assert loaded == {
        "mamer.encoders.whisper",
        "mamer.encoders.whisper_net",
    }  # the audio encoder, nothing more


# ---------------------------------------------------------------- refusals and output


def test_labels_are_checked_before_any_encoder_loads(run, monkeypatch, capsys):
    import mamer.workflows.inference.recognizer as recognizer

    def no_encoders(*args, **kwargs):
        raise AssertionError("an encoder was built before the labels were checked")

    monkeypatch.setattr(recognizer, "rebuild_encoder", no_encoders)
    assert main(["predict", str(run), "--text", "hello", "--labels", "angri,joy"]) == 2
    err = capsys.readouterr().err
    assert "unknown labels angri, joy (did you mean angry?)" in err
    assert "this model predicts angry, happy, neutral, sad" in err and "skipped" not in err


def test_names_and_words_in_any_script_are_written_as_themselves(run, tiny_corpus, tmp_path, monkeypatch):
    clip = next((tiny_corpus.parent / "audio").rglob("*.wav"))
    named = tmp_path / "clips" / "खुश_خوش.wav"
    named.parent.mkdir()
    named.write_bytes(clip.read_bytes())
    args = ["predict", str(run), "--audio", str(named.parent), "--asr", "none"]
    raw = io.BytesIO()
    ascii_stdout = io.TextIOWrapper(raw, encoding="ascii")  # a locale that cannot spell the name
    monkeypatch.setattr(sys, "stdout", ascii_stdout)
    assert main(args) == 0
    sys.stdout.flush()
    monkeypatch.undo()
    assert json.loads(raw.getvalue().decode("utf-8"))["id"] == "खुश_خوش"
    for out in (tmp_path / "rows.jsonl", tmp_path / "rows.csv"):
        assert main([*args, "--out", str(out), "--top-k", "2"]) == 0
        text = out.read_text(encoding="utf-8")
        assert "खुश_خوش" in text and "\\u" not in text


def test_a_summary_holds_plain_floats():
    segments = [
        TimelineSegment(s, e, Prediction("audio", label, {"happy": 0.6, "sad": 0.4} if label == "happy"
                                         else {"happy": 0.3, "sad": 0.7}))
        for s, e, label in ((0.0, 1.5, "happy"), (2.0, 3.25, "sad"), (3.5, 4.0, "happy"))
    ]  # fmt: skip
    share = Timeline(4.0, "vad", segments).summary()["share"]
    assert [type(v) for v in share.values()] == [float, float] and share == {"happy": 0.6154, "sad": 0.3846}


def test_loading_a_transformers_encoder_prints_no_progress_bar(tmp_path, capfd):
    transformers = pytest.importorskip("transformers")
    from conftest import TINY_SPEECH

    transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**TINY_SPEECH)).save_pretrained(tmp_path)
    capfd.readouterr()
    encoder = registry.load_audio_encoder(str(tmp_path))
    assert encoder.encode([speechlike(0.3)])[0].shape[1] == 32
    captured = capfd.readouterr()
    assert "Loading weights" not in captured.err + captured.out
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()  # switched off only while loading


def test_too_long_an_upload_says_how_to_lift_the_limit(run):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mamer.workflows.service.app import create_app

    client = TestClient(create_app(run, max_seconds=1.0, asr=None), base_url="http://127.0.0.1")
    buffer = io.BytesIO()
    sf.write(buffer, speechlike(2.0), 16000, format="WAV")
    answer = client.post("/predict", files={"audio": ("talk.wav", buffer.getvalue(), "audio/wav")})
    assert answer.status_code == 422
    assert "longer than the limit of 1 s" in answer.json()["detail"]
    assert "mamer serve --max-seconds" in answer.json()["detail"]


def test_the_api_pages_need_no_cdn_and_the_colours_are_the_figures(run):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mamer.workflows.evaluation.colours import palette
    from mamer.workflows.service.app import create_app

    client = TestClient(create_app(run, asr=None), base_url="http://127.0.0.1")
    assert client.get("/colours.json").json() == palette()
    for page, asset in (
        ("/docs", "/docs-assets/swagger-ui-bundle.js"),
        ("/redoc", "/docs-assets/redoc.standalone.js"),
    ):
        html = client.get(page).text
        assert asset in html and "https://" not in html, page  # no CDN, no Google fonts
        assert client.get(asset).status_code == 200
    assert client.get("/openapi.json").json()["paths"]["/predict"]


# ---------------------------------------------------------------- the timeline plot


def test_the_timeline_plot_draws_no_words_in_the_pages_colours_without_warnings(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from timeline_plot_speed import long_timeline

    from mamer.workflows.evaluation.colours import CLASSES, DIMENSIONS
    from mamer.workflows.evaluation.timeline_plot import plot_timeline, timeline_figure

    timeline = long_timeline(40)  # Devanagari and Urdu words, 7 classes and A/V/D
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" would fail here
        figure = timeline_figure(timeline)
        assert plot_timeline(timeline, tmp_path / "t.png").stat().st_size > 1000
    words = {w.text for w in timeline.words}
    texts = [t.get_text() for t in figure.findobj(lambda a: hasattr(a, "get_text"))]
    assert not any(word in text for word in words for text in texts)
    lines = {line.get_label(): line.get_color() for ax in figure.axes for line in ax.get_lines()}
    for name, colour in lines.items():
        assert colour == (CLASSES | DIMENSIONS)[name], name
    assert not set(DIMENSIONS.values()) & set(CLASSES.values())  # A/V/D are not classes


# ---------------------------------------------------------------- ASR


@pytest.fixture(scope="module")
def german(tmp_path_factory):
    """A German EmoDB clip and a recording of 40 s of EmoDB clips (two ASR groups), with whisper-base."""
    if DATA is None or not registry.installed("whisper-base"):
        pytest.skip("needs ../shared/data/emodb and the whisper-base weights")
    from mamer.data.audio import load_audio

    clips = sorted((DATA / "emodb" / "audio").glob("03a0*.flac"))[:20]
    long = tmp_path_factory.mktemp("german") / "long.wav"
    sf.write(long, np.concatenate([load_audio(c, 16000) for c in clips]), 16000)
    return EMODB_CLIP, long


def test_language_detection_and_transcription_share_one_encoding(german):
    from mamer.data.audio import load_audio
    from mamer.workflows.inference.asr import load_transcriber

    transcriber = load_transcriber("whisper-base")
    calls = []
    kept = transcriber.model.encode
    encode = kept.encode
    kept.encode = lambda features: calls.append(features.shape) or encode(features)
    heard = transcriber.transcribe(load_audio(german[0], 16000))
    assert heard.language == "de" and "lappen" in heard.text.lower()
    assert calls == [(80, 3000)]  # faster-whisper alone encodes the first 30 s twice when it detects


def test_whisper_translates_to_english_when_asked(german):
    from mamer.data.audio import load_audio
    from mamer.workflows.inference.asr import load_transcriber

    transcriber = load_transcriber("whisper-base")
    english = transcriber.transcribe(load_audio(german[0], 16000), language="de", task="translate")
    assert english.language == "de" and "lappen" not in english.text.lower()
    assert "the" in english.text.lower().split(), english.text  # "The rag is on the fridge."


def test_a_transcript_the_text_encoder_cannot_read_leaves_the_audio_view(run, german):
    clip, long = german
    english_only = EmotionRecognizer.load(run, asr="whisper-base", transcript_languages="en")
    assert EmotionRecognizer.load(run).transcript_languages is None  # hashed text: any language
    said = english_only.predict(audio=clip, transcribe=True)
    assert said.view == "audio" and said.language == "de" and said.transcript
    assert "'de'" in said.text_skipped and "reads en" in said.text_skipped
    anyway = EmotionRecognizer.load(run, asr="whisper-base", transcript_languages="any")
    assert anyway.predict(audio=clip, transcribe=True).view == "audio+text"

    asked = []
    transcribe = english_only.transcriber.transcribe
    english_only.transcriber.transcribe = lambda wave, **kw: (
        asked.append(kw["language"]) or transcribe(wave, **kw)
    )
    timeline = english_only.timeline(long, segment="window", window=8.0, hop=8.0, transcribe=True)
    assert asked == [None, "de"]  # detected on the first group of segments, then given
    assert {s.prediction.view for s in timeline.segments} == {"audio"}
    assert all(s.prediction.text_skipped for s in timeline.segments if s.prediction.transcript)


def test_the_service_takes_the_transcript_languages_of_mamer_predict(run, german):
    """`mamer serve --transcript-languages en` answers a German upload on the audio view, saying why; `any`
    gives the transcript to the model."""
    from fastapi.testclient import TestClient

    from mamer.cli.main import build_parser
    from mamer.workflows.service.app import create_app

    assert build_parser().parse_args(["serve", "--transcript-languages", "en"]).transcript_languages == "en"
    clip, _ = german
    for languages, view in (("en", "audio"), ("any", "audio+text")):
        app = create_app(run, asr="whisper-base", transcript_languages=languages)
        with TestClient(app, base_url="http://localhost") as client:
            answer = client.post("/predict", files={"audio": (clip.name, clip.read_bytes())}).json()
        assert answer["view"] == view and answer["language"] == "de", answer
        assert ("'de'" in (answer.get("text_skipped") or "")) == (view == "audio"), answer


def test_a_looping_segment_is_told_from_a_sentence_said_again():
    from mamer.workflows.inference.asr import loops

    assert loops(" 5.7" + ".8" * 40)  # whisper-base on espeak-ng Hindi, greedy, nothing to fall back to
    assert not loops("Das will sie am Mittwoch abgeben. " * 3)  # EmoDB: one speaker, one sentence, 3 emotions
    assert not loops("no no no no no no no") and not loops("یہ کتاب میز پر رکھی ہے۔") and not loops("")
