"""Audio frames standardised per speaker, recording or utterance (model.audio_normalise), from the statistics
to training, evaluation and the recognizer."""

import json
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mamer import EmotionRecognizer
from mamer.checkpoint import load_model
from mamer.cli import main
from mamer.config import load_config
from mamer.data.audio import load_audio
from mamer.data.cache import Column, Shard, SplitFeatures, load_split
from mamer.data.dataset import EmotionDataset, Targets
from mamer.data.frame_norm import frame_statistics, group_statistics, normalised_blocks, standardised
from mamer.data.manifest import read_manifest, splits
from mamer.workflows.evaluation.evaluate import evaluate_run
from mamer.workflows.evaluation.model_card import model_card
from mamer.workflows.inference.batch import Options, make_jobs, source_statistics
from mamer.workflows.inference.prediction import pooled
from mamer.workflows.inference.recognizer import Features
from mamer.workflows.inference.segments import window_segments
from mamer.workflows.inference.timeline import RECORDING_SEGMENTS
from mamer.workflows.training.loop import train


def blocks(*lengths: int, dim: int = 4, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [5 + 3 * torch.randn(n, dim, generator=generator) for n in lengths]


def test_frame_statistics_are_the_mean_and_population_std_of_all_frames():
    parts = blocks(3, 7, 1)
    frames = torch.cat(parts).double()
    mean, std = frame_statistics(iter(parts))
    assert torch.allclose(mean, frames.mean(0).float(), atol=1e-5)
    assert torch.allclose(std, frames.std(0, unbiased=False).float(), atol=1e-5)
    assert frame_statistics([]) is None


def test_groups_share_statistics_and_a_block_without_group_stands_alone():
    parts = [*blocks(4, 6, 5), None]
    statistics = group_statistics(parts, ["a", "b", "a", "a"])
    assert statistics[0] is statistics[2] and statistics[3] is None
    together = frame_statistics([parts[0], parts[2]])
    assert torch.equal(statistics[0][0], together[0]) and torch.allclose(statistics[1][0], parts[1].mean(0))
    alone = group_statistics(parts[:3], [None, None, None])  # no group: each its own, never pooled
    assert torch.allclose(alone[0][0], parts[0].mean(0)) and torch.allclose(alone[2][0], parts[2].mean(0))
    reference = (torch.zeros(4), 2 * torch.ones(4))  # the training rows' statistics a model keeps
    given = group_statistics(parts, [None, "b", "b", None], alone=reference)
    assert given[0] is reference and given[1] is given[2] and given[3] is None
    assert (
        group_statistics(parts, ["a", "b", "b", None], alone=reference)[0] is reference
    )  # a group of one clip
    assert torch.equal(normalised_blocks(parts, [None] * 4, "speaker", reference)[0], parts[0] / 2)
    assert torch.allclose(
        normalised_blocks(parts, [None] * 4, "utterance", reference)[0].mean(0), torch.zeros(4), atol=1e-5
    )


def test_a_speakers_frames_come_out_centred_with_unit_variance():
    parts = blocks(5, 9, 4, seed=1)
    out = normalised_blocks(parts, ["s", "s", "t"], "speaker")
    speaker = torch.cat(out[:2])
    assert torch.allclose(speaker.mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(speaker.std(0, unbiased=False), torch.ones(4), atol=1e-4)
    by_itself = normalised_blocks(parts, ["s", "s", "t"], "utterance")  # groups are ignored
    assert torch.allclose(by_itself[0].mean(0), torch.zeros(4), atol=1e-5)
    assert not torch.allclose(by_itself[0], out[0], atol=1e-3)
    assert normalised_blocks(parts, ["s", "s", "t"], "none") == parts
    with pytest.raises(ValueError, match="audio_normalise must be one of none, utterance, speaker, not 'x'"):
        normalised_blocks(parts, ["s", "s", "t"], "x")


def test_a_constant_dimension_is_centred_not_blown_up():
    block = torch.ones(6, 3)
    block[:, 0] = torch.arange(6.0)
    out = standardised(block, frame_statistics([block]))
    assert torch.isfinite(out).all() and torch.equal(out[:, 1:], torch.zeros(6, 2))


def test_the_config_names_the_choices():
    with pytest.raises(ValueError, match="model.audio_normalise must be 'none', 'utterance' or 'speaker'"):
        load_config("quickstart", ["model.audio_normalise=per_speaker"])


# --- a model trained on speaker-normalised frames ----------------------------------------------------------


@pytest.fixture(scope="module")
def speaker_run(tiny_config, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("speaker_norm")
    config = tiny_config(folder, "quickstart", "train.epochs=1", "model.audio_normalise=speaker",
                         "model.audio_standardise=true", "train.lone_share=0.3")  # fmt: skip
    return train(config)


def in_memory_split(ids: list[str], parts: list[torch.Tensor]) -> SplitFeatures:
    """A split's features as the cache reads them (one shard), from blocks made here: the test encoders'
    log-mel features are standardised per utterance already, which would hide what a speaker's statistics do."""
    offsets = torch.tensor([0, *torch.cumsum(torch.tensor([len(p) for p in parts]), 0).tolist()])
    shard = Shard(Path("in-memory"), torch.cat(parts).half(), offsets)
    audio = Column([shard], np.array([[0, i] for i in range(len(parts))]), parts[0].shape[1])
    return SplitFeatures(ids, audio, Column([], np.full((len(parts), 2), -1), 8), skipped=[])


def test_each_speakers_frames_are_standardised_by_that_speakers_own(tiny_corpus):
    rows, _ = read_manifest(tiny_corpus)
    train_rows = splits(rows)["train"]
    speakers = sorted({u.speaker for u in train_rows})
    assert len(speakers) == 2
    # speaker 0 far from speaker 1, so that the split's statistics and each speaker's differ
    parts = [
        b + 20 * speakers.index(u.speaker)
        for u, b in zip(train_rows, blocks(*[9] * len(train_rows)), strict=True)
    ]
    split = in_memory_split([u.id for u in train_rows], parts)
    dataset = EmotionDataset(split, train_rows, Targets.fit(train_rows), 10**6, audio_normalise="speaker")
    for speaker in speakers:
        index = [i for i, u in enumerate(train_rows) if u.speaker == speaker]
        frames = torch.cat([dataset[i]["audio"] for i in index]).double()
        assert torch.allclose(frames.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-4)
        assert torch.allclose(frames.std(0, unbiased=False), torch.ones(4, dtype=torch.float64), atol=1e-3)
        raw = torch.cat([parts[i].half().double() for i in index])
        expected = (raw - raw.mean(0)) / raw.std(0, unbiased=False)
        assert torch.allclose(frames, expected, atol=1e-3)
    whole = torch.cat([dataset[i]["audio"] for i in range(len(dataset))]).double()
    mean, std = dataset.audio_statistics()  # what audio_standardise is given: the frames as read, (0, 1) here
    assert torch.allclose(mean.double(), whole.mean(0), atol=1e-4) and torch.allclose(
        std, torch.ones(4), atol=1e-3
    )
    plain = EmotionDataset(split, train_rows, Targets.fit(train_rows), 10**6)
    assert plain.audio_statistics()[0].min() > 4  # the raw frames, for a model without audio_normalise


def test_a_run_with_speaker_normalisation_trains_saves_and_evaluates(speaker_run, tiny_corpus, tmp_path):
    model, meta = load_model(speaker_run)
    assert model.config.audio_normalise == "speaker"
    rows, _ = read_manifest(tiny_corpus)
    train_rows = splits(rows)["train"]
    dataset = EmotionDataset(
        load_split(Path(meta.features), "train"),
        train_rows,
        Targets.fit(train_rows),
        10**6,
        audio_normalise="speaker",
    )
    assert torch.allclose(model.audio_in.mean, dataset.audio_statistics()[0], atol=1e-5)
    # the model keeps the training rows' raw statistics, for clips of no speaker
    split = load_split(Path(meta.features), "train")
    raw = torch.cat([split.audio_of(i).double() for i in range(len(split.ids))])
    assert torch.allclose(model.audio_in.reference_mean, raw.mean(0).float(), atol=1e-4)
    assert torch.allclose(
        model.audio_in.reference_std, raw.std(0, unbiased=False).float().clamp(min=1e-5), atol=1e-4
    )
    grouped = evaluate_run(speaker_run, "test", report_dir=tmp_path / "speaker")
    alone = evaluate_run(speaker_run, "test", report_dir=tmp_path / "alone", groups="none")
    corpus = evaluate_run(speaker_run, "test", report_dir=tmp_path / "corpus", groups="corpus")
    assert [r["audio_normalise"] for r in (grouped, alone, corpus)] == [
        "speaker", "speaker, each clip alone", "speaker, a corpus's clips as one group"
    ]  # fmt: skip
    assert grouped["results"]["audio"] and alone["results"]["audio"] and corpus["results"]["audio"]
    assert "standardised per speaker: give several clips of one speaker together" in model_card(speaker_run)


def test_rows_without_a_speaker_are_standardised_by_the_training_statistics(tiny_corpus, caplog):
    rows, _ = read_manifest(tiny_corpus)
    train_rows = [r.__class__(**{**vars(r), "speaker": None}) for r in splits(rows)["train"]]
    parts = [b + 20 * (k % 2) for k, b in enumerate(blocks(*[9] * len(train_rows)))]
    split = in_memory_split([u.id for u in train_rows], parts)
    targets = Targets.fit(train_rows)
    dataset = EmotionDataset(split, train_rows, targets, 10**6, audio_normalise="speaker")
    assert "name no speaker; each is standardised by the training rows' statistics" in caplog.text
    raw = torch.cat([p.half().double() for p in parts])
    expected = (parts[0].half().double() - raw.mean(0)) / raw.std(
        0, unbiased=False
    )  # the split's, without given
    assert torch.allclose(dataset[0]["audio"].double(), expected, atol=1e-3)
    reference = (torch.full((4,), 5.0), torch.full((4,), 4.0))
    given = EmotionDataset(
        split, train_rows, targets, 10**6, audio_normalise="speaker", lone_statistics=reference
    )
    assert torch.allclose(given[0]["audio"], (parts[0].half().float() - 5) / 4)
    with_speakers = splits(rows)["train"]

    def scored_by(groups: str) -> EmotionDataset:
        return EmotionDataset(
            split,
            with_speakers,
            targets,
            10**6,
            audio_normalise="speaker",
            lone_statistics=reference,
            groups=groups,
        )

    # groups none: every row as if it named no speaker
    assert torch.allclose(scored_by("none")[1]["audio"], (parts[1].half().float() - 5) / 4)
    # groups corpus: every row of the split's one corpus by the statistics of them all, whatever its speaker
    expected_all = (parts[1].half().double() - raw.mean(0)) / raw.std(0, unbiased=False)
    assert torch.allclose(scored_by("corpus")[1]["audio"].double(), expected_all, atol=1e-3)
    with pytest.raises(ValueError, match="groups must be one of speaker, corpus, none"):
        EmotionDataset(split, with_speakers, targets, 10, audio_normalise="speaker", groups="speakers")
    with pytest.raises(ValueError, match="model.audio_normalise must be one of"):
        EmotionDataset(split, train_rows, targets, 10, audio_normalise="speakers")


def test_the_recognizer_pools_a_speakers_clips_and_keeps_speakers_apart(speaker_run, tiny_corpus):
    recognizer = EmotionRecognizer.load(speaker_run)
    rows, _ = read_manifest(tiny_corpus)
    test = [u for u in splits(rows)["test"] if u.audio is not None][:3]

    def probabilities(predictions):
        return np.array([list(p.probabilities.values()) for p in predictions])

    # predict_batch: the items sharing "speaker" are standardised together, across its chunks of batch_size
    grouped = probabilities(
        recognizer.predict_batch([{"audio": u.audio, "speaker": "s"} for u in test], batch_size=2)
    )
    features = recognizer.featurize([recognizer.load_wave(u.audio) for u in test], [None] * 3)
    by_hand = normalised_blocks([f.audio for f in features], ["s"] * 3, "speaker")
    expected = [recognizer.predict_features([Features(a, None, normalised=True)])[0] for a in by_hand]
    assert grouped == pytest.approx(probabilities(expected), abs=1e-5)
    alone = recognizer.predict_batch([{"audio": test[0].audio}])
    assert probabilities(alone) == pytest.approx(probabilities([recognizer.predict(test[0].audio)]), abs=1e-6)
    # on features far apart (the log-mel test encoder standardises each clip already): groups never mix
    parts = [b + 20 * k for k, b in enumerate(blocks(40, 30, 50, dim=features[0].audio.shape[1]))]
    raw = [Features(b, None) for b in parts]
    pooled = recognizer.normalise(raw, ["s", "s", "t"])
    assert all(f.normalised for f in pooled)
    assert torch.allclose(
        torch.cat([f.audio for f in pooled[:2]]).mean(0), torch.zeros(parts[0].shape[1]), atol=1e-4
    )
    assert torch.allclose(pooled[2].audio, recognizer.normalise([raw[2]], ["t"])[0].audio)  # a group of one
    # a feature of no group: the training rows' statistics the model keeps, as predict gives a clip alone
    mean, std = recognizer.model.audio_in.reference_statistics()
    assert torch.allclose(recognizer.normalise([raw[0]])[0].audio, (parts[0] - mean) / std, atol=1e-4)
    assert not torch.allclose(pooled[0].audio, recognizer.normalise([raw[0]])[0].audio, atol=1e-2)
    assert recognizer.normalise(pooled, ["x"] * 3) == pooled  # never twice
    once = probabilities(recognizer.predict_features(pooled))
    assert once == pytest.approx(
        probabilities([recognizer.predict_features([f])[0] for f in pooled]), abs=1e-5
    )


def test_one_source_standardises_every_clip_of_a_call_by_all_their_frames(
    speaker_run, tiny_corpus, tmp_path, capsys
):
    recognizer = EmotionRecognizer.load(speaker_run)
    rows, _ = read_manifest(tiny_corpus)
    test = [u for u in splits(rows)["test"] if u.audio is not None][:4]
    folder = tmp_path / "one_source"
    folder.mkdir()
    for k, u in enumerate(test):
        (folder / f"clip{k}{Path(u.audio).suffix}").write_bytes(Path(u.audio).read_bytes())
    (folder / "broken.wav").write_bytes(b"RIFF not audio")  # read by neither pass: skipped and reported
    jobs = make_jobs(str(folder), None, None)
    source = source_statistics(recognizer, jobs, Options(), batch_size=3)
    features = recognizer.featurize([recognizer.load_wave(u.audio) for u in test], [None] * 4)
    together = frame_statistics(f.audio for f in features)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(source, together, strict=True))

    def probabilities(predictions):
        return np.array([list(p.probabilities.values()) for p in predictions])

    shared = recognizer.predict_batch([{"audio": u.audio, "speaker": "s"} for u in test])
    given = recognizer.predict_batch([{"audio": u.audio} for u in test], batch_size=2, source=source)
    assert probabilities(given) == pytest.approx(probabilities(shared), abs=1e-5)
    # the log-mel test encoder standardises each clip, so any source's statistics are near (0, 1): a source far
    # from it shows that predict_batch standardises by what it is given, not by the training rows' statistics
    far = (
        source[0] + torch.linspace(-3, 3, len(source[0])),
        source[1],
    )  # a shift no per-frame LayerNorm undoes
    moved = recognizer.predict_batch([{"audio": u.audio} for u in test], source=far)
    assert not np.allclose(probabilities(moved), probabilities(shared), atol=1e-3)
    raw = [Features(b + 7, None) for b in blocks(6, 8, dim=features[0].audio.shape[1])]
    by_far = recognizer.normalise(raw, alone=far)
    assert torch.allclose(by_far[1].audio, (raw[1].audio - far[0]) / far[1], atol=1e-5)

    assert main(["predict", str(speaker_run), "--audio", str(folder), "--asr", "none", "--one-source"]) == 0
    out = capsys.readouterr()
    printed = [json.loads(line) for line in out.out.splitlines()]
    assert "broken.wav" in out.err and len(printed) == 4
    by_file = {Path(r["file"]).name: list(r["probabilities"].values()) for r in printed}
    got = np.array([by_file[f"clip{k}{Path(u.audio).suffix}"] for k, u in enumerate(test)])
    assert got == pytest.approx(probabilities(shared), abs=1e-4)
    ray = ["predict", str(speaker_run), "--audio", str(folder), "--one-source", "--engine", "ray"]
    assert main(ray) == 2 and "--one-source reads every file before predicting any" in capsys.readouterr().err


def test_a_timeline_standardises_every_segment_by_its_whole_recording(speaker_run, tiny_corpus, tmp_path):
    # the run read through log-mels without the test encoder's per-clip standardisation, which would make every
    # segment's statistics (0, 1) and any grouping alike
    run = shutil.copytree(speaker_run, tmp_path / "raw_logmel")
    meta = json.loads((run / "model.json").read_text())
    meta["encoders"]["audio"]["normalize"] = False
    (run / "model.json").write_text(json.dumps(meta))
    recognizer = EmotionRecognizer.load(run)
    rows, _ = read_manifest(tiny_corpus)
    speech = [load_audio(u.audio, 16000) for u in splits(rows)["test"] if u.audio is not None][:3]
    t = np.arange(20 * 16000) / 16000
    low, high = (0.3 * np.sin(2 * np.pi * f * t).astype(np.float32) for f in (220, 2500))
    # a recording of several groups of segments (28 s each) whose stretches differ in spectrum, so that batches
    # of its segments differ in statistics
    wave = np.concatenate([low, high, *speech, low])

    def probabilities(predictions):
        return np.array([list(p.probabilities.values()) for p in predictions])

    options = {"sample_rate": 16000, "segment": "window", "window": 1.0, "hop": 1.0}
    result = recognizer.timeline(wave, batch_size=2, **options)
    got = probabilities(s.prediction for s in result.segments)
    pieces = [wave[round(s.start * 16000) : round(s.end * 16000)] for s in result.segments]
    items = [{"audio": piece, "sample_rate": 16000} for piece in pieces]
    features = recognizer.featurize(
        [recognizer.load_wave(piece, 16000) for piece in pieces], [None] * len(pieces)
    )
    recording = frame_statistics(f.audio for f in features)  # every segment's frames together
    assert got == pytest.approx(probabilities(recognizer.predict_batch(items, source=recording)), abs=1e-5)
    # whatever the batches: the last segments no longer stand on statistics of their own
    whole = recognizer.timeline(wave, batch_size=32, **options)
    assert probabilities(s.prediction for s in whole.segments) == pytest.approx(got, abs=1e-5)
    # what it did before: each batch of 2 segments standardised by its own frames
    by_batch = [{**item, "speaker": k // 2} for k, item in enumerate(items)]
    assert not np.allclose(probabilities(recognizer.predict_batch(by_batch)), got, atol=1e-3)
    # fewer than RECORDING_SEGMENTS segments, or one pooled row: each as a clip alone (training statistics),
    # never by its own frames
    few = wave[: 3 * 16000]
    three = recognizer.timeline(few, **options)
    assert len(three.segments) == 3 < RECORDING_SEGMENTS
    alone = recognizer.predict_batch(
        [{"audio": few[k * 16000 : (k + 1) * 16000], "sample_rate": 16000} for k in range(3)]
    )
    assert probabilities(s.prediction for s in three.segments) == pytest.approx(
        probabilities(alone), abs=1e-5
    )
    long = np.tile(wave, 3)  # 3.4 min: 6 windows of the model's limit
    whole_file = recognizer.timeline(long, sample_rate=16000, segment="none")
    windows = window_segments(len(long) / 16000, recognizer.max_seconds, recognizer.max_seconds)
    assert len(whole_file.segments) == 1 and len(windows) >= RECORDING_SEGMENTS  # windows, pooled
    pieces = [
        {"audio": long[round(w.start * 16000) : round(w.end * 16000)], "sample_rate": 16000} for w in windows
    ]
    each_alone = pooled(recognizer.predict_batch(pieces), [w.end - w.start for w in windows])
    assert probabilities([whole_file.segments[0].prediction]) == pytest.approx(
        probabilities([each_alone]), abs=1e-5
    )


@pytest.mark.smoke  # benchmarks/group_size.py's smallest run (tests/test_smoke_scripts.py): -k smoke
def test_group_size_benchmark_smoke(speaker_run, monkeypatch, capsys):
    """benchmarks/group_size.py at its smallest size, on this module's speaker-normalised run; groups of all
    the test speaker's 8 clips without a prior are the speaker groups it was evaluated with."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "group_size.py"
    argv = ["--run", str(speaker_run), "--sizes", "1,8", "--prior-seconds", "0,5", "--draws", "1"]
    monkeypatch.setattr(sys, "argv", [str(script), *argv])
    runpy.run_path(str(script), run_name="__main__")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["group"] for line in lines] == ["speaker", "alone", *["1 clips"] * 2, *["8 clips"] * 2]
    assert lines[4]["prior_seconds"] == 0 and lines[4]["ua"] == lines[0]["ua"]
    assert all(0 <= line["ua"] <= 100 for line in lines)


def test_a_share_of_training_clips_is_standardised_as_if_alone(tiny_corpus):
    rows, _ = read_manifest(tiny_corpus)
    train_rows = splits(rows)["train"]
    speakers = sorted({u.speaker for u in train_rows})
    parts = [
        b + 20 * speakers.index(u.speaker)
        for u, b in zip(train_rows, blocks(*[9] * len(train_rows)), strict=True)
    ]
    split = in_memory_split([u.id for u in train_rows], parts)
    reference = (torch.full((4,), 5.0), torch.full((4,), 4.0))
    targets = Targets.fit(train_rows)
    dataset = EmotionDataset(
        split,
        train_rows,
        targets,
        10**6,
        audio_normalise="speaker",
        lone_statistics=reference,
        lone_share=0.5,
    )
    torch.manual_seed(0)
    draws = [dataset[0]["audio"] for _ in range(40)]
    as_alone = (parts[0].half().float() - 5) / 4
    alone = sum(torch.allclose(d, as_alone) for d in draws)
    by_speaker = dataset.audio(0)  # the draw without `alone`
    assert 8 <= alone <= 32 and all(
        torch.allclose(d, as_alone) or torch.allclose(d, by_speaker) for d in draws
    )
    assert not torch.allclose(by_speaker, as_alone, atol=1e-2)
    with pytest.raises(ValueError, match="train.lone_share 0.5 needs model.audio_normalise speaker"):
        EmotionDataset(split, train_rows, targets, 10**6, lone_share=0.5)
    with pytest.raises(ValueError, match=r"train.lone_share 1.0 needs .* a share in \[0, 1\)"):
        EmotionDataset(split, train_rows, targets, 10**6, audio_normalise="speaker", lone_share=1.0)
