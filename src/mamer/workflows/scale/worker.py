"""What each actor of a job at scale runs: one recognizer, loaded once, predicting one shard of inputs per call.

`ShardPredictor` is the callable class Ray Data's actor pool builds (it imports nothing from Ray, so it runs
and is tested without it). Audio files and texts go through `batch.predict_jobs`, the code `mamer predict`
runs, so their rows are the single-process rows; tar members are decoded from memory (`decode_bytes`, the
demuxer allow-list included) and predicted by the same recognizer calls (`predict_batch`, or `timeline`
beyond the model's audio limit). Every failure stays with its input: a bad file, or an unexpected exception
while predicting it, becomes an error record, and the rest of the shard goes on.
"""

from __future__ import annotations

import json
import socket
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from mamer.data.audio import VIA_SOUNDFILE, AudioLoadError, audio_duration, decode_bytes
from mamer.workflows.inference.batch import Job, Options, predict_jobs, prediction_row
from mamer.workflows.inference.recognizer import EmotionRecognizer
from mamer.workflows.scale.shards import record
from mamer.workflows.scale.tar_shards import read_member

EXPECTED = (AudioLoadError, ValueError, RuntimeError, OSError)  # what a bad input raises (as `predict_jobs`)


class ShardPredictor:
    """Loads the model, its encoders and (when asked) ASR once; then `__call__` predicts shards.

    `options`: the fields of `batch.Options` (transcribe, language, segment, window, hop, top_k, labels,
    embeddings). `threads`: CPU threads for torch and for ASR. `transcript_languages`: as for
    `EmotionRecognizer.load`.
    """

    def __init__(
        self, model: str, options: dict[str, Any], device: str = "cpu", asr: str = "whisper-base",
        threads: int = 1, batch_size: int = 16, transcript_languages: str = "auto",
    ) -> None:  # fmt: skip
        torch.set_num_threads(threads)
        self.options, self.batch_size = options, batch_size
        self.recognizer = EmotionRecognizer.load(
            model, device, preload=True, asr=asr, language=options.get("language"),
            transcript_languages=transcript_languages,
        )  # fmt: skip
        if options.get("transcribe") and self.recognizer.can_transcribe:
            transcriber = self.recognizer.transcriber
            transcriber.cpu_threads = threads  # before its model loads: one actor, `threads` cores
            transcriber.model  # noqa: B018 - loads it now, once, not on the first clip

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ray Data's batch of shards (`shard`: ints, `inputs`: JSON lists of input dicts) -> one record each:
        shard, rows and errors (JSON lists of records), files, audio_seconds, busy_seconds, node."""
        done = [self.predict_shard(json.loads(inputs)) for inputs in batch["inputs"]]
        out = {"shard": np.asarray(batch["shard"], dtype=np.int64)}
        for key in ("rows", "errors"):
            out[key] = np.array([json.dumps(d[key]) for d in done], dtype=object)
        for key in ("files", "audio_seconds", "busy_seconds"):
            out[key] = np.array([d[key] for d in done], dtype=np.float64)
        out["node"] = np.array([_node()] * len(done), dtype=object)  # where the work went (see the summary)
        return out

    def predict_shard(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """Inputs (`InputRow` fields + `input_row`) -> {rows, errors, files, audio_seconds, busy_seconds}."""
        started = time.perf_counter()
        rows: list[dict] = []
        errors: list[dict] = []
        seconds: dict[int, float] = {}
        given = [i for i in inputs if i["error"] is None]
        errors += [_error(i, i["error"]) for i in inputs if i["error"] is not None]
        members = [i for i in given if i["offset"] is not None]
        files = [i for i in given if i["offset"] is None]
        for group in _rounds(files):
            self._predict_files(group, rows, errors, seconds)
        for shard_file, group in _by_path(members).items():
            self._predict_members(shard_file, group, rows, errors, seconds)
        predicted = {r["input_row"] for r in rows}
        rows.sort(key=lambda r: (r["input_row"], r.get("start") or 0.0))
        errors.sort(key=lambda e: e["input_row"])
        return {
            "rows": rows, "errors": errors, "files": float(len(inputs)),
            "audio_seconds": sum(s for i, s in seconds.items() if i in predicted),
            "busy_seconds": time.perf_counter() - started,
        }  # fmt: skip

    # ------------------------------------------------------------ audio files and texts: `predict_jobs`

    def _predict_files(self, inputs: list[dict], rows: list, errors: list, seconds: dict) -> None:
        """Inputs with distinct paths through `predict_jobs`. A failure it does not catch itself is retried
        input by input, so it stays with the input that raised it."""
        try:
            made, skipped = self._jobs(inputs)
        except Exception as err:  # noqa: BLE001 - never lose the shard for one input
            if len(inputs) == 1:
                errors.append(_error(inputs[0], _reason(err, inputs[0]["source"])))
                return
            for one in inputs:
                self._predict_files([one], rows, errors, seconds)
            return
        by_name = {n: i for i in inputs for n in (str(i["input_row"]), i["path"]) if n is not None}
        for row in made:
            given = by_name[row["id"]]
            rows.append(record(row, given["input_row"], given["source"], given["id"]))
        for name, reason in skipped:
            errors.append(_error(by_name[name], reason))
        for given in inputs:
            if given["path"] is not None:
                seconds[given["input_row"]] = _seconds(Path(given["path"]))

    def _jobs(self, inputs: list[dict]) -> tuple[list[dict], list[tuple[str, str]]]:
        """`predict_jobs` over `inputs`, each job named by its input row (ids may repeat; rows map back)."""
        jobs = [Job(str(i["input_row"]), i["path"] and Path(i["path"]), i["text"]) for i in inputs]
        return predict_jobs(self.recognizer, jobs, self.batch_size, progress=False, options=self._fresh())

    def _fresh(self) -> Options:
        """Options for one call (their `timelines` would otherwise grow for the actor's whole life)."""
        return Options(**self.options)

    # ------------------------------------------------------------ tar members: from memory

    def _predict_members(
        self, shard_file: str, inputs: list[dict], rows: list, errors: list, seconds: dict
    ) -> None:
        """Members of one tar shard: decoded from its bytes, predicted in batches or as timelines."""
        recognizer, options = self.recognizer, self._fresh()
        rate = recognizer.sample_rate
        pending: list[tuple[dict, dict]] = []
        for given in inputs:
            try:
                data = read_member(shard_file, given["offset"], given["size"])
                wave = decode_bytes(data, rate, what=given["source"])
                seconds[given["input_row"]] = wave.shape[0] / rate
                if options.segment in ("vad", "window") or wave.shape[0] / rate > recognizer.max_seconds:
                    rows += self._member_timeline(given, wave, options)
                else:
                    item = {"audio": wave, "sample_rate": rate, "text": given["text"]}
                    pending.append(
                        (given, item | {"transcribe": options.transcribe, "language": options.language})
                    )
            except Exception as err:  # noqa: BLE001 - expected or not, it stays with this member
                errors.append(_error(given, _reason(err, given["source"])))
        for start in range(0, len(pending), self.batch_size):
            self._member_batch(pending[start : start + self.batch_size], options, rows, errors)

    def _member_timeline(self, given: dict, wave: np.ndarray, options: Options) -> list[dict]:
        """Segment rows of a member beyond the model's limit (as `predict_jobs` does for files)."""
        segment = "none" if given["text"] is not None and options.segment == "auto" else options.segment
        result = self.recognizer.timeline(
            wave, sample_rate=self.recognizer.sample_rate, text=given["text"], segment=segment,
            window=options.window, hop=options.hop, transcribe=options.transcribe, language=options.language,
            **options.outputs(),
        )  # fmt: skip
        job = Job(given["id"], None, given["text"])
        task = self.recognizer.task
        made = [prediction_row(job, s.prediction, task, (s.start, s.end)) for s in result.segments]
        return [record(r, given["input_row"], given["source"], given["id"]) for r in made]

    def _member_batch(
        self, pending: list[tuple[dict, dict]], options: Options, rows: list, errors: list
    ) -> None:
        """One batch of members; if it fails, each alone, so only the bad one is reported."""
        try:
            predictions = self.recognizer.predict_batch([item for _, item in pending], **options.outputs())
        except Exception as err:  # noqa: BLE001
            if len(pending) == 1:
                errors.append(_error(pending[0][0], _reason(err, pending[0][0]["source"])))
                return
            for one in pending:
                self._member_batch([one], options, rows, errors)
            return
        task = self.recognizer.task
        for (given, _), prediction in zip(pending, predictions, strict=True):
            row = prediction_row(Job(given["id"], None, given["text"]), prediction, task)
            rows.append(record(row, given["input_row"], given["source"], given["id"]))


def _rounds(inputs: list[dict]) -> list[list[dict]]:
    """`inputs` in rounds within which no two share a path (so `predict_jobs`' skipped files map back)."""
    rounds: list[list[dict]] = []
    seen: dict[str | None, int] = defaultdict(int)
    for given in inputs:
        key = given["path"] if given["path"] is not None else f"#{given['input_row']}"
        if seen[key] == len(rounds):
            rounds.append([])
        rounds[seen[key]].append(given)
        seen[key] += 1
    return rounds


def _by_path(inputs: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for given in inputs:
        groups[given["path"]].append(given)
    return groups


def _node() -> str:
    """The id of the Ray node this actor runs on, or the host's name outside Ray."""
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return socket.gethostname()


def _seconds(path: Path) -> float:
    """The duration a file's header states (0 when it states none): the summary's hours of audio."""
    try:
        if path.suffix.lower() in VIA_SOUNDFILE:
            return float(sf.info(str(path)).duration)
        return float(audio_duration(path) or 0.0)
    except Exception:  # noqa: BLE001 - a figure for the summary, never a reason to fail
        return 0.0


def _reason(err: Exception, source: str) -> str:
    """The message of an expected error without the source it repeats; the type for an unexpected one."""
    if isinstance(err, EXPECTED):
        return str(err).removeprefix(f"{source}: ")
    return f"failed while predicting ({type(err).__name__}: {err})"


def _error(given: dict, reason: str) -> dict[str, Any]:
    return {"input_row": given["input_row"], "id": given["id"], "source": given["source"], "error": reason}
