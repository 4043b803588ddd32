"""`mamer predict --engine ray`: the recognizer as an actor pool over Ray Data, on one machine or a cluster.

The driver lists the inputs (`inputs`), cuts them into shards and opens the output folder (`shards`), skipping
the shards an earlier run finished. Ray Data then maps the remaining shards over a fixed pool of actors
(`worker.ShardPredictor`: model, encoders and ASR loaded once per actor, `threads` CPU threads and `gpus` GPUs
each); every shard's rows come back to the driver, which writes them as one Parquet file, atomically. Ray
restarts a dead actor and retries its shard (`max_task_retries` times: a shard that kills its worker every
time is reported, not retried forever); a bad input never fails a shard, it goes to the errors table.

Inputs must be readable at the same path from every node (a shared file system); the output is written by the
driver alone, so it needs no shared storage.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm import tqdm

from mamer.workflows.inference.batch import Options
from mamer.workflows.inference.prediction import check_labels
from mamer.workflows.inference.recognizer import EmotionRecognizer
from mamer.workflows.scale.inputs import InputRow, list_inputs
from mamer.workflows.scale.shards import ERROR_SCHEMA, OutputFolder, row_schema
from mamer.workflows.scale.worker import ShardPredictor

log = logging.getLogger(__name__)


@dataclass
class RayOptions:
    """Where a job at scale runs and how wide."""

    address: str | None = (
        None  # None: start a local Ray on this machine; "auto" or "ray://host:10001": a cluster
    )
    actors: int | None = None  # None: as many as the cluster's CPUs (and GPUs) hold
    threads: int = 1  # CPU threads of each actor (torch and ASR): the CPUs it reserves
    gpus: float = 0.0  # GPUs of each actor (0: CPU only; then the model runs on "cuda")
    shard_size: int = (
        64  # inputs per output shard: the unit of work, retry and resume (lower it for long files)
    )
    batch_size: int = 16  # clips per forward pass inside an actor
    # runs of a shard whose worker died; then it is reported and left for a rerun
    max_task_retries: int = 3
    progress: bool = True


@dataclass
class Summary:
    """What one run did (this run's work) and what the output folder holds (all runs)."""

    files: int = 0  # inputs handled by this run (predicted or reported)
    rows: int = 0
    errors: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    cores: float = 0.0  # CPUs the actors reserved (actors x threads)
    actors: int = 0
    shards_written: int = 0
    shards_skipped: int = 0  # finished by an earlier run
    shards_failed: list[int] = field(default_factory=list)
    # this run's shards, by the node that made them
    shards_by_node: dict[str, int] = field(default_factory=dict)
    # seconds from the call to the first shard written (Ray's start, the actors' start, one shard), and the
    # audio and wall seconds after it: the steady rate, which fixed start-up costs do not dilute
    first_shard_seconds: float = 0.0
    steady_audio_seconds: float = 0.0
    steady_seconds: float = 0.0
    total: dict[str, float] = field(default_factory=dict)  # inputs, rows, errors, audio_seconds of the folder

    def add(self, result: dict[str, Any], now: float, first: bool) -> None:
        """Count one shard written `now` seconds after the call (`first`: the run's first shard)."""
        self.files += int(result["files"])
        self.rows += len(result["rows"])
        self.errors += len(result["errors"])
        self.audio_seconds += float(result["audio_seconds"])
        self.shards_by_node[result["node"]] = self.shards_by_node.get(result["node"], 0) + 1
        if first:
            self.first_shard_seconds = now
        else:
            self.steady_audio_seconds += float(result["audio_seconds"])
            self.steady_seconds = now - self.first_shard_seconds

    @property
    def steady_real_time(self) -> float:
        """Audio seconds per wall second once the first shard is in (0 with fewer than two shards)."""
        return self.steady_audio_seconds / self.steady_seconds if self.steady_seconds else 0.0

    @property
    def audio_hours_per_core_hour(self) -> float:
        core_seconds = self.wall_seconds * self.cores
        return self.audio_seconds / core_seconds if core_seconds else 0.0

    def text(self) -> str:
        """Two lines for people: this run, then the folder."""
        speed = self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0
        run = (
            f"{self.files} files ({self.errors} errors), {self.audio_seconds / 3600:.3f} h of audio in "
            f"{self.wall_seconds:.1f} s on {self.actors} actor(s), {self.cores:g} cores: {speed:.1f}x real time, "
            f"{self.audio_hours_per_core_hour:.2f} audio-hours per core-hour"
        )
        if self.steady_seconds:
            run += (
                f" ({self.steady_real_time:.1f}x after the first shard, in {self.first_shard_seconds:.1f} s)"
            )
        folder = (
            f"output: {self.total.get('rows', 0):.0f} rows and {self.total.get('errors', 0):.0f} errors from "
            f"{self.total.get('inputs', 0):.0f} inputs ({self.shards_written} shards written now, "
            f"{self.shards_skipped} by earlier runs)"
        )
        nodes = ", ".join(f"{node[:8]}: {n}" for node, n in sorted(self.shards_by_node.items()))
        return f"{run}\n{folder}" + (f"\nshards by node: {nodes}" if len(self.shards_by_node) > 1 else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "audio_hours_per_core_hour": self.audio_hours_per_core_hour,
            "steady_real_time": self.steady_real_time,
        }


def predict_on_ray(
    model: str | Path,
    audio: str | Path,
    out: str | Path,
    options: Options | None = None,
    ray_options: RayOptions | None = None,
    transcripts: str | Path | None = None,
    asr: str = "whisper-base",
    transcript_languages: str = "auto",
) -> Summary:
    """Predict every input `audio` names (folder, `.tar` shard, CSV/JSONL manifest) into the Parquet folder
    `out`; a rerun with the same `out` finishes what is missing. `transcript_languages` as for
    `EmotionRecognizer.load` (auto: the languages the text encoder reads). Returns the run's Summary."""
    started = time.perf_counter()
    options, ray_options = options or Options(), ray_options or RayOptions()
    if ray_options.shard_size < 1 or ray_options.threads < 1 or ray_options.batch_size < 1:
        raise ValueError("shard size, threads per actor and batch size must be at least 1")
    recognizer = EmotionRecognizer.load(  # fails here, not in actors
        model, asr=asr, language=options.language, transcript_languages=transcript_languages
    )
    labels = check_labels(options.labels, recognizer.labels) or recognizer.labels
    inputs = list_inputs(audio, transcripts, options.transcribe)
    job = _Job(str(model), asr, options, ray_options, inputs, transcript_languages)
    job.schema = row_schema(recognizer.task, labels, bool(options.top_k), options.embeddings)
    job.folder = OutputFolder(out)
    job.folder.open(job.plan(), job.inputs)
    done = job.folder.done()
    summary = Summary(shards_skipped=len(done))
    pending = [s for s in range(job.folder.shard_count) if s not in done]
    if pending:
        job.run(pending, summary, started)
    summary.wall_seconds = time.perf_counter() - started
    stats = job.folder.stats()
    summary.total = {
        k: float(sum(s.get(k, 0) for s in stats)) for k in ("files", "rows", "errors", "audio_seconds")
    }
    summary.total["inputs"] = summary.total.pop("files")
    _write_summary(job.folder, summary)
    return summary


@dataclass
class _Job:
    """One call of `predict_on_ray`: what it predicts, how, and where its shards go."""

    model: str
    asr: str
    options: Options
    ray_options: RayOptions
    inputs: list[InputRow]
    transcript_languages: str = "auto"
    schema: pa.Schema | None = None
    folder: OutputFolder | None = None

    def plan(self) -> dict[str, Any]:
        """What fixes the rows: a rerun must match it to resume (speed settings such as actors may change)."""
        asr = self.asr if self.options.transcribe else None
        # as `mamer predict --out` keeps it: only when not auto, so folders made before it resume
        languages = {} if self.transcript_languages == "auto" else {"transcripts": self.transcript_languages}
        plan = {"model": self.model, "asr": asr, "shard_size": self.ray_options.shard_size}
        return plan | languages | self.fixed_options()

    def fixed_options(self) -> dict[str, Any]:
        """The `batch.Options` fields an actor rebuilds its options from."""
        return {k: v for k, v in asdict(self.options).items() if k != "timelines"}

    def run(self, pending: list[int], summary: Summary, started: float) -> None:
        """Start or join Ray, map the pending shards over the actor pool, write each shard as it comes back."""
        import ray

        started_here = connect(self.ray_options.address)
        _configure_ray_data()
        try:
            actors = _pool_size(self.ray_options, len(pending))
            summary.actors, summary.cores = actors, actors * self.ray_options.threads
            files = sum(len(self.folder.shard_inputs(s)) for s in pending)
            bar = tqdm(total=files, desc="predict (ray)", unit="file", disable=not self.ray_options.progress)
            written: set[int] = set()
            for batch in self.dataset(pending, actors).iter_batches(batch_size=None, batch_format="numpy"):
                for result in _results(batch):
                    if result["shard"] in written:  # a retried task's second answer: the first is kept
                        continue
                    self.write(result)
                    written.add(result["shard"])
                    summary.add(result, time.perf_counter() - started, first=len(written) == 1)
                    bar.update(int(result["files"]))
                    bar.set_postfix(errors=summary.errors)
            bar.close()
            summary.shards_written = len(written)
            summary.shards_failed = sorted(set(pending) - written)
        finally:
            if started_here:
                ray.shutdown()

    def dataset(self, pending: list[int], actors: int):
        """The pending shards as a Ray dataset (one block each) mapped by a pool of `actors` ShardPredictors.
        Each actor holds one shard at a time (Ray Data's default queues a second one behind it): a shard is
        seconds to minutes of work, so a queued one would keep the job's last minutes on one actor while the
        others idle, and there is nothing worth prefetching (a shard is a list of paths)."""
        import ray
        from ray.data import ActorPoolStrategy

        items = [{"shard": s, "inputs": json.dumps([{"input_row": i} | asdict(self.inputs[i])
                                                    for i in self.folder.shard_inputs(s)])}
                 for s in pending]  # fmt: skip
        scale = self.ray_options
        constructor = {"model": self.model, "options": self.fixed_options(), "asr": self.asr,
                       "device": "cuda" if scale.gpus else "cpu", "threads": scale.threads,
                       "batch_size": scale.batch_size,
                       "transcript_languages": self.transcript_languages}  # fmt: skip
        with (
            warnings.catch_warnings()
        ):  # Ray 2.60 marks the actor retry arguments for removal in 2.64 (pinned)
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            pool = ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1)
            return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                ShardPredictor, batch_size=1, compute=pool, num_cpus=scale.threads,
                num_gpus=scale.gpus or None, max_restarts=-1, max_task_retries=scale.max_task_retries,
                fn_constructor_kwargs=constructor,
            )  # fmt: skip

    def write(self, result: dict[str, Any]) -> None:
        """One shard's rows and errors, with its figures in the rows file's metadata."""
        rows = pa.Table.from_pylist(result["rows"], schema=self.schema)
        errors = pa.Table.from_pylist(result["errors"], schema=ERROR_SCHEMA)
        span = self.folder.shard_inputs(result["shard"])
        stats = {
            "first_input": span.start,
            "files": len(span),
            "rows": rows.num_rows,
            "errors": errors.num_rows,
        }
        stats |= {k: float(result[k]) for k in ("audio_seconds", "busy_seconds")}
        stats["node"] = str(result["node"])
        self.folder.write_shard(result["shard"], rows, errors, stats)


def connect(address: str | None) -> bool:
    """Join the Ray cluster at `address`, or start a local one (all this machine's cores) when it is None;
    returns True when this call connected (and so should disconnect). Already connected: nothing to do."""
    import ray

    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}  # actors' output stays in Ray's logs
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
    return True


def _configure_ray_data() -> None:
    """Ray Data as a job at scale needs it: a shard that failed for good is reported by the driver while the
    rest go on; our progress bar (files) instead of Ray's (operators and blocks); Ray Data's INFO lines off."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.max_errored_blocks = -1
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(
        logging.ERROR
    )  # "progress bars disabled": on purpose


def _pool_size(ray_options: RayOptions, shards: int) -> int:
    """Actors to start: as asked, else as many as the cluster's CPUs (and GPUs) hold; never more than shards."""
    import ray

    resources = ray.cluster_resources()
    fits = int(resources.get("CPU", 1) // ray_options.threads)
    if ray_options.gpus:
        fits = min(fits, int(resources.get("GPU", 0) // ray_options.gpus))
        if fits == 0:
            raise ValueError(f"--gpus-per-actor {ray_options.gpus:g}: the Ray cluster has no GPU to give")
    actors = ray_options.actors or max(1, fits)
    if actors > fits:
        log.warning(
            "%d actors asked for, but the cluster now holds %d; the rest wait for resources", actors, fits
        )
    return max(1, min(actors, shards))


def _results(batch: dict) -> list[dict[str, Any]]:
    """The shards of one output batch: shard, rows and errors (lists of records), files, seconds."""
    out = []
    for i, shard in enumerate(batch["shard"]):
        result = {k: batch[k][i] for k in ("files", "audio_seconds", "busy_seconds", "node")}
        out.append(result | {"shard": int(shard), "rows": json.loads(batch["rows"][i]),
                             "errors": json.loads(batch["errors"][i])})  # fmt: skip
    return out


def _write_summary(folder: OutputFolder, summary: Summary) -> None:
    from mamer.atomic import atomic_write

    text = json.dumps(summary.to_dict(), indent=1) + "\n"
    atomic_write(folder.folder / "summary.json", lambda tmp: tmp.write_text(text))
