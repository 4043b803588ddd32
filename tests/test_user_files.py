"""Nothing a user owns is overwritten or emptied without asking; `predict --out` writes as it goes and resumes
(issue 32, findings 9, 10, 14)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mamer.cli import main
from mamer.data.manifest import read_manifest
from mamer.workflows.training.loop import train


@pytest.fixture(scope="module")
def run(train_tiny, tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("user_files"))


@pytest.fixture(scope="module")
def clips(tiny_corpus, tmp_path_factory) -> Path:
    """A folder of the tiny corpus's 32 clips."""
    folder = tmp_path_factory.mktemp("clips")
    for u in read_manifest(tiny_corpus)[0]:
        (folder / u.audio.name).write_bytes(u.audio.read_bytes())
    return folder


def broken_folder(root: Path) -> Path:
    folder = root / "broken"
    folder.mkdir()
    for name in ("a.wav", "b.mp3", "c.flac"):
        (folder / name).write_bytes(b"not audio " * 10)
    return folder


def predict(run: Path, *args: str) -> int:
    return main(["predict", str(run), "--asr", "none", *args])


def ids_of(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_a_file_that_is_not_predictions_is_never_replaced(run, tmp_path, capsys):
    """The issue: a folder of 3 broken files replaced a 23,889-byte keep.csv with a 2-byte file."""
    keep = tmp_path / "keep.csv"
    keep.write_text("name,amount\n" + "".join(f"row{i},{i}\n" for i in range(2000)))
    before = keep.read_bytes()
    assert predict(run, "--audio", str(broken_folder(tmp_path)), "--out", str(keep)) == 2
    assert "keep.csv exists and is not a predictions file" in capsys.readouterr().err
    assert keep.read_bytes() == before


def test_an_input_is_never_the_output(run, clips, tmp_path, capsys):
    """`--out t.csv --transcripts t.csv` silently replaced the transcripts."""
    transcripts = tmp_path / "t.csv"
    transcripts.write_text("id,text\n" + "".join(f"{p.stem},so happy\n" for p in sorted(clips.iterdir())[:3]))
    before = transcripts.read_bytes()
    assert (
        predict(run, "--audio", str(clips), "--transcripts", str(transcripts), "--out", str(transcripts)) == 2
    )
    assert "is one of the inputs" in capsys.readouterr().err
    assert transcripts.read_bytes() == before


def test_a_run_that_predicts_nothing_leaves_the_output_as_it_was(run, clips, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    one = sorted(clips.iterdir())[0]
    assert predict(run, "--audio", str(one), "--out", str(out)) == 0
    before = out.read_bytes()
    assert (
        predict(run, "--audio", str(broken_folder(tmp_path)), "--out", str(out)) == 0
    )  # 1 row already there
    assert "3 of 3 inputs skipped" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_a_rerun_predicts_only_what_is_new_and_keeps_the_rest(run, clips, tmp_path, capsys):
    folder = tmp_path / "growing"
    folder.mkdir()
    files = sorted(clips.iterdir())
    for f in files[:4]:
        (folder / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "out.csv"
    assert predict(run, "--audio", str(folder), "--out", str(out)) == 0
    first = out.read_text().splitlines()
    for f in files[4:6]:
        (folder / f.name).write_bytes(f.read_bytes())
    capsys.readouterr()
    assert predict(run, "--audio", str(folder), "--out", str(out)) == 0
    assert "4 input(s) already predicted" in capsys.readouterr().err
    second = out.read_text().splitlines()
    assert second[: len(first)] == first and len(second) == 7  # header + 6 rows, the first four unchanged
    assert (
        predict(run, "--audio", str(folder), "--out", str(out), "--top-k", "2") == 0
    )  # same rows: nothing new
    assert out.read_text().splitlines() == second


def test_an_unfinished_run_with_other_settings_is_refused_until_overwrite(run, clips, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    partial = out.with_name(out.name + ".partial.jsonl")
    partial.write_text(json.dumps({"settings": {"model": "another"}}) + "\n")
    assert predict(run, "--audio", str(clips), "--out", str(out)) == 2
    assert "unfinished run with other settings" in capsys.readouterr().err and not out.exists()
    assert predict(run, "--audio", str(clips), "--out", str(out), "--overwrite") == 0
    assert len(ids_of(out)) == 32 and not partial.exists()


def test_killed_midway_a_rerun_gives_every_input_exactly_once(run, clips, tmp_path):
    """Rows are written as they are made (the partial file grows during the run); after kill -9 a rerun with
    the same --out predicts the rest, and each clip is in the output once."""
    out = tmp_path / "out.jsonl"
    partial = out.with_name(out.name + ".partial.jsonl")
    command = [sys.executable, "-m", "mamer", "predict", str(run), "--asr", "none"]
    command += ["--audio", str(clips), "--out", str(out), "--batch-size", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if partial.exists() and len(partial.read_text().splitlines()) >= 6:  # the header + 5 clips
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert partial.exists() and not out.exists(), "the run ended before it could be killed midway"
    written = len(partial.read_text().splitlines()) - 1
    assert 5 <= written < 32
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{written} input(s) already predicted" in done.stderr
    ids = ids_of(out)
    assert sorted(ids) == sorted(p.stem for p in clips.iterdir()) and len(ids) == len(set(ids)) == 32
    assert not partial.exists()


def test_duplicated_transcript_ids_name_both_rows(run, clips, tmp_path, capsys):
    stem = sorted(clips.iterdir())[0].stem
    transcripts = tmp_path / "t.csv"
    transcripts.write_text(f"id,text\n{stem},so happy\nother,calm\n{stem},so angry\n")
    assert predict(run, "--audio", str(clips), "--transcripts", str(transcripts)) == 2
    err = capsys.readouterr().err
    assert f"t.csv:4: id '{stem}' has another text at line 2" in err
    transcripts.write_text(f"id,text\n{stem},so happy\n{stem},so happy\n")  # the same row twice: harmless
    assert predict(run, "--audio", str(clips / f"{stem}.wav"), "--transcripts", str(transcripts)) == 0


def test_a_self_looping_symlink_is_skipped_by_name(run, clips, tmp_path, capsys):
    folder = tmp_path / "links"
    folder.mkdir()
    first = sorted(clips.iterdir())[0]
    (folder / first.name).write_bytes(first.read_bytes())
    (folder / "loop.wav").symlink_to(folder / "loop.wav")
    assert predict(run, "--audio", str(folder)) == 0
    err = capsys.readouterr().err
    assert "loop.wav: cannot open the audio file (symlink loop)" in err and "1 of 2 inputs skipped" in err


def test_export_never_replaces_a_folders_files_without_overwrite(run, tmp_path, capsys):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "README.md").write_text("my project\n")
    (project / "config.json").write_text('{"mine": true}\n')
    assert main(["export", str(run), "--pretrained", str(project)]) == 2
    assert "already holds config.json, README.md" in capsys.readouterr().err
    assert (project / "README.md").read_text() == "my project\n" and not (
        project / "model.safetensors"
    ).exists()
    assert main(["export", str(run), "--pretrained", str(project), "--overwrite"]) == 0
    assert (project / "model.safetensors").is_file()


def test_training_into_a_trained_run_is_refused_without_resume_or_overwrite(run, tiny_config, tmp_path):
    config = tiny_config(tmp_path, "quickstart", "train.epochs=1", f"run_dir={run}")
    weights = (run / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="already holds a trained run .*--resume .*--overwrite"):
        train(config)
    assert (run / "model.safetensors").read_bytes() == weights
