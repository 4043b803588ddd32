import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mamer.cli import main
from mamer.data.corpora import CorpusError, prepare_corpus, speaker_folds
from mamer.data.corpora.emobank import read_emobank
from mamer.data.corpora.emodb import SENTENCES, read_emodb
from mamer.data.corpora.meld import EMOTIONS as MELD_EMOTIONS
from mamer.data.corpora.meld import read_meld
from mamer.data.manifest import read_manifest


def _shared_data() -> Path | None:
    """The real corpora: ../shared/data beside the repository (CI), else /work/shared/data."""
    for path in (Path(__file__).resolve().parents[2] / "shared" / "data", Path("/work/shared/data")):
        if path.is_dir():
            return path
    return None


DATA = _shared_data()
needs_data = pytest.mark.skipif(
    DATA is None, reason="real corpora not found in ../shared/data or /work/shared/data"
)


def _copy_rows(source: Path, target: Path, keep, extra: list[dict] | None = None) -> list[dict]:
    """Write the rows of CSV `source` for which keep(index, row) holds, plus `extra` rows, to `target`."""
    with source.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        rows = [row for i, row in enumerate(reader) if keep(i, row)] + (extra or [])
        header = reader.fieldnames
    with target.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _sine(path: Path, seconds: float = 0.2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, 0.1 * np.sin(2 * np.pi * 220 * t), 16000)


# --- EmoDB ---------------------------------------------------------------------------------------------


@needs_data
def test_emodb_metadata_layout_two_real_speakers(tmp_path):
    (tmp_path / "audio").mkdir()
    bad = [
        {"id": "03a01Xx", "audio": "audio/03a01Fa.flac", "text": "x", "emotion": "joyful", "speaker": "03"},
        {"id": "08a01Zz", "audio": "audio/missing.flac", "text": "x", "emotion": "anger", "speaker": "08"},
    ]
    rows = _copy_rows(DATA / "emodb/metadata.csv", tmp_path / "metadata.csv",
                      lambda i, r: r["speaker"] in ("03", "08"), bad)  # fmt: skip
    for row in rows[: -len(bad)]:
        (tmp_path / row["audio"]).symlink_to(DATA / "emodb" / row["audio"])
    with (tmp_path / "metadata.csv").open("a", encoding="utf-8") as f:
        f.write(f"03a01Fa,audio/03a01Fa.flac,{SENTENCES['a01']},happiness,03,M,a01\n")  # a duplicate id

    prepared = read_emodb(tmp_path)
    good = rows[: -len(bad)]
    assert [u.id for u in prepared.rows[: len(good)]] == [r["id"] for r in good]
    assert {u.speaker for u in prepared.rows} == {"03", "08"}
    for u, r in zip(prepared.rows, good, strict=False):
        assert (u.label, u.text, u.audio.name) == (r["emotion"], SENTENCES[r["sentence"]], f"{r['id']}.flac")
    problems = "\n".join(prepared.problems)
    assert "joyful" in problems and "missing.flac" in problems and f"{tmp_path / 'metadata.csv'}:" in problems

    with pytest.raises(CorpusError, match="joyful") as err:
        prepare_corpus("emodb", tmp_path, tmp_path / "m.jsonl", strict=True)
    assert "duplicate id '03a01Fa'" in str(err.value)
    with pytest.raises(ValueError, match="at least 3 speakers"):
        prepare_corpus("emodb", tmp_path, tmp_path / "m.jsonl")


def test_emodb_official_wav_layout(tmp_path):
    for stem in ("03a01Wa", "08b10Tb", "16a05Nc", "11b03Lb", "03a01Xa", "03z99Wa", "bad"):
        _sine(tmp_path / "wav" / f"{stem}.wav")
    prepared = read_emodb(tmp_path)
    got = {u.id: (u.speaker, u.label, u.text) for u in prepared.rows}
    assert got == {
        "03a01Wa": ("03", "anger", SENTENCES["a01"]),
        "08b10Tb": ("08", "sadness", SENTENCES["b10"]),
        "16a05Nc": ("16", "neutral", SENTENCES["a05"]),
        "11b03Lb": ("11", "boredom", SENTENCES["b03"]),
    }
    assert len(prepared.problems) == 3
    assert any("03a01Xa.wav" in p and "unknown emotion letter 'X'" in p for p in prepared.problems)
    assert any("03z99Wa.wav" in p and "sentence code 'z99'" in p for p in prepared.problems)
    paths = prepare_corpus("emodb", tmp_path, tmp_path / "out" / "emodb.jsonl", folds=4).written
    assert [p.name for p in paths] == [f"emodb_fold{k}.jsonl" for k in range(4)]
    utts, problems = read_manifest(tmp_path / "out" / "emodb_fold0.jsonl", strict=True)
    assert {u.split for u in utts if u.speaker == "03"} == {"test"} and utts[0].audio.is_file()


@needs_data
def test_emodb_folds_are_speaker_independent(tmp_path):
    written = prepare_corpus("emodb", DATA / "emodb", tmp_path / "emodb.jsonl").written  # 5 folds by default
    speakers = ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]
    tested = []
    for k, rows in enumerate(written.values()):
        by_split = {s: {u.speaker for u in rows if u.split == s} for s in ("train", "dev", "test")}
        assert by_split["test"] == set(speakers[2 * k : 2 * k + 2])
        assert by_split["dev"] == set(speakers[(2 * k + 2) % 10 : (2 * k + 2) % 10 + 2])
        assert by_split["train"] == set(speakers) - by_split["test"] - by_split["dev"]
        assert len(rows) == 535
        tested += by_split["test"]
    assert sorted(tested) == speakers
    rows = next(iter(written.values()))
    loso = speaker_folds(rows, 10)
    assert [{u.speaker for u in fold if u.split == "test"} for fold in loso] == [{s} for s in speakers]
    with pytest.raises(ValueError, match="3 to 10 folds"):
        speaker_folds(rows, 11)


# --- MELD ----------------------------------------------------------------------------------------------


@needs_data
def test_meld_real_rows_text_only_with_a_fake_audio_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no_ffmpeg"))  # the mp4 is attached without any ffmpeg program
    for split in ("train", "dev", "test"):
        _copy_rows(
            DATA / f"meld/{split}_sent_emo.csv", tmp_path / f"{split}_sent_emo.csv", lambda i, r: i < 100
        )
    with (tmp_path / "train_sent_emo.csv").open("ab") as f:  # a cp1252 line with a bad label, and one good
        f.write(b'9998,It\x92s fine,Ross,happy,positive,900,0,1,1,"00:00:01,000","00:00:02,000"\n')
        f.write(b'9999,It\x92s fine,Ross,joy,positive,900,1,1,1,"00:00:01,000","00:00:02,000"\n')
    _sine(tmp_path / "train" / "dia0_utt0.wav")
    (tmp_path / "train" / "dia0_utt1.mp4").write_bytes(b"")

    prepared = read_meld(tmp_path)
    rows = {u.id: u for u in prepared.rows}
    assert len(rows) == 301 and {u.split for u in rows.values()} == {"train", "dev", "test"}
    assert {u.label for u in rows.values()} <= set(MELD_EMOTIONS) and len(
        {u.label for u in rows.values()}
    ) >= 5
    assert rows["train_dia0_utt0"].audio == (tmp_path / "train" / "dia0_utt0.wav").resolve()
    assert rows["train_dia0_utt1"].audio == (tmp_path / "train" / "dia0_utt1.mp4").resolve()
    assert sum(u.audio is not None for u in rows.values()) == 2
    assert rows["train_dia900_utt1"].text == "It\u2019s fine" and rows["dev_dia0_utt1"].speaker == "Monica"
    assert len(prepared.problems) == 1 and "'happy'" in prepared.problems[0]
    assert "train_sent_emo.csv:" in prepared.problems[0]
    assert not any("ffmpeg" in note for note in prepared.notes)
    with pytest.raises(ValueError, match="official"):
        prepare_corpus("meld", tmp_path, tmp_path / "m.jsonl", folds=5)


# --- EmoBank -------------------------------------------------------------------------------------------


@needs_data
def test_emobank_real_rows_dims_in_range(tmp_path):
    bad = {"id": "bad_row", "split": "train", "V": "5.6", "A": "3", "D": "3", "text": "too happy"}
    rows = _copy_rows(DATA / "emobank/emobank.csv", tmp_path / "emobank.csv", lambda i, r: i < 300, [bad])
    prepared = read_emobank(tmp_path)
    assert len(prepared.rows) == 300 and {u.split for u in prepared.rows} == {"train", "dev", "test"}
    first = prepared.rows[0]
    assert (first.arousal, first.valence, first.dominance) == tuple(float(rows[0][c]) for c in "AVD")
    for u in prepared.rows:
        assert u.audio is None and u.label is None and u.text
        assert all(1 <= x <= 5 for x in (u.arousal, u.valence, u.dominance))
    assert prepared.problems == [
        f"{tmp_path / 'emobank.csv'}:302: V (valence) 5.6 is out of range [1, 5]; row skipped"
    ]
    with pytest.raises(CorpusError, match="5.6 is out of range"):
        prepare_corpus("emobank", tmp_path, tmp_path / "m.jsonl", strict=True)


# --- generic manifest and CLI --------------------------------------------------------------------------


@needs_data
def test_cli_prepare_then_normalise_as_generic_manifest(tmp_path, capsys):
    _copy_rows(DATA / "emobank/emobank.csv", tmp_path / "emobank.csv", lambda i, r: i < 50)
    assert (
        main(["prepare", "--corpus", "emobank", "--root", str(tmp_path), "--out", str(tmp_path / "eb.jsonl")])
        == 0
    )
    assert "50 rows" in capsys.readouterr().out
    args = [
        "prepare",
        "--corpus",
        "manifest",
        "--root",
        str(tmp_path / "eb.jsonl"),
        "--out",
        str(tmp_path / "eb.csv"),
    ]
    assert main(args) == 0
    assert read_manifest(tmp_path / "eb.csv")[0] == read_manifest(tmp_path / "eb.jsonl")[0]
    with (tmp_path / "emobank.csv").open("a") as f:
        f.write("x1,train,0.5,3,3,out of range\n")
    strict = [
        "prepare",
        "--corpus",
        "emobank",
        "--root",
        str(tmp_path),
        "--out",
        str(tmp_path / "m.jsonl"),
        "--strict",
    ]
    assert main(strict) == 2
    assert "0.5 is out of range" in capsys.readouterr().err
