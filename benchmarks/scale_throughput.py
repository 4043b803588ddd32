"""Throughput of `mamer predict` at scale: the single-process loop against the Ray engine's actor pools.

    python benchmarks/scale_throughput.py --audio ../shared/data/emodb/audio \
        ../shared/data/ravdess/audio ../shared/data/nemo/audio --asr none --engines loop ray:1x1 ray:2x1
    python benchmarks/scale_throughput.py --audio ... --minutes 60 --asr whisper-base
    python benchmarks/scale_throughput.py --smoke --model RUN --audio FOLDER   # a few clips, loop and 1 actor

Lists the audio files under each `--audio` folder, takes them round-robin across the folders (sorted within
each) until `--minutes` of audio (all of them by default), and writes them as one CSV manifest under `--work`.
Then each engine predicts them all, back to back: `loop` is `mamer predict`'s own loop (`predict_jobs`, batch
16, torch's default threads: every core; `loop:T`: T threads) in this process; `ray:AxT` is the Ray engine with
A actors of T threads on a local Ray started for the run (ASR, when asked, with the same threads). Wall time
covers everything a user waits for (model loading, Ray's start, the actors' start, Ray's shutdown). Prints one
JSON line per engine: files, errors, hours of audio, wall seconds, real-time factor, audio-hours per core-hour
(cores: the loop's threads, or actors x threads), audio-hours per CPU-hour used (CPU seconds of this process
and every process under it: Ray's daemons, driver and actors included) and the share of the machine's cores
that was, the steady real-time factor (the loop without its model's
loading; Ray after its first shard, so without Ray's and the actors' start-up), Ray's seconds to its first shard,
the ratio of each to the first engine's, the largest probability difference from the first engine's rows, and the
machine's 1-minute load average at the start and sampled every 5 s during the run (other work on the machine
slows every engine; compare runs at equal load). The loop runs in a process that has imported torch already
(2-5 s a user waits for); Ray's actors import it themselves.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import soundfile as sf
import torch

from mamer.data.audio import AUDIO_SUFFIXES, VIA_SOUNDFILE, audio_duration
from mamer.workflows.inference.batch import Job, Options, predict_jobs
from mamer.workflows.inference.recognizer import EmotionRecognizer
from mamer.workflows.scale.engine import RayOptions, predict_on_ray
from mamer.workflows.scale.inputs import list_inputs


def seconds_of(path: Path) -> float:
    """Duration stated by the file's header."""
    return float(
        sf.info(str(path)).duration if path.suffix.lower() in VIA_SOUNDFILE else audio_duration(path)
    )


def choose(folders: list[Path], minutes: float | None, limit: int | None) -> tuple[list[Path], float]:
    """Files round-robin across `folders` (sorted in each) until `minutes` of audio or `limit` files."""
    lists = [sorted(p for p in f.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES) for f in folders]
    chosen, total = [], 0.0
    for rank in range(max(len(files) for files in lists)):
        for files in lists:
            if (
                rank < len(files)
                and (minutes is None or total < minutes * 60)
                and (limit is None or len(chosen) < limit)
            ):
                chosen.append(files[rank])
                total += seconds_of(files[rank])
    return chosen, total


def tree_cpu() -> dict[tuple[int, str], float]:
    """CPU seconds (user + system) so far of this process and of every process under it (Ray's daemons, its
    workers and actors, when this process started Ray), by (pid, start time)."""
    tick, parents, cpu = os.sysconf("SC_CLK_TCK"), {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:  # the fields after the command's closing ")": state, ppid, ..., utime, stime, ..., starttime
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = ((int(fields[11]) + int(fields[12])) / tick, fields[19])
    tree, grown = {os.getpid()}, True
    while grown:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree, grown = tree | below, bool(below)
    return {(pid, cpu[pid][1]): cpu[pid][0] for pid in tree if pid in cpu}


class LoadSampler:
    """While a run lasts, in a thread: the 1-minute load average every `every` seconds, and the CPU seconds of
    this process tree every `cpu_every` seconds (a process that ends loses at most its last interval)."""

    def __init__(self, every: float = 5.0, cpu_every: float = 0.5) -> None:
        self.every, self.cpu_every, self.samples = every, cpu_every, [os.getloadavg()[0]]
        self.before = tree_cpu()
        self.seen = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        next_load = time.monotonic() + self.every
        while not self._stop.wait(self.cpu_every):
            self.seen |= tree_cpu()
            if time.monotonic() >= next_load:
                self.samples.append(os.getloadavg()[0])
                next_load += self.every

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.seen |= tree_cpu()

    @property
    def cpu_seconds(self) -> float:
        return sum(v - self.before.get(k, 0.0) for k, v in self.seen.items())

    def figures(self) -> dict[str, float]:
        return {
            "cpu_s": round(self.cpu_seconds, 1),
            "load_start": round(self.samples[0], 2),
            "load_mean": round(sum(self.samples) / len(self.samples), 2),
            "load_max": round(max(self.samples), 2),
        }


def run_loop(
    model: str, manifest: Path, options: Options, asr: str, device: str, seconds: float, threads: int
):
    """`mamer predict`'s loop over the manifest's files with `threads` torch and ASR threads: (rows, errors,
    cores, real-time factor of the loop alone, the model's loading aside)."""
    torch.set_num_threads(threads)
    recognizer = EmotionRecognizer.load(model, device, asr=asr, language=options.language)
    if options.transcribe:
        recognizer.transcriber.cpu_threads = threads  # before its model loads (mamer predict's default: 2)
    jobs = [Job(r.id, Path(r.path), r.text) for r in list_inputs(manifest)]
    started = time.perf_counter()
    rows, skipped = predict_jobs(recognizer, jobs, 16, progress=False, options=options)
    steady = seconds / (time.perf_counter() - started)
    return [r | {"source": r["file"]} for r in rows], len(skipped), float(torch.get_num_threads()), steady


def run_ray(model: str, manifest: Path, options: Options, asr: str, spec: str, gpus: float, out: Path):
    """The Ray engine with `spec` = "ray:AxT" over the manifest: (rows, errors, cores, real-time factor after
    the first shard, seconds to the first shard)."""
    actors, threads = (int(x) for x in spec.removeprefix("ray:").split("x"))
    shutil.rmtree(out, ignore_errors=True)
    scale = RayOptions(actors=actors, threads=threads, gpus=gpus, progress=False)
    summary = predict_on_ray(model, manifest, out, options, scale, asr=asr)
    rows = pq.read_table(out / "predictions").to_pylist()
    return (
        rows,
        summary.errors,
        float(actors * threads),
        summary.steady_real_time,
        summary.first_shard_seconds,
    )


def largest_difference(rows: list[dict], reference: list[dict]) -> float:
    """The largest |p - p_loop| over all rows and classes (rows matched by source and segment start)."""
    by_key = {(r["source"], r.get("start")): r for r in reference}
    worst = 0.0
    for row in rows:
        other = by_key[(row["source"], row.get("start"))]
        worst = max([worst] + [abs(p - other["probabilities"][k]) for k, p in row["probabilities"].items()])
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--audio", nargs="+", type=Path, required=True, help="folders of audio files")
    parser.add_argument("--model", default="mamer-base")
    parser.add_argument("--minutes", type=float, help="audio to take (default: all of it)")
    parser.add_argument("--asr", default="none", help="none, or the ASR model (whisper-base)")
    parser.add_argument("--language", help="ASR language (default: detected per clip)")
    parser.add_argument("--engines", nargs="+", default=["loop", "ray:1x1", "ray:2x1"])
    parser.add_argument("--gpus-per-actor", type=float, default=0.0, help="for ray:AxT (the loop: --device)")
    parser.add_argument("--device", default="cpu", help="the loop's device (cuda on a GPU machine)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mamer_scale_bench"))
    parser.add_argument("--smoke", action="store_true", help="4 files, loop and one actor of one thread")
    args = parser.parse_args()
    if args.smoke:
        args.engines = ["loop", "ray:1x1"]
    files, seconds = choose(args.audio, args.minutes, 4 if args.smoke else None)
    args.work.mkdir(parents=True, exist_ok=True)
    manifest = args.work / "manifest.csv"
    with manifest.open("w", newline="") as f:
        csv.writer(f).writerows([["audio"], *[[str(p.resolve())] for p in files]])
    print(
        json.dumps({"files": len(files), "audio_hours": round(seconds / 3600, 3), "manifest": str(manifest)})
    )
    transcribe = args.asr.lower() != "none"
    asr = args.asr if transcribe else "whisper-base"
    reference, default_threads = None, torch.get_num_threads()
    for engine in args.engines:
        options = Options(transcribe=transcribe, language=args.language)
        started, first = time.perf_counter(), None
        with LoadSampler() as load:
            if engine.startswith("loop"):  # "loop:T": T threads for this run
                threads = int(engine.partition(":")[2] or default_threads)
                rows, errors, cores, steady = run_loop(
                    args.model, manifest, options, asr, args.device, seconds, threads
                )
            else:
                out = args.work / "out"
                rows, errors, cores, steady, first = run_ray(
                    args.model, manifest, options, asr, engine, args.gpus_per_actor, out
                )
        wall = time.perf_counter() - started
        per_core_hour = seconds / (wall * cores)
        result = {"engine": engine, "files": len(files), "rows": len(rows), "errors": errors,
                  "audio_hours": round(seconds / 3600, 3), "wall_s": round(wall, 1), "cores": cores,
                  "x_real_time": round(seconds / wall, 2), "audio_h_per_core_h": round(per_core_hour, 2),
                  "steady_x_real_time": round(steady, 2)}  # fmt: skip
        if first is not None:  # Ray's start, the actors' start and one shard
            result["first_shard_s"] = round(first, 1)
        if reference is None:
            reference = (rows, seconds / wall, per_core_hour, steady)
        else:
            result |= {"speed_vs_first": round(seconds / wall / reference[1], 3),
                       "steady_vs_first": round(steady / reference[3], 3),
                       "per_core_vs_first": round(per_core_hour / reference[2], 3),
                       "max_abs_dp_vs_first": largest_difference(rows, reference[0])}  # fmt: skip
        # CPU actually used (the process tree's), and the share of the machine's cores it got: with other work
        # on the machine, 2 cores reserved may be 1 core received
        cpu = load.cpu_seconds
        result |= {"audio_h_per_cpu_h": round(seconds / cpu, 2) if cpu else None,
                   "machine_share": round(cpu / (wall * (os.cpu_count() or 1)), 2)}  # fmt: skip
        print(json.dumps(result | load.figures()), flush=True)


if __name__ == "__main__":
    main()
