"""nEMO: both layouts, the Opus files read as they are, and its leave-speakers-out folds with a dev speaker."""

import csv
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from mamer.cli import main
from mamer.data.audio import load_audio
from mamer.data.corpora import prepare_corpus
from mamer.data.corpora.nemo import EMOTIONS, read_nemo
from mamer.data.corpora.train_dev import carve_dev, leave_speakers_out
from mamer.data.manifest import Utterance, read_manifest
from test_corpora import DATA, _copy_rows, needs_data


@needs_data
def test_nemo_real_rows_opus_as_distributed(tmp_path):
    (tmp_path / "audio").mkdir()
    bad = [
        {"file": "audio/x.opus", "id": "KS0_joy_1", "emotion": "joy", "speaker": "KS0", "gender": "male", "text": "x"},
        {"file": "audio/gone.opus", "id": "KS0_anger_0", "emotion": "anger", "speaker": "KS0", "gender": "male",
         "text": "x"},
    ]  # fmt: skip
    rows = _copy_rows(DATA / "nemo/metadata.csv", tmp_path / "metadata.csv", lambda i, r: i < 30, bad)
    for row in rows[: -len(bad)]:
        (tmp_path / row["file"]).symlink_to(DATA / "nemo" / row["file"])
    prepared = read_nemo(tmp_path)
    assert [u.id for u in prepared.rows] == [r["id"] for r in rows[: -len(bad)]]
    for u, r in zip(prepared.rows, rows, strict=False):
        assert (u.label, u.speaker, u.text) == (r["emotion"], r["speaker"], r["text"])
        assert u.audio.suffix == ".opus"
    problems = "\n".join(prepared.problems)
    assert "unknown emotion 'joy'" in problems and "gone.opus" in problems and "metadata.csv:32" in problems
    wave = load_audio(prepared.rows[0].audio, 16000)  # Ogg/Opus through PyAV, 48 kHz decoded back to 16 kHz
    assert wave.ndim == 1 and 0.5 < len(wave) / 16000 < 15 and np.abs(wave).max() > 0.01


def test_nemo_official_layout_tsv_and_samples(tmp_path):
    (tmp_path / "samples").mkdir()
    with (tmp_path / "data.tsv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["file_id", "emotion", "raw_text", "normalized_text", "speaker_id", "gender", "age"])
        for name, emotion in (("EB0_anger_1.wav", "anger"), ("WR0_surprised_64.wav", "surprised"),
                              ("WR0_bored_2.wav", "bored")):  # fmt: skip
            sf.write(tmp_path / "samples" / name, np.zeros(2400, dtype=np.float32), 24000)
            writer.writerow(
                [name, emotion, "Lubię czytać przed snem.", "lubię", f"      {name[:3]}", "f", "27"]
            )
    prepared = read_nemo(tmp_path)
    assert [(u.id, u.label, u.speaker, u.text) for u in prepared.rows] == [
        ("EB0_anger_1", "anger", "EB0", "Lubię czytać przed snem."),
        ("WR0_surprised_64", "surprised", "WR0", "Lubię czytać przed snem."),
    ]
    assert len(prepared.problems) == 1 and "data.tsv:4: unknown emotion 'bored'" in prepared.problems[0]
    with pytest.raises(FileNotFoundError, match="no nEMO found"):
        read_nemo(tmp_path / "samples")


def _rows(speakers: int, per: int = 4) -> list[Utterance]:
    return [Utterance(f"S{s}_{i}", None, "t", EMOTIONS[i % 6], None, None, None, f"S{s}", "")
            for s in range(speakers) for i in range(per)]  # fmt: skip


def test_leave_speakers_out_tests_every_speaker_once_and_dev_is_a_train_speaker():
    folds = [carve_dev(fold) for fold in leave_speakers_out(_rows(9), 3)]
    tested = []
    for fold in folds:
        by_split = {s: {u.speaker for u in fold if u.split == s} for s in ("train", "dev", "test")}
        assert len(by_split["test"]) == 3 and len(by_split["dev"]) == 1 and len(by_split["train"]) == 5
        assert (
            not (by_split["dev"] | by_split["train"]) & by_split["test"]
            and not by_split["dev"] & by_split["train"]
        )
        tested += by_split["test"]
    assert sorted(tested) == [f"S{s}" for s in range(9)]
    assert {u.speaker for u in folds[0] if u.split == "test"} == {"S0", "S3", "S6"}  # interleaved
    with pytest.raises(ValueError, match="2 to 3 folds"):
        leave_speakers_out(_rows(3), 2)
    with pytest.raises(ValueError, match="2 to 9 folds"):
        leave_speakers_out(_rows(9), 10)


@needs_data
def test_cli_prepare_nemo_three_folds(tmp_path, capsys):
    rows = _copy_rows(DATA / "nemo/metadata.csv", tmp_path / "metadata.csv", lambda i, r: i % 40 == 0)
    (tmp_path / "audio").mkdir()
    for row in rows:
        (tmp_path / row["file"]).symlink_to(DATA / "nemo" / row["file"])
    main(["prepare", "--corpus", "nemo", "--root", str(tmp_path), "--out", str(tmp_path / "m.jsonl")])
    printed = capsys.readouterr().out
    assert [line.split(":")[0] for line in printed.splitlines()] == [
        str(tmp_path / f"m_fold{k}.jsonl") for k in range(3)
    ]
    speakers = sorted({r["speaker"] for r in rows})
    tested = Counter()
    for k in range(3):
        utts, problems = read_manifest(tmp_path / f"m_fold{k}.jsonl", strict=True)
        assert len(utts) == len(rows)
        tested.update({u.speaker for u in utts if u.split == "test"})
    assert sorted(tested) == speakers and set(tested.values()) == {1}
    assert prepare_corpus("nemo", tmp_path, tmp_path / "loso.jsonl", folds=len(speakers)).written
