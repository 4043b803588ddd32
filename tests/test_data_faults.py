"""Fault injection: a corpus with every kind of bad row, and broken cache shards and checkpoints.

Each fault must end in a named problem (file:line, or the broken file) or a row skipped with its reason, the
good rows kept, and a message from `mamer`, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import TINY, speechlike
from mamer.atomic import atomic_write
from mamer.checkpoint import CheckpointError, load_model
from mamer.cli import main
from mamer.config import load_config
from mamer.data.cache import CacheError, load_split
from mamer.data.manifest import read_manifest
from mamer.workflows.inference.batch import make_jobs
from mamer.workflows.training.loop import train

GOOD_AUDIO = "good"
# (id, audio file or None, text, label, split); labels "NaN" become a JSON NaN
ROWS = [
    ("t0", GOOD_AUDIO, "I am so angry about this", "angry", "train"),
    ("t1", GOOD_AUDIO, "This is outrageous and I am furious", "angry", "train"),
    ("t2", GOOD_AUDIO, "What a lovely sunny day", "happy", "train"),
    ("t3", GOOD_AUDIO, "I am so happy to see you", "happy", "train"),
    ("t4", GOOD_AUDIO, "You never listen to me", "Angry ", "train"),  # line 5: a typo of a class
    ("t5", GOOD_AUDIO, "The meeting starts at noon", "NaN", "train"),  # line 6: a missing value
    ("t6", "zero.wav", "I feel wonderful today", "happy", "train"),  # line 7: a 0-byte file
    ("t7", GOOD_AUDIO, "Le café est froid", "angry", "train"),  # line 8: written as cp1252
    ("d0", GOOD_AUDIO, "I hate waiting in line", "angry", "dev"),
    ("d1", GOOD_AUDIO, "This is the best gift ever", "happy", "dev"),
    ("d2", "loop.wav", "Stop shouting at me", "angry", "dev"),  # line 11: a symlink loop, with text
    ("d3", "loop.wav", None, "angry", "dev"),  # line 12: a symlink loop, nothing else
    ("s0", GOOD_AUDIO, "Leave me alone right now", "angry", "test"),
    ("s1", GOOD_AUDIO, "We won the championship", "happy", "test"),
    ("s2", "corrupt.wav", "I cannot believe you did that", "angry", "test"),  # line 15: corrupt audio
    ("s3", GOOD_AUDIO, "Wow I did not expect that", "surprise", "test"),  # line 16: a class train lacks
    ("s4", GOOD_AUDIO, "Everything is fine", "happy", "test"),
]


def write_corpus(folder: Path) -> Path:
    """Real synthesised audio, the broken files, and the manifest (one line in cp1252)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (uid, audio, text, label, split) in enumerate(ROWS):
        if audio == GOOD_AUDIO:
            audio = f"{uid}.wav"
            sf.write(folder / audio, speechlike(0.6 + 0.1 * (i % 4), seed=i), 16000)
        row = {"id": uid, "audio": audio, "text": text, "label": float("nan") if label == "NaN" else label,
               "split": split}  # fmt: skip
        lines.append(json.dumps(row, ensure_ascii=False).encode("cp1252" if uid == "t7" else "utf-8"))
    (folder / "zero.wav").write_bytes(b"")
    (folder / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is no audio at all")
    os.symlink(folder / "loop.wav", folder / "loop2.wav")
    os.symlink(folder / "loop2.wav", folder / "loop.wav")
    manifest = folder / "manifest.jsonl"
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    return manifest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("bad_corpus"))


def overrides(manifest: Path, folder: Path) -> list[str]:
    return [f"data.manifest={manifest}", f"data.features={folder / 'features'}", f"run_dir={folder / 'run'}",
            "data.audio_encoder=logmel", "data.text_encoder=hashed", "train.epochs=1", *TINY]  # fmt: skip


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory) -> Path:
    """A tiny model trained on the bad corpus as it is (umask 022, to check the modes of what it writes)."""
    folder = tmp_path_factory.mktemp("bad_run")
    old = os.umask(0o022)
    try:
        return train(load_config("quickstart", overrides(corpus, folder)))
    finally:
        os.umask(old)


def test_prepare_names_every_bad_row_and_keeps_the_good(corpus, tmp_path, capsys):
    out = tmp_path / "prepared.jsonl"
    assert main(["prepare", "--corpus", "manifest", "--root", str(corpus), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    expected = {
        5: "label 'Angry ' differs from the 'train' split's class 'angry' only in case or spaces",
        6: "label NaN read as a missing value; row kept without a class",
        7: "zero.wav: empty file (0 bytes); row kept as text only",
        8: "not UTF-8 (byte 0xe9 at column",
        11: "loop.wav: cannot be read (symlink loop); row kept as text only",
        12: "loop.wav: cannot be read (symlink loop), and the row has no text; row skipped",
        15: "corrupt.wav: not an audio file",
        16: "class 'surprise' (test) is not in the train split",
    }
    for line, message in expected.items():
        assert any(f"{corpus}:{line}: " in m and message in m for m in err.splitlines()), (line, err)
    assert "Traceback" not in err and "7 problem(s)" in err

    rows = {u.id: u for u in read_manifest(out, strict=True)[0]}
    assert set(rows) == {uid for uid, *_ in ROWS} - {"d3"}
    assert {u.label for u in rows.values()} == {"angry", "happy", "surprise", None}
    assert rows["t4"].label is None and rows["t5"].label is None and rows["t7"].text == "Le café est froid"
    assert [uid for uid, u in rows.items() if u.audio is None] == ["t6", "d2", "s2"]
    assert all(rows[uid].text for uid in ("t6", "d2", "s2"))

    assert (
        main(["prepare", "--corpus", "manifest", "--root", str(corpus), "--out", str(out), "--strict"]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("mamer prepare: error: 7 problem(s) in corpus") and "Traceback" not in err


def test_csv_manifest_and_transcripts_survive_a_non_utf8_byte(tmp_path, caplog):
    csv = tmp_path / "m.csv"
    csv.write_bytes(
        b"id,text,label,split\na,hello there,happy,train\nb,caf\xe9 au lait,sad,train\nc,ok,,test\n"
    )
    rows, problems = read_manifest(csv)
    assert [u.text for u in rows] == ["hello there", "café au lait", "ok"]
    assert problems == [f"{csv}:3: not UTF-8 (byte 0xe9 at column 6); the line was read as cp1252: "
                        "'b,café au lait,sad,train'"]  # fmt: skip

    sf.write(tmp_path / "x.wav", speechlike(0.5), 16000)
    transcripts = tmp_path / "t.csv"
    transcripts.write_bytes(b"file,text\nx.wav,na\xefve\n")
    with caplog.at_level(logging.WARNING):
        jobs = make_jobs(tmp_path / "x.wav", transcripts=transcripts)
    assert jobs[0].text == "naïve" and f"{transcripts}:2: not UTF-8" in caplog.text


def test_unreadable_audio_keeps_its_text_through_training(run, corpus):
    """Trained on the raw manifest: the corrupt file fails at extraction, its row stays as text; the typo and
    the NaN are no classes; the test-only class is left out of the scores, and n counts what is scored."""
    model, meta = load_model(run)
    assert meta.label_space.labels == ["angry", "happy"]
    test = load_split(meta.features, "test")
    assert (
        test.ids == ["s0", "s1", "s2", "s3", "s4"]
        and test.audio_of(2) is None
        and test.text_of(2) is not None
    )
    assert [(p["id"], p["kept"]) for p in test.partial] == [("s2", "text")]
    assert "corrupt.wav" in test.partial[0]["reason"]
    skipped = (Path(meta.features) / "skipped.jsonl").read_text()
    assert '"kept": "text"' in skipped and "corrupt.wav" in skipped

    assert main(["evaluate", str(run)]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["n"] == {"audio": 3, "text": 4, "audio+text": 3}  # s3 (surprise) is not scored
    assert report["unscored"] == {
        "rows": 1,
        "why": {"class 'surprise', which the model was not trained on": 1},
    }
    assert "Not scored (not counted in n): 1 row(s)" in (run / "report.md").read_text()


def test_written_files_respect_the_umask(run, tmp_path):
    _, meta = load_model(run)
    shards = list(Path(meta.features).parent.glob("*/*.safetensors"))
    written = [
        run / "model.safetensors",
        run / "last" / "trainer_state.pt",
        run / "last" / "heads.safetensors",
    ]
    for path in [*written, *shards]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "x.json", lambda p: p.write_text("{}"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o640


def truncate(path: Path, keep: int = 40) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def copy_run(run: Path, folder: Path) -> Path:
    """A copy of the run and of its feature cache, the copy's model.json pointing at the copied cache."""
    _, meta = load_model(run)
    features = Path(meta.features)
    shutil.copytree(features.parent, folder / "features")
    shutil.copytree(run, folder / "run")
    description = json.loads((folder / "run" / "model.json").read_text())
    description["features"] = str(folder / "features" / features.name)
    (folder / "run" / "model.json").write_text(json.dumps(description))
    return folder / "run"


def test_truncated_checkpoint_is_named_by_every_command(run, tmp_path, capsys, monkeypatch):
    copy = copy_run(run, tmp_path)
    truncate(copy / "model.safetensors")
    with pytest.raises(
        CheckpointError, match="model.safetensors: the model's weights is truncated or corrupt"
    ):
        load_model(copy)
    uvicorn = pytest.importorskip("uvicorn")
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("served a broken model"))
    commands = [["evaluate", str(copy)], ["predict", str(copy), "--text", "I am furious"],
                ["export", str(copy), "--pretrained", str(tmp_path / "out")], ["serve", str(copy)]]  # fmt: skip
    for command in commands:
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert f"{copy / 'model.safetensors'}: the model's weights is truncated or corrupt" in err, command

    (copy / "model.json").write_text('{"config": {"na')
    assert main(["predict", str(copy), "--text", "I am furious"]) == 2
    assert f"{copy / 'model.json'}: the model description is truncated or corrupt" in capsys.readouterr().err


def test_truncated_trainer_state_is_named_on_resume(run, corpus, tmp_path, capsys):
    copy = copy_run(run, tmp_path)
    truncate(copy / "last" / "trainer_state.pt", 100)
    args = ["train", "--config", "quickstart", "--resume", *overrides(corpus, tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{copy / 'last' / 'trainer_state.pt'}: the trainer state is truncated or corrupt" in err
    assert "train again without --resume" in err and "Traceback" not in err


def test_truncated_shard_is_named_then_repaired_by_extract(run, corpus, tmp_path, capsys, caplog):
    copy = copy_run(run, tmp_path)
    _, meta = load_model(copy)
    before = load_split(meta.features, "test")
    text_of_s0 = before.text_of(0).clone()
    shard = (
        Path(meta.features).parent
        / json.loads((Path(meta.features) / "test.json").read_text())["text"]["store"]
    )
    broken = sorted(shard.glob("*.safetensors"))[0]
    truncate(broken, 1000)
    with pytest.raises(CacheError, match="truncated or corrupt"):
        load_split(meta.features, "test")
    assert main(["evaluate", str(copy)]) == 2
    err = capsys.readouterr().err
    assert f"{broken}: the feature shard is truncated or corrupt" in err and "mamer extract" in err

    with caplog.at_level(logging.WARNING):
        args = ["extract", "--manifest", str(corpus), "--out", str(tmp_path / "features")]
        assert main([*args, "--audio-encoder", "logmel", "--text-encoder", "hashed"]) == 0
    assert f"{broken}: truncated or corrupt" in caplog.text and "encoded again" in caplog.text
    assert "kept with one modality" in capsys.readouterr().out
    after = load_split(meta.features, "test")
    assert after.ids == before.ids and np.allclose(after.text_of(0).numpy(), text_of_s0.numpy())
    assert main(["evaluate", str(copy)]) == 0


def test_damaged_shard_data_behind_an_intact_header_is_named(run, corpus, tmp_path, capsys):
    """Bytes of a shard's features overwritten (its header intact): reading that row names the shard, and
    deleting it as the message says lets `extract` encode it again."""
    copy = copy_run(run, tmp_path)
    _, meta = load_model(copy)
    index = json.loads((Path(meta.features) / "test.json").read_text())
    store = Path(meta.features).parent / index["text"]["store"]
    damaged = store / index["text"]["files"][0]
    raw = bytearray(damaged.read_bytes())
    header = int.from_bytes(raw[:8], "little")
    start, end = (8 + header + k for k in json.loads(raw[8 : 8 + header])["features"]["data_offsets"])
    raw[start:end] = b"\xff" * (end - start)  # float16 NaN in every row
    damaged.write_bytes(bytes(raw))
    assert main(["evaluate", str(copy)]) == 2
    err = capsys.readouterr().err
    assert f"{damaged}: the feature shard is truncated or corrupt" in err and "NaN or infinite" in err
    assert "delete it, then run `mamer extract`" in err and "Traceback" not in err

    damaged.unlink()
    args = ["extract", "--manifest", str(corpus), "--out", str(tmp_path / "features")]
    assert main([*args, "--audio-encoder", "logmel", "--text-encoder", "hashed"]) == 0
    assert main(["evaluate", str(copy)]) == 0

    raw = bytearray(damaged.read_bytes())  # now the offsets: caught when the shard is opened
    header = int.from_bytes(raw[:8], "little")
    start, end = (8 + header + k for k in json.loads(raw[8 : 8 + header])["offsets"]["data_offsets"])
    raw[start:end] = b"\xff" * (end - start)
    damaged.write_bytes(bytes(raw))
    with pytest.raises(CacheError, match="its offsets do not run from 0 to its"):
        load_split(meta.features, "test")


def test_predict_transcripts_report_unmatched_rows_missing_texts_and_shared_stems(tmp_path, caplog):
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("x.wav", "x.flac", "y.wav", "z.wav"):
        sf.write(folder / name, speechlike(0.5), 16000)
    transcripts = tmp_path / "t.jsonl"
    rows = [{"file": "x.flac", "text": "I am so happy"}, {"id": "y", "text": "Leave me alone"},
            {"id": "ghost", "text": "nobody has this file"}, {"file": "z.wav", "text": ""}]  # fmt: skip
    transcripts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with caplog.at_level(logging.WARNING):
        jobs = make_jobs(folder, transcripts=transcripts)
    assert [(j.id, j.text) for j in jobs] == [
        ("x.flac", "I am so happy"), ("x.wav", None), ("y", "Leave me alone"), ("z", None)
    ]  # fmt: skip
    assert "shared by several audio files (x)" in caplog.text and "x.flac, x.wav" in caplog.text
    assert (
        f"{transcripts}: 1 row(s) match no audio file under {folder} and are not used: ghost" in caplog.text
    )
    assert f"2 audio file(s) have no row in {transcripts} and are read from audio alone" in caplog.text
    assert f"{transcripts}:4: no text; row skipped" in caplog.text


def test_predict_empty_text_is_said_in_cli_words(capsys):
    assert main(["predict", "--text", ""]) == 2
    err = capsys.readouterr().err
    assert "--text is empty" in err and "text=None" not in err


def test_train_rows_outside_data_labels_are_counted_in_a_warning(tiny_config, tmp_path, caplog):
    """`data.labels` without `sad`: the sad train rows train without a class, and the run says how many."""
    from mamer.data.extract import prepare_features
    from mamer.workflows.training.session import make_loaders

    config = tiny_config(tmp_path, "quickstart", "data.labels=[angry,happy,neutral]")
    train_rows = [u for u in read_manifest(Path(config.data.manifest))[0] if u.split == "train"]
    sad = sum(u.label == "sad" for u in train_rows)
    with caplog.at_level(logging.WARNING):
        loaders = make_loaders(config, prepare_features(config, progress=False))
    assert loaders.targets.labels == ["angry", "happy", "neutral"] and sad > 0
    assert (
        f"{sad} train rows have a class outside data.labels (angry, happy, neutral) and train without a class: "
        f"sad {sad}" in caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        make_loaders(tiny_config(tmp_path, "quickstart"), prepare_features(config, progress=False))
    assert "outside data.labels" not in caplog.text
