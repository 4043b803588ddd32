"""Tests for the feature cache: keys, content-addressed shards shared by manifests, resume, bad audio, CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from mamer.data.audio import load_audio
from mamer.data.cache import (
    audio_key,
    cache_summary,
    load_spec,
    load_split,
    manifest_rows,
    read_catalog,
    set_key,
    store_name,
)
from mamer.data.extract import extract_features
from mamer.data.manifest import read_manifest, splits
from mamer.encoders.logmel import LogMelEncoder
from mamer.encoders.text import HashedTextEncoder


@pytest.fixture(scope="module")
def corpus(tiny_corpus) -> dict:
    utterances, problems = read_manifest(tiny_corpus)
    assert not problems
    return splits(utterances)


class CountingEncoder(LogMelEncoder):
    """Log-mel that counts its encode calls and raises after `budget` of them: a run killed mid-extraction."""

    def __init__(self, budget: int = 1000):
        super().__init__()
        self.budget, self.calls, self.items = budget, 0, 0

    def encode(self, waveforms):
        if self.calls == self.budget:
            raise KeyboardInterrupt("simulated kill")
        self.calls, self.items = self.calls + 1, self.items + len(waveforms)
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


def test_keys_follow_encoders_files_and_splits(corpus, tmp_path):
    assert store_name("audio", LogMelEncoder().spec()) == store_name("audio", LogMelEncoder().spec())
    assert store_name("audio", LogMelEncoder(normalize=False).spec()) != store_name(
        "audio", LogMelEncoder().spec()
    )
    assert store_name("text", HashedTextEncoder(dim=64).spec()) != store_name(
        "text", HashedTextEncoder().spec()
    )

    wave = tmp_path / "a.wav"
    sf.write(wave, np.zeros(1600, np.float32), 16000)
    before = audio_key(wave)
    assert audio_key(tmp_path / "." / "a.wav") == before  # the resolved path
    assert audio_key(shutil.copy(wave, tmp_path / "copy.wav")) == before  # the content, not the name
    sf.write(wave, np.ones(1600, np.float32) * 0.1, 16000)  # same size, new content
    os.utime(wave, ns=(0, os.stat(wave).st_mtime_ns + 1))  # whatever the clock's resolution
    assert audio_key(wave) != before
    wave.unlink()
    assert audio_key(wave) not in (before, audio_key(tmp_path / "b.wav"))  # unreadable: its own, by path

    stores = {"audio": "audio-x", "text": "text-y"}
    key = set_key(stores, manifest_rows(corpus))
    edited = dict(
        corpus, train=[dataclasses.replace(corpus["train"][0], text="really"), *corpus["train"][1:]]
    )
    moved = {
        "train": corpus["train"][1:],
        "dev": [corpus["train"][0], *corpus["dev"]],
        "test": corpus["test"],
    }
    assert set_key(stores, manifest_rows(corpus)) == key
    assert len({key, set_key(stores, manifest_rows(edited)), set_key(stores, manifest_rows(moved))}) == 3
    assert set_key({"audio": "audio-z", "text": "text-y"}, manifest_rows(corpus)) != key


def test_sharded_extraction_matches_spec_and_rows(corpus, tmp_path):
    audio, text = LogMelEncoder(), HashedTextEncoder(dim=16)
    folder = extract_features(corpus, audio, text, tmp_path, batch_size=3, progress=False, shard_size=5)
    spec = load_spec(folder)
    assert (spec["audio_dim"], spec["text_dim"], spec["frame_rate"]) == (80, 16, 100.0)
    assert spec["stores"]["audio"] == store_name("audio", audio.spec())
    train = load_split(folder, "train")
    assert train.ids == [u.id for u in corpus["train"]] and train.skipped == []
    store = tmp_path / spec["stores"]["audio"]
    assert len(list(store.glob("*.safetensors"))) == 7  # 32 clips in shards of 5
    assert len(read_catalog(store).rows) == 32
    for i in (0, 7, 15):
        wave = audio.encode([load_audio(corpus["train"][i].audio, 16000)])[0]
        torch.testing.assert_close(train.audio_of(i).float(), wave, atol=0.02, rtol=0.01)  # float16 storage
        assert train.text_of(i).shape[1] == 16
    assert cache_summary(folder)["test"] == {"utterances": 8, "skipped": 0, "partial": 0}
    assert not list(tmp_path.rglob("*.tmp"))


def test_resume_after_crash_equals_uninterrupted_run(corpus, tmp_path):
    text = HashedTextEncoder(dim=16)
    options = dict(batch_size=4, progress=False, shard_size=4)
    crashing = CountingEncoder(budget=2)
    with pytest.raises(KeyboardInterrupt):
        extract_features(corpus, crashing, text, tmp_path / "crashed", **options)
    store = tmp_path / "crashed" / store_name("audio", crashing.spec())
    assert len(read_catalog(store).rows) == 8  # two whole shards, nothing else
    folder = (
        tmp_path
        / "crashed"
        / set_key({"audio": store.name, "text": store_name("text", text.spec())}, manifest_rows(corpus))
    )
    with pytest.raises(FileNotFoundError, match="run feature extraction"):
        load_split(folder, "train")

    resumed = CountingEncoder()
    assert extract_features(corpus, resumed, text, tmp_path / "crashed", **options) == folder
    assert (resumed.calls, resumed.items) == (6, 24)  # only the missing shards were encoded
    fresh = extract_features(corpus, LogMelEncoder(), text, tmp_path / "fresh", **options)
    for split in corpus:
        assert_same_features(folder, fresh, split)
    assert (
        extract_features(corpus, CountingEncoder(budget=0), text, tmp_path / "crashed", **options) == folder
    )


def test_folds_of_one_corpus_share_the_encoded_utterances(corpus, tmp_path):
    """Another split assignment of the same utterances (a speaker fold) is indexed without encoding."""
    text = HashedTextEncoder(dim=16)
    first = extract_features(corpus, LogMelEncoder(), text, tmp_path, progress=False)
    fold = {"train": corpus["dev"] + corpus["test"], "test": corpus["train"]}
    encoder = CountingEncoder(budget=0)
    second = extract_features(fold, encoder, text, tmp_path, progress=False)
    assert second != first and second.parent == first.parent
    ids, audio, _ = features_of(second, "test")
    assert ids == [u.id for u in corpus["train"]]
    for a, b in zip(audio, features_of(first, "train")[1], strict=True):
        assert torch.equal(a, b)


def test_rewritten_audio_file_is_encoded_again(corpus, tmp_path):
    rows = [dataclasses.replace(u, audio=shutil.copy(u.audio, tmp_path)) for u in corpus["test"][:3]]
    text = HashedTextEncoder(dim=16)
    before = extract_features({"test": rows}, LogMelEncoder(), text, tmp_path / "cache", progress=False)
    old = load_split(before, "test").audio_of(1)
    shutil.copy(corpus["train"][0].audio, rows[1].audio)  # new content under the same name
    encoder = CountingEncoder()
    after = extract_features({"test": rows}, encoder, text, tmp_path / "cache", progress=False)
    assert after != before and encoder.items == 1
    new = load_split(after, "test")
    assert not torch.equal(new.audio_of(1), old) and torch.equal(
        new.audio_of(0), load_split(before, "test").audio_of(0)
    )
    expected = LogMelEncoder().encode([load_audio(rows[1].audio, 16000)])[0]
    torch.testing.assert_close(new.audio_of(1).float(), expected, atol=0.02, rtol=0.01)


def test_a_copy_of_the_corpus_elsewhere_finds_its_features(corpus, tmp_path):
    """Audio is keyed by content: a corpus copied to another folder (new paths, new mtimes: rsync, a job's
    scratch disk) is indexed without encoding anything, and its files are hashed once."""
    text = HashedTextEncoder(dim=16)
    first = extract_features(corpus, LogMelEncoder(), text, tmp_path / "cache", progress=False)
    copy = tmp_path / "copy"
    copy.mkdir()
    moved = {
        name: [dataclasses.replace(u, audio=shutil.copy(u.audio, copy / f"{u.id}.wav")) for u in split]
        for name, split in corpus.items()
    }
    assert all(os.stat(u.audio).st_mtime_ns != os.stat(v.audio).st_mtime_ns
               for u, v in zip(corpus["train"], moved["train"], strict=True))  # fmt: skip
    second = extract_features(moved, CountingEncoder(budget=0), text, tmp_path / "cache", progress=False)
    assert second == first
    for split in corpus:
        assert_same_features(first, second, split)
    hashes = (tmp_path / "cache" / "file-hashes.jsonl").read_text().splitlines()
    assert len(hashes) == 2 * sum(len(split) for split in corpus.values())  # each file of both copies, once
    extract_features(moved, CountingEncoder(budget=0), text, tmp_path / "cache", progress=False)
    assert len((tmp_path / "cache" / "file-hashes.jsonl").read_text().splitlines()) == len(hashes)


def test_bad_audio_is_reported_and_skipped(corpus, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    rows = list(corpus["test"])
    rows[1] = dataclasses.replace(rows[1], audio=corrupt)
    rows[4] = dataclasses.replace(rows[4], audio=tmp_path / "missing.wav")
    encoders = LogMelEncoder(), HashedTextEncoder(dim=16)
    rows[2] = dataclasses.replace(rows[2], audio=corrupt, text=None)
    folder = extract_features({"test": rows}, *encoders, tmp_path / "f", progress=False, shard_size=3)
    cached = load_split(folder, "test")
    assert cached.ids == [u.id for i, u in enumerate(rows) if i != 2]  # rows 1 and 4 keep their text
    assert [s["id"] for s in cached.skipped] == [rows[2].id]
    assert [(s["id"], s["kept"]) for s in cached.partial] == [(rows[1].id, "text"), (rows[4].id, "text")]
    report = [json.loads(line) for line in (folder / "skipped.jsonl").read_text().splitlines()]
    assert [r["id"] for r in report] == [rows[2].id, rows[1].id, rows[4].id]
    assert "corrupt.wav: not an audio file" in report[0]["reason"] and report[0]["split"] == "test"
    assert "missing.wav: no such audio file" in report[2]["reason"] and report[2]["kept"] == "text"
    assert cache_summary(folder)["test"] == {"utterances": 7, "skipped": 1, "partial": 2}
    assert [cached.audio_of(i) is None for i in range(7)] == [False, True, False, True, False, False, False]
    assert all(cached.text_of(i) is not None for i in range(7))

    again = CountingEncoder(budget=0)  # known failures are not retried
    subset = extract_features({"test": rows[:3]}, again, encoders[1], tmp_path / "f", progress=False)
    assert cache_summary(subset)["test"] == {"utterances": 2, "skipped": 1, "partial": 1}


def test_extract_command_reports_and_reuses_the_cache(tiny_corpus, tmp_path, capsys):
    from mamer.cli import main

    args = ["extract", "--manifest", str(tiny_corpus), "--audio-encoder", "logmel", "--text-encoder", "hashed",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "train" in first and "16 utterances" in first and "features in" in first
    assert main(args) == 0 and capsys.readouterr().out == first  # the second run reuses the cache
    assert main([*args, "--audio-layers", "2"]) == 2
    assert "logmel encoder has no layers" in capsys.readouterr().err


def test_extract_command_layers(tiny_corpus, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    from mamer.cli import main

    config = transformers.WavLMConfig(hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                      intermediate_size=32, conv_dim=(8, 16), conv_kernel=(10, 8),
                                      conv_stride=(10, 8), num_conv_pos_embeddings=16,
                                      num_conv_pos_embedding_groups=2)  # fmt: skip
    transformers.WavLMModel(config).save_pretrained(tmp_path / "wavlm")
    base = ["extract", "--manifest", str(tiny_corpus), "--audio-encoder", str(tmp_path / "wavlm"),
            "--text-encoder", "hashed", "--out", str(tmp_path / "cache")]  # fmt: skip
    folders = []
    for layers in ("1,2", "-1"):
        assert main([*base, "--audio-layers", layers]) == 0
        folders.append(capsys.readouterr().out.split("features in ")[1].split()[0])
    assert [load_spec(f)["audio_encoder"]["layers"] for f in folders] == [[1, 2], [3]]
    assert load_split(folders[0], "dev").audio_dim == 16
    assert len(list((tmp_path / "cache").glob("audio-*"))) == 2  # different layers never share a store


def test_run_config_layer_lists():
    from mamer.config import load_config

    config = load_config("quickstart", ["data.audio_layers=[2, 3]", "data.text_layers=[-1]"])
    assert (config.data.audio_layers, config.data.text_layers) == ([2, 3], [-1])
    assert load_config("quickstart").data.audio_layers == []  # the encoder's default
    with pytest.raises(ValueError, match=r"data.audio_layers must be a list of layer numbers"):
        load_config("quickstart", ["data.audio_layers=2"])


def test_older_cache_format_is_named(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps({"audio_dim": 80, "text_dim": 16, "frame_rate": 100.0}))
    (tmp_path / "train.json").write_text(json.dumps({"shard_size": 128, "shards": {}, "complete": True}))
    with pytest.raises(FileNotFoundError, match="older cache format"):
        load_split(tmp_path, "train")
