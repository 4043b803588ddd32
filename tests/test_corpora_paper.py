"""The paper's corpora (MSP-Podcast, IEMOCAP, MELD with media) on tiny fake trees in their on-disk layouts."""

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mamer.cli import main
from mamer.data.audio import AudioLoadError, load_audio
from mamer.data.corpora import CorpusError, prepare_corpus
from mamer.data.corpora.iemocap import read_iemocap
from mamer.data.corpora.meld import read_meld
from mamer.data.corpora.msp_podcast import read_msp_podcast
from mamer.data.manifest import read_manifest


def _sine(path: Path, seconds: float = 0.1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, 0.1 * np.sin(2 * np.pi * 220 * t), 16000)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _by_id(rows) -> dict:
    return {u.id: u for u in rows}


# --- MSP-Podcast ---------------------------------------------------------------------------------------

MSP_HEADER = ["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set"]
MSP_ROWS = [  # file line = index + 2
    ["MSP-PODCAST_0001_0008.wav", "N", "4.2", "4.0", "4.4", "127", "Female", "Train"],
    ["MSP-PODCAST_0002_0011.wav", "A", "5.6", "2.2", "5.0", "128", "Male", "Train"],
    ["MSP-PODCAST_0003_0001.wav", "O", "3.0", "4.6", "3.4", "Unknown", "Unknown", "Development"],
    ["MSP-PODCAST_0004_0002.wav", "X", "2.8", "3.6", "3.2", "310", "Female", "Development"],
    ["MSP-PODCAST_0005_0003.wav", "H", "4.6", "5.8", "4.2", "400", "Male", "Test1"],
    ["MSP-PODCAST_0006_0004.wav", "U", "5.0", "4.4", "4.0", "500", "Female", "Test2"],
    ["MSP-PODCAST_0007_0005.wav", "", "", "", "", "501", "Female", "Test3"],  # labels withheld
    ["MSP-PODCAST_0008_0001.wav", "Q", "4.0", "4.0", "4.0", "600", "Male", "Train"],  # line 9
    ["MSP-PODCAST_0009_0001.wav", "S", "7.5", "4.0", "4.0", "601", "Male", "Train"],  # line 10
    ["MSP-PODCAST_0010_0001.wav", "S", "2.0", "2.0", "2.0", "602", "Male", "Train"],  # line 11, no audio
    ["MSP-PODCAST_0001_0008.wav", "N", "4.2", "4.0", "4.4", "127", "Female", "Train"],  # line 12, duplicate
    ["MSP-PODCAST_0011_0001.wav", "S", "2.2", "1.8", "2.6", "127", "Female", "Development"],  # 127 shared
]


@pytest.fixture
def msp(tmp_path) -> Path:
    """MSP-Podcast as distributed: Labels/labels_consensus.csv, Audios/*.wav, Transcripts/*.txt."""
    root = tmp_path / "MSP-PODCAST-Publish-1.11"
    _write_csv(root / "Labels" / "labels_consensus.csv", MSP_HEADER, MSP_ROWS)
    for row in MSP_ROWS:
        if row[0] != "MSP-PODCAST_0010_0001.wav":
            _sine(root / "Audios" / row[0])
    (root / "Transcripts").mkdir()
    (root / "Transcripts" / "MSP-PODCAST_0001_0008.txt").write_text("Well, that   was\ngreat.\n")
    (root / "Transcripts" / "MSP-PODCAST_0003_0001.txt").write_text("  \n")
    for stem in ("0004_0002", "0005_0003", "0006_0004", "0011_0001"):
        (root / "Transcripts" / f"MSP-PODCAST_{stem}.txt").write_text(f"utterance {stem}")
    return root


def test_msp_podcast_rows_splits_classes_and_dimensions(msp):
    prepared = read_msp_podcast(msp)
    rows = _by_id(prepared.rows)
    got = {uid[12:]: (u.split, u.label, u.speaker) for uid, u in rows.items()}
    assert got == {
        "0001_0008": ("train", "neutral", "127"),
        "0002_0011": ("train", "angry", "128"),
        "0003_0001": ("dev", None, None),  # O: no class, dimensions kept; "Unknown" speaker
        "0004_0002": ("dev", None, "310"),  # X: no class, dimensions kept
        "0005_0003": ("test", "happy", "400"),
        "0006_0004": ("test2", "surprise", "500"),
        "0011_0001": ("dev", "sad", "127"),
    }
    other = rows["MSP-PODCAST_0003_0001"]
    assert (other.arousal, other.valence, other.dominance) == (3.0, 4.6, 3.4)  # EmoAct, EmoVal, EmoDom
    assert rows["MSP-PODCAST_0004_0002"].valence == 3.6
    first = rows["MSP-PODCAST_0001_0008"]
    assert (
        first.text == "Well, that was great."
        and first.audio == (msp / "Audios" / "MSP-PODCAST_0001_0008.wav").resolve()
    )
    assert first.audio.is_absolute() and first.audio.is_file()
    assert rows["MSP-PODCAST_0002_0011"].text is None and rows["MSP-PODCAST_0003_0001"].text is None

    table = msp / "Labels" / "labels_consensus.csv"
    assert prepared.problems == [
        f"{table}:9: unknown EmoClass 'Q' (expected one of A=angry, S=sad, H=happy, U=surprise, F=fear, "
        "D=disgust, C=contempt, N=neutral, O=other, X=no agreement); row skipped",
        f"{table}:10: EmoAct (arousal) 7.5 is out of range [1, 7]; row skipped",
        f"{table}:11: audio file not found: {msp.resolve() / 'Audios' / 'MSP-PODCAST_0010_0001.wav'}; row skipped",
        f"{table}:12: duplicate FileName 'MSP-PODCAST_0001_0008.wav' (first on line 2); row skipped",
    ]
    notes = "\n".join(prepared.notes)
    assert "1 Test3 rows of labels_consensus.csv have no labels (withheld test set): left out" in notes
    assert "1 rows have no transcript file" in notes and "MSP-PODCAST_0002_0011" in notes
    assert "1 rows have an empty transcript" in notes and "MSP-PODCAST_0003_0001" in notes


def test_msp_podcast_prepare_writes_manifest_warns_and_strict_fails(msp, tmp_path):
    result = prepare_corpus("msp_podcast", msp, tmp_path / "out" / "msp.jsonl")  # the alias of msp-podcast
    utts, problems = read_manifest(tmp_path / "out" / "msp.jsonl", strict=True)
    assert problems == [] and len(utts) == 7
    assert _by_id(utts) == _by_id(read_msp_podcast(msp).rows)  # the manifest round-trips every field
    assert len(result.problems) == 4
    assert len(result.warnings) == 1 and "1 speaker(s) appear in more than one split" in result.warnings[0]
    assert "127 (dev, train)" in result.warnings[0]
    with pytest.raises(CorpusError, match="unknown EmoClass 'Q'") as err:
        prepare_corpus("msp-podcast", msp, tmp_path / "strict.jsonl", strict=True)
    assert "7.5 is out of range" in str(err.value) and not (tmp_path / "strict.jsonl").exists()
    with pytest.raises(ValueError, match="official"):
        prepare_corpus("msp-podcast", msp, tmp_path / "m.jsonl", folds=5)


def test_msp_podcast_missing_parts_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels_consensus.csv"):
        read_msp_podcast(tmp_path)
    _write_csv(tmp_path / "Labels" / "labels_consensus.csv", MSP_HEADER, MSP_ROWS[:1])
    with pytest.raises(FileNotFoundError, match="Audios: no .wav files"):
        read_msp_podcast(tmp_path)
    _write_csv(tmp_path / "Labels" / "labels_consensus.csv", MSP_HEADER[:-1], [r[:-1] for r in MSP_ROWS])
    _sine(tmp_path / "Audios" / MSP_ROWS[0][0])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['Split_Set'\]"):
        read_msp_podcast(tmp_path)


def test_cli_prepare_msp_podcast(msp, tmp_path, capsys):
    out = tmp_path / "msp.csv"
    assert main(["prepare", "--corpus", "msp-podcast", "--root", str(msp), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"{out}: 7 rows (train 2 / dev 3 / test 1 / test2 1); audio 7, text 5, both 5" in captured.out
    assert "warning: " in captured.err and "127 (dev, train)" in captured.err
    assert "unknown EmoClass 'Q'" in captured.err and "4 problem(s)" in captured.err
    assert len(read_manifest(out, strict=True)[0]) == 7
    strict = ["prepare", "--corpus", "msp-podcast", "--root", str(msp), "--out", str(out), "--strict"]
    assert main(strict) == 2
    assert "mamer prepare: error: 4 problem(s) in corpus" in capsys.readouterr().err


# --- IEMOCAP -------------------------------------------------------------------------------------------

EVALUATION_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def _turn(uid: str, code: str, vad: str, start: float) -> str:
    """An EmoEvaluation block: the consensus line, then evaluator lines as in the release."""
    return (
        f"[{start:.4f} - {start + 2:.4f}]\t{uid}\t{code}\t[{vad}]\n"
        "C-E2:\tNeutral;\t()\nC-E3:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n"
    )


def _dialog(session: Path, dialog: str, turns: list[tuple[str, str, str]], texts: dict[str, str]) -> None:
    """One dialog: its EmoEvaluation and transcription files and a wav per turn (unless the suffix is 'nowav')."""
    evaluation = EVALUATION_HEADER
    for i, (suffix, code, vad) in enumerate(turns):
        evaluation += _turn(f"{dialog}_{suffix.removesuffix('-nowav')}", code, vad, 6.2901 + 4 * i)
        if not suffix.endswith("-nowav"):
            _sine(session / "sentences" / "wav" / dialog / f"{dialog}_{suffix}.wav")
    (session / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
    (session / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text(evaluation)
    lines = [
        f"{dialog}_{s} [{6.29 + 4 * i:08.4f}-{8.29 + 4 * i:08.4f}]: {t}"
        for i, (s, t) in enumerate(texts.items())
    ]
    (session / "dialog" / "transcriptions").mkdir(parents=True, exist_ok=True)
    (session / "dialog" / "transcriptions" / f"{dialog}.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def iemocap(tmp_path) -> Path:
    """IEMOCAP_full_release with 5 sessions: an improvised dialog each, a scripted one in session 1, and
    faulty lines in session 2."""
    release = tmp_path / "IEMOCAP_full_release"
    for k in range(1, 6):
        session = release / f"Session{k}"
        turns = [("F000", "neu", "2.5000, 2.5000, 2.5000"), ("M001", "exc", "4.0000, 3.5000, 3.0000"),
                 ("F002", "fru", "2.0000, 3.5000, 4.0000")]  # fmt: skip
        texts = {"F000": "Excuse me.", "M001": "Do you have your forms?", "F002": "I [LAUGHTER] waited."}
        if k == 2:
            turns += [("M003", "zzz", "2.5, 2.5, 2.5"), ("F004", "sad", "6.0000, 2.0000, 2.0000"),
                      ("M005-nowav", "ang", "2.0, 4.0, 4.0"), ("F006", "hap", "4.5, 3.0, 3.0")]  # fmt: skip
        _dialog(session, f"Ses0{k}F_impro01", turns, texts)
    script = [("F000", "sad", "1.5000, 2.0000, 2.5000"), ("M001", "xxx", "3.0000, 3.0000, 3.0000")]
    _dialog(release / "Session1", "Ses01M_script01_1", script, {"F000": "Oh.", "M001": "Right."})
    return release


def test_iemocap_rows_classes_dimensions_speakers_and_text(iemocap):
    prepared = read_iemocap(iemocap.parent)  # the parent of IEMOCAP_full_release is accepted too
    rows = _by_id(prepared.rows)
    assert len(rows) == 5 * 3 + 2 + 1
    neutral = rows["Ses01F_impro01_F000"]
    assert (neutral.label, neutral.speaker, neutral.text, neutral.split) == (
        "neutral",
        "Ses01_F",
        "Excuse me.",
        "",
    )
    assert (
        neutral.audio == (iemocap / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav").resolve()
    )
    excited = rows["Ses03F_impro01_M001"]
    assert (excited.label, excited.speaker) == ("happy", "Ses03_M")  # exc merged into happy
    frustrated = rows["Ses04F_impro01_F002"]
    assert frustrated.label is None and frustrated.text == "I [LAUGHTER] waited."
    assert (frustrated.valence, frustrated.arousal, frustrated.dominance) == (2.0, 3.5, 4.0)  # [V, A, D]
    scripted = rows["Ses01M_script01_1_F000"]
    assert (scripted.label, scripted.speaker, scripted.text) == ("sad", "Ses01_F", "Oh.")
    assert rows["Ses01M_script01_1_M001"].label is None and rows["Ses01M_script01_1_M001"].arousal == 3.0
    assert rows["Ses02F_impro01_F006"].label == "happy" and rows["Ses02F_impro01_F006"].text is None

    evaluation = iemocap / "Session2/dialog/EmoEvaluation/Ses02F_impro01.txt"
    wav = iemocap / "Session2/sentences/wav/Ses02F_impro01/Ses02F_impro01_M005.wav"
    assert prepared.problems == [  # header 2 lines + 5 lines per turn: turn i is on line 3 + 5 i
        f"{evaluation}:18: unknown emotion code 'zzz' (expected one of ['neu', 'hap', 'exc', 'ang', 'sad', "
        "'fru', 'sur', 'fea', 'dis', 'oth', 'xxx']); row skipped",
        f"{evaluation}:23: valence 6.0000 is out of range [1, 5]; row skipped",
        f"{evaluation}:28: audio file not found: {wav}; row skipped",
    ]
    assert prepared.notes == [
        f"{evaluation}:33: no (or an empty) transcript for 'Ses02F_impro01_F006'; row kept audio-only"
    ]


def test_iemocap_leave_one_session_out_folds(iemocap, tmp_path):
    result = prepare_corpus("iemocap", iemocap, tmp_path / "iemocap.jsonl")  # 5 folds by default
    assert [p.name for p in result.written] == [f"iemocap_fold{k}.jsonl" for k in range(5)]
    assert result.warnings == []
    for k in range(5):
        utts, _ = read_manifest(tmp_path / f"iemocap_fold{k}.jsonl", strict=True)
        sessions = {s: {u.speaker[:5] for u in utts if u.split == s} for s in ("train", "dev", "test")}
        test, dev = f"Ses0{k + 1}", f"Ses0{(k + 1) % 5 + 1}"
        assert sessions == {
            "test": {test},
            "dev": {dev},
            "train": {f"Ses0{i}" for i in range(1, 6)} - {test, dev},
        }
        assert len(utts) == 18
    with pytest.raises(ValueError, match="choose 3 to 5 folds for 5 sessions"):
        prepare_corpus("iemocap", iemocap, tmp_path / "x.jsonl", folds=10)
    with pytest.raises(CorpusError, match="unknown emotion code 'zzz'"):
        prepare_corpus("iemocap", iemocap, tmp_path / "x.jsonl", strict=True)


def test_iemocap_not_found_names_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="Session1 ... Session5"):
        read_iemocap(tmp_path)


# --- MELD media ----------------------------------------------------------------------------------------

MELD_HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
               "Season", "Episode", "StartTime", "EndTime"]  # fmt: skip


def _meld_row(n: int, text: str, speaker: str, emotion: str, dia: int, utt: int) -> list[str]:
    return [
        str(n),
        text,
        speaker,
        emotion,
        "neutral",
        str(dia),
        str(utt),
        "1",
        "1",
        "00:00:01,000",
        "00:00:02,000",
    ]


@pytest.fixture
def meld(tmp_path) -> Path:
    """MELD CSVs with MELD.Raw media folders: mp4 video, extracted wav beside it, flac, and an empty text."""
    root = tmp_path / "MELD.Raw"
    _write_csv(root / "train_sent_emo.csv", MELD_HEADER, [
        _meld_row(1, "Oh my God!", "Ross", "surprise", 0, 0),
        _meld_row(2, "Hi.", "Rachel", "joy", 0, 1),
        _meld_row(3, "  ", "Ross", "neutral", 0, 2),  # empty transcript, has audio: audio only
        _meld_row(4, "", "Ross", "neutral", 0, 3),  # empty transcript, no audio: skipped
    ])  # fmt: skip
    _write_csv(root / "dev_sent_emo.csv", MELD_HEADER, [_meld_row(1, "No.", "Ross", "anger", 0, 0)])
    _write_csv(root / "test_sent_emo.csv", MELD_HEADER, [_meld_row(1, "Yes.", "Monica", "fear", 0, 0)])
    (root / "train" / "train_splits").mkdir(parents=True)
    for stem in ("dia0_utt0", "dia0_utt1"):
        (root / "train" / "train_splits" / f"{stem}.mp4").write_bytes(b"not really a video")
    _sine(root / "train" / "train_splits" / "dia0_utt1.wav")  # extracted audio beside the video wins
    _sine(root / "train" / "dia0_utt2.wav")
    _sine(root / "dev_splits_complete" / "dia0_utt0.flac")
    (root / "output_repeated_splits_test").mkdir()
    (root / "output_repeated_splits_test" / "dia0_utt0.mp4").write_bytes(b"not really a video")
    return root


@pytest.fixture
def no_ffmpeg(tmp_path, monkeypatch) -> None:
    (tmp_path / "empty_bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty_bin"))


def test_meld_media_rows_attach_mp4_without_ffmpeg(meld, no_ffmpeg, tmp_path):
    prepared = read_meld(meld)
    rows = _by_id(prepared.rows)
    video = (meld / "train/train_splits/dia0_utt0.mp4").resolve()
    assert rows["train_dia0_utt0"].audio == video and rows["train_dia0_utt0"].text == "Oh my God!"
    assert rows["train_dia0_utt1"].audio == (meld / "train/train_splits/dia0_utt1.wav").resolve()  # wav wins
    assert rows["train_dia0_utt2"].audio.name == "dia0_utt2.wav" and rows["train_dia0_utt2"].text is None
    assert rows["dev_dia0_utt0"].audio.name == "dia0_utt0.flac"
    assert rows["test_dia0_utt0"].audio.name == "dia0_utt0.mp4"
    assert "train_dia0_utt3" not in rows
    assert prepared.problems == [
        f"{meld / 'train_sent_emo.csv'}:5: empty transcript and no audio file for dia0_utt3; row skipped"
    ]
    assert prepared.notes == ["1 MELD rows have an empty transcript (e.g. train_dia0_utt2): audio only"]
    with pytest.raises(AudioLoadError, match=r"dia0_utt0\.mp4: not an audio file"):
        load_audio(video, 16000)  # the fixture's mp4 is not a real video: named, with the reason
    result = prepare_corpus("meld", meld, tmp_path / "meld.jsonl")
    assert len(result.warnings) == 1 and "Ross (dev, train)" in result.warnings[0]


def test_meld_mp4_audio_decodes_with_pyav(meld, no_ffmpeg):
    av = pytest.importorskip("av")
    video = meld / "train/train_splits/dia0_utt0.mp4"
    t = np.arange(16000) / 16000
    pcm = np.round(0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)[None]
    with av.open(str(video), "w") as out:  # a real MELD-like mp4: a video track and an AAC audio track
        audio = out.add_stream("aac", rate=16000)
        audio.layout = "mono"
        picture = out.add_stream("mpeg4", rate=10)
        picture.width, picture.height, picture.pix_fmt = 32, 32, "yuv420p"
        black = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        for packet in [*(q for _ in range(10) for q in picture.encode(black)), *picture.encode(None)]:
            out.mux(packet)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*audio.encode(frame), *audio.encode(None)]:
            out.mux(packet)
    assert _by_id(read_meld(meld).rows)["train_dia0_utt0"].audio == video.resolve()
    wave = load_audio(video, 8000)
    assert wave.dtype == np.float32 and abs(len(wave) - 8000) < 800 and 0.1 < np.abs(wave).max() < 0.5
