"""Tests for the feature cache: key invalidation, resumable sharded extraction, bad audio reported and skipped."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mamer.data.features import cache_key, cache_summary, extract_features, load_spec, load_split
from mamer.data.manifest import read_manifest, splits
from mamer.encoders.logmel import LogMelEncoder
from mamer.encoders.text import HashedTextEncoder


@pytest.fixture(scope="module")
def corpus(tiny_corpus) -> dict:
    utterances, problems = read_manifest(tiny_corpus)
    assert not problems
    return splits(utterances)


class CrashingEncoder(LogMelEncoder):
    """Log-mel that raises after `budget` encode calls: a run killed mid-extraction."""

    def __init__(self, budget: int):
        super().__init__()
        self.budget = budget

    def encode(self, waveforms):
        if self.budget == 0:
            raise KeyboardInterrupt("simulated kill")
        self.budget -= 1
        return super().encode(waveforms)


def features_of(folder, split) -> tuple[list[str], list, list]:
    cached = load_split(folder, split)
    rows = range(len(cached.ids))
    return cached.ids, [cached.audio_of(i) for i in rows], [cached.text_of(i) for i in rows]


def assert_same_features(folder_a, folder_b, split) -> None:
    ids_a, audio_a, text_a = features_of(folder_a, split)
    ids_b, audio_b, text_b = features_of(folder_b, split)
    assert ids_a == ids_b
    for a, b in zip(audio_a + text_a, audio_b + text_b, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


def test_cache_key_changes_with_encoder_options_and_rows(corpus):
    rows = corpus["train"]
    audio, text = LogMelEncoder().spec(), HashedTextEncoder().spec()
    key = cache_key(audio, text, rows)
    assert key == cache_key(LogMelEncoder().spec(), HashedTextEncoder().spec(), list(rows))
    assert cache_key(LogMelEncoder(normalize=False).spec(), text, rows) != key
    assert cache_key(audio, HashedTextEncoder(dim=64).spec(), rows) != key
    edited = [dataclasses.replace(rows[0], text=rows[0].text + " really"), *rows[1:]]
    assert cache_key(audio, text, edited) != key
    assert cache_key(audio, text, rows[:-1]) != key


def test_sharded_extraction_matches_spec_and_rows(corpus, tmp_path):
    folder = extract_features(
        corpus,
        LogMelEncoder(),
        HashedTextEncoder(dim=16),
        tmp_path,
        batch_size=3,
        progress=False,
        shard_size=5,
    )
    spec = load_spec(folder)
    assert (spec["audio_dim"], spec["text_dim"], spec["frame_rate"]) == (80, 16, 100.0)
    train = load_split(folder, "train")
    assert train.ids == [u.id for u in corpus["train"]] and train.skipped == []
    assert len(list(folder.glob("train-*.safetensors"))) == 4  # 16 utterances in shards of 5
    encoder = LogMelEncoder()
    for i in (0, 7, 15):  # rows in the first, a middle and the last shard
        wave = encoder.encode([_wave(corpus["train"][i])])[0]
        torch.testing.assert_close(train.audio_of(i).float(), wave, atol=0.02, rtol=0.01)  # float16 storage
        assert train.text_of(i).shape[1] == 16
    assert cache_summary(folder)["test"] == {"utterances": 8, "skipped": 0, "complete": True}
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*.tmp"))


def _wave(u):
    from mamer.encoders.audio_io import load_audio

    return load_audio(u.audio, 16000)


def test_resume_after_crash_equals_uninterrupted_run(corpus, tmp_path):
    text = HashedTextEncoder(dim=16)
    options = dict(batch_size=4, progress=False, shard_size=4)
    with pytest.raises(KeyboardInterrupt):
        extract_features(corpus, CrashingEncoder(budget=2), text, tmp_path / "crashed", **options)
    (folder,) = (tmp_path / "crashed").iterdir()
    first = next(iter(corpus))  # splits are extracted in dict order
    index = json.loads((folder / f"{first}.json").read_text())
    assert sorted(index["shards"]) == ["0", "1"] and not index.get("complete")
    with pytest.raises(FileNotFoundError, match="incomplete"):
        load_split(folder, first)

    resumed = CrashingEncoder(budget=100)
    again = extract_features(corpus, resumed, text, tmp_path / "crashed", **options)
    assert again == folder
    total = sum(len(rows) for rows in corpus.values())
    assert 100 - resumed.budget == total // 4 - 2  # only the missing shards were encoded
    fresh = extract_features(corpus, LogMelEncoder(), text, tmp_path / "fresh", **options)
    for split in corpus:
        assert_same_features(folder, fresh, split)

    rerun = CrashingEncoder(budget=0)  # everything cached: no encoding at all
    assert extract_features(corpus, rerun, text, tmp_path / "crashed", **options) == folder


def test_bad_audio_is_reported_and_skipped(corpus, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    rows = list(corpus["test"])
    rows[1] = dataclasses.replace(rows[1], audio=corrupt)
    rows[4] = dataclasses.replace(rows[4], audio=tmp_path / "missing.wav")
    folder = extract_features(
        {"test": rows},
        LogMelEncoder(),
        HashedTextEncoder(dim=16),
        tmp_path / "f",
        progress=False,
        shard_size=3,
    )
    cached = load_split(folder, "test")
    assert cached.ids == [u.id for i, u in enumerate(rows) if i not in (1, 4)]
    assert [s["id"] for s in cached.skipped] == [rows[1].id, rows[4].id]
    report = [json.loads(line) for line in (folder / "skipped.jsonl").read_text().splitlines()]
    assert [r["id"] for r in report] == [rows[1].id, rows[4].id]
    assert "corrupt.wav: unreadable" in report[0]["reason"] and report[0]["split"] == "test"
    assert "missing.wav: no such audio file" in report[1]["reason"]
    assert cache_summary(folder)["test"] == {"utterances": 6, "skipped": 2, "complete": True}
    assert all(cached.audio_of(i) is not None for i in range(6))


def test_extract_command_reports_and_reuses_the_cache(tiny_corpus, tmp_path, capsys):
    from mamer.cli import main

    args = ["extract", "--manifest", str(tiny_corpus), "--audio-encoder", "logmel", "--text-encoder", "hashed",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "train" in first and "16 utterances" in first and "features in" in first
    assert main(args) == 0 and capsys.readouterr().out == first  # the second run reuses the cache
