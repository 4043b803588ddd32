"""What `mamer predict` runs over many inputs: jobs from files and transcripts, predictions, output rows.

A bad input never stops the rest: it is skipped and reported with its reason.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mamer.data.audio import AudioLoadError
from mamer.modality import DIMENSIONS, has_categories, has_dimensions
from mamer.workflows.inference.recognizer import EmotionRecognizer, Prediction
from mamer.workflows.inference.transcripts import read_transcripts, transcript_index

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class Job:
    """One input row: an id, and an audio file and/or a text."""

    id: str
    audio: Path | None = None
    text: str | None = None


def find_audio(path: str | Path) -> list[Path]:
    """An audio file, or every audio file under a folder (recursively, sorted)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not files:
            raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {path}")
        return files
    if not path.exists():
        raise FileNotFoundError(f"no such audio file or folder: {path}")
    return [path]


def make_jobs(
    audio: str | Path | None, text: str | None = None, transcripts: str | Path | None = None
) -> list[Job]:
    """The inputs of `mamer predict`: audio files (with a transcript where one is found) or texts alone."""
    rows = read_transcripts(transcripts) if transcripts else []
    if audio is None:
        if text is not None:
            return [Job("text", None, text)]
        if not rows:
            raise ValueError("nothing to predict: give --audio, --text or --transcripts")
        return [Job(str(r.get("id") or r.get("file") or r.get("audio")), None, r["text"]) for r in rows]
    files = find_audio(audio)
    if text is not None and len(files) > 1:
        raise ValueError(
            f"--text goes with one audio file, but {audio} holds {len(files)}; use --transcripts"
        )
    index = transcript_index(rows)
    return [
        Job(f.stem, f, text or index.get(f.name) or index.get(f.stem) or index.get(str(f))) for f in files
    ]


def predict_jobs(
    recognizer: EmotionRecognizer, jobs: list[Job], batch_size: int = 16, progress: bool = True
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Predict every job; returns (rows, skipped as (file or id, reason)). A bad input never stops the rest."""
    rows: list[dict] = []
    skipped: list[tuple[str, str]] = []
    bar = tqdm(total=len(jobs), desc="predict", unit="file", disable=not progress)
    for start in range(0, len(jobs), batch_size):
        chunk, items = [], []
        for job in jobs[start : start + batch_size]:
            try:
                items.append(_item(recognizer, job))
                chunk.append(job)
            except (AudioLoadError, ValueError) as err:
                skipped.append(_skip(job, err))
        for job, prediction in _predict_isolating(recognizer, chunk, items, skipped):
            rows.append(prediction_row(job, prediction, recognizer.task))
        bar.update(len(jobs[start : start + batch_size]))
    bar.close()
    return rows, skipped


def _item(recognizer: EmotionRecognizer, job: Job) -> dict:
    wave = None if job.audio is None else recognizer.load_wave(job.audio)
    return {"audio": wave, "text": job.text, "sample_rate": recognizer.sample_rate}


def _predict_isolating(recognizer, jobs: list[Job], items: list[dict], skipped: list) -> list:
    """One batch; if it fails, one by one, so only the bad input is skipped."""
    try:
        return list(zip(jobs, recognizer.predict_batch(items), strict=True))
    except (ValueError, RuntimeError) as err:
        if len(items) == 1:
            skipped.append(_skip(jobs[0], err))
            return []
    return [
        pair
        for j, i in zip(jobs, items, strict=True)
        for pair in _predict_isolating(recognizer, [j], [i], skipped)
    ]


def _skip(job: Job, err: Exception) -> tuple[str, str]:
    source = str(job.audio or job.id)
    return source, str(err).removeprefix(f"{source}: ")


def prediction_row(job: Job, prediction: Prediction, task: str) -> dict[str, Any]:
    """One output row: id, file, view, then the task's outputs."""
    row: dict[str, Any] = {"id": job.id, "file": None if job.audio is None else str(job.audio)}
    values = prediction.to_dict()
    if not has_dimensions(task):
        values = {k: v for k, v in values.items() if k not in DIMENSIONS}
    if not has_categories(task):
        values = {k: v for k, v in values.items() if k not in ("label", "probabilities")}
    return row | values


def write_rows(rows: list[dict], out: str | Path) -> None:
    """Rows as JSON lines (.jsonl) or CSV (.csv; probabilities become `p_<label>` columns)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        flat = [_flatten(r) for r in rows]
        columns = list(dict.fromkeys(k for r in flat for k in r))
        with out.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(flat)
    elif out.suffix.lower() in (".jsonl", ".json"):
        out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        raise ValueError(f"--out {out}: use a .jsonl or .csv file name")


def _flatten(row: dict) -> dict:
    probabilities = row.get("probabilities") or {}
    flat = {k: v for k, v in row.items() if k != "probabilities"}
    return flat | {f"p_{label}": p for label, p in probabilities.items()}
