"""What `mamer predict` runs over many inputs: jobs from files and transcripts, predictions, output rows.

Clips within the model's audio limit are predicted in batches, one row each; longer recordings (or any, with
`segment="vad"`/`"window"`) become timelines, one row per segment with its start and end. A bad input never
stops the rest: it is skipped and reported with its reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from mamer.data.audio import AUDIO_SUFFIXES, AudioLoadError, audio_duration
from mamer.data.frame_norm import Statistics, frame_statistics
from mamer.modality import DIMENSIONS, has_categories, has_dimensions
from mamer.workflows.inference.recognizer import EmotionRecognizer, Prediction
from mamer.workflows.inference.timeline import Timeline
from mamer.workflows.inference.transcripts import TranscriptIndex, read_transcripts, row_name

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One input row: an id, and an audio file and/or a text."""

    id: str
    audio: Path | None = None
    text: str | None = None


@dataclass
class Options:
    """How each input is read beyond the model: ASR, segmentation (see `timeline`), extra outputs."""

    transcribe: bool = False  # fill missing transcripts by ASR (only for models that read text)
    language: str | None = None  # ASR language; None = detected
    segment: str = "auto"  # auto, none, vad or window
    window: float = 8.0
    hop: float = 4.0
    top_k: int | None = None
    labels: list[str] | None = None
    embeddings: bool = False
    timelines: dict[str, Timeline] = field(default_factory=dict)  # filled: job id -> its timeline

    def outputs(self) -> dict:
        """The output options `predict_batch` and `timeline` take."""
        return {"top_k": self.top_k, "labels": self.labels, "return_embedding": self.embeddings}


def find_audio(path: str | Path) -> list[Path]:
    """An audio file, or every audio file under a folder (recursively, sorted). A name with an audio suffix
    that is not a readable file (a broken or self-looping symlink) is kept, so that it is skipped by name."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and not p.is_dir())
        if not files:
            raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {path}")
        return files
    if not path.exists():
        raise FileNotFoundError(f"no such audio file or folder: {path}")
    return [path]


def make_jobs(
    audio: str | Path | None,
    text: str | None = None,
    transcripts: str | Path | None = None,
    transcribe: bool = False,
) -> list[Job]:
    """The inputs of `mamer predict`: audio files (with a transcript where one is found) or texts alone.

    A job's id is its file's stem, or its path under `audio` where two files share a stem (`x.mp3`, `x.ogg`).
    With `transcripts`, rows that match no file and files left without a row are warned about (such files are
    transcribed when `transcribe`, else read from audio alone).
    """
    if text is not None and not text.strip():
        raise ValueError("--text is empty: give the transcript, or leave --text out to read the audio alone")
    rows = read_transcripts(transcripts) if transcripts else []
    if audio is None:
        if text is not None:
            return [Job("text", None, text)]
        if not rows:
            raise ValueError("nothing to predict: give --audio, --text or --transcripts")
        return [Job(row_name(r), None, r["text"]) for r in rows]
    files = find_audio(audio)
    if text is not None and len(files) > 1:
        raise ValueError(
            f"--text goes with one audio file, but {audio} holds {len(files)}; use --transcripts"
        )
    names = _relative_names(files, Path(audio))
    ids = _job_ids(files, names)
    index = TranscriptIndex(rows)
    jobs = [Job(i, f, text or index.text(f, n, i)) for f, n, i in zip(files, names, ids, strict=True)]
    if transcripts:
        _report_matching(jobs, index, transcripts, audio, transcribe)
    return jobs


def _relative_names(files: list[Path], audio: Path) -> list[str]:
    """Each file's path under the folder given (its name for a single file), with '/' separators."""
    root = audio if audio.is_dir() else audio.parent
    return [f.relative_to(root).as_posix() for f in files]


def _job_ids(files: list[Path], names: list[str]) -> list[str]:
    """File stems as ids; files sharing a stem are named by their path under the folder instead, said so."""
    stems = Counter(f.stem for f in files)
    shared = sorted({f.stem for f in files if stems[f.stem] > 1})
    if shared:
        clashing = [n for f, n in zip(files, names, strict=True) if stems[f.stem] > 1]
        log.warning(
            "%d file name(s) are shared by several audio files (%s): those rows are named by their path "
            "instead: %s", len(shared), some(shared), some(clashing, 6),
        )  # fmt: skip
    return [n if stems[f.stem] > 1 else f.stem for f, n in zip(files, names, strict=True)]


def some(items: list[str], n: int = 3) -> str:
    """The first `n` items for a message: `a, b, c, ...`."""
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def _report_matching(
    jobs: list[Job], index: TranscriptIndex, transcripts: str | Path, audio: str | Path, transcribe: bool
) -> None:
    """Warn about transcript rows that match no audio file, and audio files without a transcript."""
    unused = index.unused()
    if unused:
        log.warning(
            "%s: %d row(s) match no audio file under %s and are not used: %s",
            transcripts, len(unused), audio, some(unused, 10),
        )  # fmt: skip
    bare = [job.id for job in jobs if job.text is None]
    if bare:
        fate = "transcribed by ASR" if transcribe else "read from audio alone (--asr none)"
        log.warning(
            "%d audio file(s) have no row in %s and are %s: %s", len(bare), transcripts, fate, some(bare, 10)
        )


def predict_jobs(
    recognizer: EmotionRecognizer,
    jobs: list[Job],
    batch_size: int = 16,
    progress: bool = True,
    options: Options | None = None,
    on_done: Callable[[Job, list[dict]], None] | None = None,
    source: Statistics | None = None,
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Predict every job; returns (rows, skipped as (file or id, reason)); timelines land in
    `options.timelines`. A bad input never stops the rest. `on_done(job, its rows)` is called as each job's
    rows are made (after each batch), so a caller can write them as they come. `source`: the statistics every
    clip is standardised by, for a model with `audio_normalise: speaker` (`source_statistics`)."""
    options = options or Options()
    rows: list[dict] = []
    skipped: list[tuple[str, str]] = []

    def done(job: Job, made: list[dict]) -> None:
        rows.extend(made)
        if on_done is not None:
            on_done(job, made)

    bar = tqdm(total=len(jobs), desc="predict", unit="file", disable=not progress)
    for start in range(0, len(jobs), batch_size):
        chunk, items = [], []
        for job in jobs[start : start + batch_size]:
            try:
                if _needs_timeline(recognizer, job, options):
                    done(job, _timeline_rows(recognizer, job, options))
                else:
                    items.append(_item(recognizer, job, options))
                    chunk.append(job)
            except (AudioLoadError, ValueError, RuntimeError) as err:
                skipped.append(_skip(job, err))
        for job, prediction in _predict_isolating(recognizer, chunk, items, skipped, options, source):
            done(job, [prediction_row(job, prediction, recognizer.task)])
        bar.update(len(jobs[start : start + batch_size]))
    bar.close()
    return rows, skipped


def source_statistics(
    recognizer: EmotionRecognizer, jobs: list[Job], options: Options, batch_size: int = 16
) -> Statistics | None:
    """Per-dimension mean and std over every audio frame of the jobs' clips (not the recordings that become
    timelines, which are standardised by their own segments) as the audio encoder gives them: the statistics
    of one source (`mamer predict --one-source`), a first pass over its files, one batch in memory at a time.
    A file that cannot be read adds nothing here; predicting it skips and reports it."""

    def blocks() -> Iterator[torch.Tensor]:
        clips = [job for job in jobs if job.audio is not None]
        for start in range(0, len(clips), batch_size):
            waves = []
            for job in clips[start : start + batch_size]:
                try:
                    if not _needs_timeline(recognizer, job, options):
                        waves.append(recognizer.load_wave(job.audio))
                except (AudioLoadError, ValueError, RuntimeError):
                    continue
            try:
                features = recognizer.featurize(waves, [None] * len(waves)) if waves else []
            except (ValueError, RuntimeError):
                features = []  # one by one would find the bad file; it is skipped when predicted
            yield from (f.audio for f in features if f.audio is not None)

    return frame_statistics(blocks())


def _needs_timeline(recognizer: EmotionRecognizer, job: Job, options: Options) -> bool:
    """True for audio to segment: `vad`/`window` asked for, or audio beyond the model's limit (or of unknown
    length)."""
    if job.audio is None:
        return False
    if options.segment in ("vad", "window"):
        return True
    seconds = audio_duration(job.audio)
    return seconds is None or seconds > recognizer.max_seconds


def _timeline_rows(recognizer: EmotionRecognizer, job: Job, options: Options) -> list[dict]:
    """One row per segment of the job's recording (a given transcript keeps it one pooled segment)."""
    segment = "none" if job.text is not None and options.segment == "auto" else options.segment
    result = recognizer.timeline(
        job.audio, text=job.text, segment=segment, window=options.window, hop=options.hop,
        transcribe=options.transcribe, language=options.language, **options.outputs(),
    )  # fmt: skip
    options.timelines[job.id] = result
    return [prediction_row(job, s.prediction, recognizer.task, (s.start, s.end)) for s in result.segments]


def _item(recognizer: EmotionRecognizer, job: Job, options: Options) -> dict:
    wave = None if job.audio is None else recognizer.load_wave(job.audio)
    item = {"audio": wave, "text": job.text, "sample_rate": recognizer.sample_rate}
    return item | {"transcribe": options.transcribe, "language": options.language}


def _predict_isolating(
    recognizer, jobs: list[Job], items: list[dict], skipped: list, options: Options, source=None
) -> list:
    """One batch; if it fails, one by one, so only the bad input is skipped."""
    if not items:
        return []
    try:
        predictions = recognizer.predict_batch(items, source=source, **options.outputs())
        return list(zip(jobs, predictions, strict=True))
    except (ValueError, RuntimeError) as err:
        if len(items) == 1:
            skipped.append(_skip(jobs[0], err))
            return []
    return [
        pair
        for j, i in zip(jobs, items, strict=True)
        for pair in _predict_isolating(recognizer, [j], [i], skipped, options, source)
    ]


def _skip(job: Job, err: Exception) -> tuple[str, str]:
    source = str(job.audio or job.id)
    return source, str(err).removeprefix(f"{source}: ")


def prediction_row(
    job: Job, prediction: Prediction, task: str, span: tuple[float, float] | None = None
) -> dict[str, Any]:
    """One output row: id, file, (start, end of a timeline segment), view, then the task's outputs."""
    row: dict[str, Any] = {"id": job.id, "file": None if job.audio is None else str(job.audio)}
    if span is not None:
        row |= {"start": span[0], "end": span[1]}
    values = prediction.to_dict()
    if not has_dimensions(task):
        values = {k: v for k, v in values.items() if k not in DIMENSIONS}
    if not has_categories(task):
        values = {k: v for k, v in values.items() if k not in ("label", "probabilities")}
    return row | values
