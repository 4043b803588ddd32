"""`mamer predict --engine ray` on a local Ray of 2 CPUs: the single-process rows, every bad file named, each
input exactly once after a kill -9 of the driver and a rerun (issue 36).

Ray starts once for the module (a few seconds) and every job here is small; the tiny trained model (log-mel +
hashed text) keeps the actors quick to load.
"""

from __future__ import annotations

import json
import logging
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from mamer.cli import main
from mamer.data.audio import resample
from mamer.data.manifest import read_manifest
from mamer.encoders import registry
from mamer.workflows.inference.batch import Options, make_jobs, predict_jobs
from mamer.workflows.inference.recognizer import EmotionRecognizer
from mamer.workflows.scale.worker import ShardPredictor
from test_audio_decode import encode
from test_corpora import DATA

ray = pytest.importorskip("ray")
from mamer.workflows.scale.engine import RayOptions, predict_on_ray  # noqa: E402

SR = 16000
BROKEN = {"empty.wav": "empty file (0 bytes)", "noise.mp3": "not an audio file", "cut.flac": "",
          "playlist.wav": "not an audio file"}  # fmt: skip
SAID = "I am so happy today"
NO_ASR = {"transcribe": False, "language": None, "segment": "auto", "window": 8.0, "hop": 4.0, "top_k": None,
          "labels": None, "embeddings": False}  # fmt: skip


@pytest.fixture(scope="module")
def run(train_tiny, tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("ray_run"))


@pytest.fixture(scope="module")
def clips(tiny_corpus, tmp_path_factory) -> Path:
    """28 inputs: 20 corpus clips as WAV, FLAC, MP3 and Ogg/Opus (some in a sub-folder), one 45 s recording
    (a timeline), four bad files, and a tar shard of three members (one with a transcript, one broken)."""
    folder = tmp_path_factory.mktemp("ray_clips")
    (folder / "sub").mkdir()
    utterances, _ = read_manifest(tiny_corpus)
    formats = [(".wav", None), (".flac", None), (".mp3", "libmp3lame"), (".ogg", "libopus")]
    for i, u in enumerate(utterances[:20]):
        wave, sr = sf.read(u.audio, dtype="float32")
        suffix, codec = formats[i % 4]
        target = folder / ("sub" if i % 3 == 0 else "") / f"{u.id}{suffix}"
        if codec:
            encode(target, wave, sr, codec, 48000 if codec == "libopus" else 44100)
        elif suffix == ".flac":  # at 16 kHz, as EmoDB's: a member of the shard decodes to the same samples
            sf.write(target, resample(wave, sr, SR), SR)
        else:
            sf.write(target, wave, sr)
    pause = np.zeros(SR // 2, np.float32)
    long = np.concatenate(
        [x for u in utterances[20:32] for x in (sf.read(u.audio, dtype="float32")[0], pause)]
    )
    sf.write(folder / "meeting.flac", long, SR)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "noise.mp3").write_bytes(np.random.default_rng(0).bytes(3000))
    (folder / "cut.flac").write_bytes((folder / f"{utterances[1].id}.flac").read_bytes()[:300])
    (folder / "playlist.wav").write_bytes(f"ffconcat version 1.0\nfile {folder / 'meeting.flac'}\n".encode())
    first, third = folder / f"{utterances[1].id}.flac", folder / "sub" / f"{utterances[3].id}.ogg"
    (folder / "said.txt").write_text(SAID)
    with tarfile.open(folder / "shard-000.tar", "w") as tar:  # members named as the files they copy
        tar.add(first, first.name)
        tar.add(third, third.name)
        tar.add(folder / "said.txt", f"{utterances[3].id}.txt")  # the second member's transcript
        tar.add(folder / "noise.mp3", "m3.mp3")
    (folder / "said.txt").unlink()
    return folder


@pytest.fixture(scope="module")
def cluster() -> str:
    """A local Ray of 2 CPUs for the module; its address, for a second driver to join."""
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(run, clips, cluster, tmp_path_factory):
    """One uninterrupted Ray run over the clips: (output folder, summary)."""
    out = tmp_path_factory.mktemp("ray_out") / "out"
    summary = predict_on_ray(run, clips, out, Options(), RayOptions(actors=2, shard_size=4, progress=False))
    return out, summary


def single_process(run: Path, audio: Path, text: str | None = None) -> tuple[dict, dict]:
    """`mamer predict`'s own rows (by file and segment start) and skipped files (by file)."""
    rows, skipped = predict_jobs(EmotionRecognizer.load(run), make_jobs(audio, text), progress=False)
    return {(r["file"], r.get("start")): r for r in rows}, dict(skipped)


def read_rows(out: Path) -> list[dict]:
    return pq.read_table(out / "predictions").to_pylist()


def assert_exactly_once(out: Path, inputs: int) -> None:
    predicted = {r["input_row"] for r in read_rows(out)}
    failed = pq.read_table(out / "errors").column("input_row").to_pylist()
    assert len(failed) == len(set(failed)) and not predicted & set(failed)
    assert predicted | set(failed) == set(range(inputs))


def same_prediction(ray_row: dict, row: dict) -> None:
    assert (ray_row["view"], ray_row["label"]) == (row["view"], row["label"])
    assert list(ray_row["probabilities"]) == list(row["probabilities"])
    np.testing.assert_allclose(
        list(ray_row["probabilities"].values()), list(row["probabilities"].values()), atol=1e-6
    )


def test_ray_rows_equal_the_single_process_rows_and_every_bad_file_is_named(run, clips, reference):
    out, summary = reference
    expected, skipped = single_process(run, clips)
    rows = read_rows(out)
    by_source = {(r["source"], r["start"]): r for r in rows}
    assert len(rows) == len(by_source) == len(expected) + 2  # the files' rows and two members' rows
    for (file, start), row in expected.items():  # every file row, segments of the 45 s recording included
        same_prediction(by_source[(file, start)], row)
        assert by_source[(file, start)]["end"] == row.get("end")
    assert sum(1 for r in rows if r["source"].endswith("meeting.flac")) > 1  # a timeline: several segments
    # members are decoded from the shard's bytes: the rows of the same audio read as files
    shard = clips / "shard-000.tar"
    members = {r["source"].removeprefix(f"{shard}:"): r for r in rows if r["source"].startswith(f"{shard}:")}
    flac, ogg = sorted(members)
    same_prediction(members[flac], expected[(str(clips / flac), None)])
    said = single_process(run, clips / "sub" / ogg, SAID)[0][(str(clips / "sub" / ogg), None)]
    same_prediction(members[ogg], said)
    assert members[ogg]["view"] == "audio+text" and members[ogg]["id"] == Path(ogg).stem
    # the bad files: the single-process reasons, each named once; the broken member too
    errors = {e["source"]: e["error"] for e in pq.read_table(out / "errors").to_pylist()}
    assert {Path(s).name for s in errors} == set(BROKEN) | {"shard-000.tar:m3.mp3"}
    for source, reason in skipped.items():
        assert errors[source] == reason
    assert errors[f"{shard}:m3.mp3"].startswith("not an audio file")  # its reason for the file noise.mp3 too
    assert_exactly_once(out, 28)
    assert (summary.files, summary.errors, summary.shards_written, summary.shards_failed) == (28, 5, 7, [])
    assert summary.audio_seconds > 45 and summary.total["rows"] == len(rows)
    assert summary.shards_by_node == {ray.get_runtime_context().get_node_id(): 7}  # one node here


def test_a_rerun_of_a_finished_folder_does_nothing(run, clips, reference):
    out, _ = reference
    before = {p: p.stat().st_mtime_ns for p in (out / "predictions").iterdir()}
    summary = predict_on_ray(run, clips, out, Options(), RayOptions(actors=2, shard_size=4, progress=False))
    assert (summary.shards_written, summary.shards_skipped, summary.files) == (0, 7, 0)
    assert {p: p.stat().st_mtime_ns for p in (out / "predictions").iterdir()} == before


def test_kill_9_of_the_driver_then_a_rerun_gives_each_input_exactly_once(
    run, clips, cluster, reference, tmp_path
):
    """A driver (joining this module's Ray) is killed with SIGKILL once some shards are written; the same
    command again writes the rest, and the rows are those of the uninterrupted run."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "mamer", "predict", "--engine", "ray", "--ray-address", cluster,
               str(run), "--audio", str(clips), "--out", str(out), "--asr", "none", "--shard-size", "1", "--actors", "1"]  # fmt: skip
    driver = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while driver.poll() is None and time.monotonic() < deadline:
        if (out / "predictions").is_dir() and len(list((out / "predictions").glob("part-*.parquet"))) >= 2:
            break
        time.sleep(0.02)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    done_before = len(list((out / "predictions").glob("part-*.parquet")))
    assert driver.returncode == -signal.SIGKILL and 2 <= done_before < 28, driver.stderr.read().decode()[
        -2000:
    ]
    summary = predict_on_ray(run, clips, out, Options(), RayOptions(actors=2, shard_size=1, progress=False))
    assert summary.shards_skipped == done_before and summary.shards_written == 28 - done_before
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporaries left
    assert_exactly_once(out, 28)
    key = lambda r: (r["input_row"], r["start"] or 0.0)  # noqa: E731
    for got, want in zip(
        sorted(read_rows(out), key=key), sorted(read_rows(reference[0]), key=key), strict=True
    ):
        assert (got["source"], got["start"], got["end"]) == (want["source"], want["start"], want["end"])
        same_prediction(got, want)


def test_an_unexpected_failure_stays_with_its_input(run, clips, monkeypatch):
    """An exception `predict_jobs` does not expect (here a TypeError from decoding one file) is that file's
    error; the shard's other inputs are predicted (no Ray needed: the actor's class alone)."""
    predictor = ShardPredictor(str(run), NO_ASR)
    files = sorted(p for p in clips.glob("*.wav") if p.name not in BROKEN)[:3]
    original = predictor.recognizer.load_wave

    def load_wave(audio, sample_rate=None):
        if str(audio).endswith(files[1].name):
            raise TypeError("a decoder bug")
        return original(audio, sample_rate)

    monkeypatch.setattr(predictor.recognizer, "load_wave", load_wave)
    inputs = [{"input_row": i, "id": f.stem, "source": str(f), "path": str(f), "offset": None, "size": None,
               "text": None, "error": None} for i, f in enumerate(files)]  # fmt: skip
    done = predictor.predict_shard(inputs)
    assert [r["input_row"] for r in done["rows"]] == [0, 2]
    assert done["errors"] == [{"input_row": 1, "id": files[1].stem, "source": str(files[1]),
                               "error": "failed while predicting (TypeError: a decoder bug)"}]  # fmt: skip


def test_cli_refuses_what_the_ray_engine_does_not_take(tmp_path, capsys):
    base = ["predict", "--engine", "ray", "--audio", str(tmp_path)]
    assert main(base) == 2
    assert "into --out FOLDER" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "o"), "--plot", "x.png"]) == 2
    assert "takes no --plot" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "o", ignore_errors=True)


def test_a_transcript_the_text_encoder_does_not_read_is_said_in_the_parquet_rows(run, cluster, tmp_path):
    """`--transcript-languages en` reaches the actors and the plan, and a German clip's row keeps
    `text_skipped` (the single-process row's field) in its Parquet column."""
    if DATA is None or not registry.installed("whisper-base"):
        pytest.skip("needs ../shared/data/emodb and the whisper-base weights")
    clip = DATA / "emodb" / "audio" / "03a01Fa.flac"  # German, 2.0 s
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / clip.name).symlink_to(clip)
    out, options = tmp_path / "out", Options(transcribe=True)
    summary = predict_on_ray(run, tmp_path / "in", out, options, RayOptions(actors=1, progress=False),
                             transcript_languages="en")  # fmt: skip
    assert (summary.rows, summary.errors) == (1, 0)
    (row,) = read_rows(out)
    expected = EmotionRecognizer.load(run, asr="whisper-base", transcript_languages="en")
    said = expected.predict(audio=clip, transcribe=True)
    assert (row["view"], row["language"], row["transcript"]) == ("audio", "de", said.transcript)
    assert row["text_skipped"] == said.text_skipped and "reads en" in row["text_skipped"]
    assert json.loads((out / "plan.json").read_text())["transcripts"] == "en"  # a rerun must say the same


@pytest.mark.smoke  # benchmarks/scale_throughput.py's smallest run (tests/test_smoke_scripts.py): -k smoke
def test_scale_throughput_benchmark_smoke(run, clips, cluster, tmp_path, monkeypatch, capsys):
    """benchmarks/scale_throughput.py at its smallest size (tests/test_smoke_scripts.py points here: it reuses
    this module's Ray and tiny run): the loop and one actor over 4 clips, the same rows."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "scale_throughput.py"
    argv = [
        str(script),
        "--smoke",
        "--model",
        str(run),
        "--audio",
        str(clips / "sub"),
        "--work",
        str(tmp_path),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(script), run_name="__main__")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line.get("engine") for line in lines] == [None, "loop", "ray:1x1"]
    assert lines[2]["rows"] == 4 and lines[2]["errors"] == 0 and lines[2]["max_abs_dp_vs_first"] < 1e-5
