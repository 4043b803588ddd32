import json
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from mamer.data.manifest import read_manifest, splits
from mamer.data.synthetic import CLASSES, generate_corpus

TINY = {
    "n_speakers": 4,
    "utterances_per_speaker": 8,
    "seed": 3,
    "split_speakers": (2, 1, 1),
    "progress": False,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("a") / "corpus", **TINY)


def test_files_exist_and_manifest_is_valid(corpus):
    utts, problems = read_manifest(corpus, strict=True)
    assert not problems and len(utts) == 32
    for u in utts:
        x, sr = sf.read(u.audio, dtype="int16")
        assert sr == 22050 and x.ndim == 1 and 1.0 < len(x) / sr < 6.0
        assert u.text and u.label in CLASSES and all(1 <= v <= 5 for v in (u.arousal, u.valence, u.dominance))
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    assert all(r["audio"] == f"audio/{r['id']}.wav" for r in rows)


def test_classes_balanced_and_speakers_disjoint_across_splits(corpus):
    utts, _ = read_manifest(corpus)
    for speaker in {u.speaker for u in utts}:
        assert set(Counter(u.label for u in utts if u.speaker == speaker).values()) == {2}
    by_split = {name: {u.speaker for u in group} for name, group in splits(utts).items()}
    assert {name: len(s) for name, s in by_split.items()} == {"train": 2, "dev": 1, "test": 1}
    assert not (by_split["train"] & by_split["dev"]) and not (by_split["train"] & by_split["test"])


def test_same_seed_gives_identical_bytes_and_existing_corpus_is_reused(corpus, tmp_path):
    again = generate_corpus(tmp_path / "b", **TINY)
    assert again.read_bytes() == corpus.read_bytes()
    for wav in sorted((corpus.parent / "audio").glob("*.wav")):
        assert (tmp_path / "b" / "audio" / wav.name).read_bytes() == wav.read_bytes()
    mtime = again.stat().st_mtime_ns
    assert generate_corpus(tmp_path / "b", **TINY).stat().st_mtime_ns == mtime
    other = generate_corpus(tmp_path / "b", **{**TINY, "seed": 4})
    assert other.read_bytes() != corpus.read_bytes()
    assert len(list((tmp_path / "b" / "audio").glob("*.wav"))) == 32


def test_arousal_is_audible(corpus):
    utts, _ = read_manifest(corpus)
    rms = np.array([np.sqrt(np.mean(sf.read(u.audio, dtype="float32")[0] ** 2)) for u in utts])
    seconds_per_char = np.array([sf.info(u.audio).duration / len(u.text) for u in utts])
    high = np.array([u.label in ("happy", "angry") for u in utts])
    assert rms[high].mean() > 1.3 * rms[~high].mean()
    assert seconds_per_char[~high].mean() > 1.2 * seconds_per_char[high].mean()
    assert np.corrcoef(rms, [u.arousal for u in utts])[0, 1] > 0.6


def test_bad_split_sizes_and_foreign_manifest_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="sum to 4"):
        generate_corpus(tmp_path, n_speakers=4, split_speakers=(2, 1, 2), progress=False)
    (tmp_path / "manifest.jsonl").write_text("{}\n")
    with pytest.raises(FileExistsError, match="not written by generate_corpus"):
        generate_corpus(tmp_path, **TINY)
