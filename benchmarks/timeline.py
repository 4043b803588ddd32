"""Timelines of long real recordings: segment boundaries, labels, throughput and memory.

    nice -n 5 python benchmarks/timeline.py --run RUN --manifest MANIFEST [--splits dev,test] [--speaker S] [--minutes 10]
        [--asr whisper-base] [--language de] [--rss-minutes 10,60] [--work /tmp/timeline_bench]

Builds a recording of about `--minutes` from the manifest's clips of `--splits` (of one `--speaker`'s, when
given: a speaker-normalised model standardises a recording by its whole self; shuffled, seed 0), joined with
pauses of 0.5-2 s (uniform), written under `--work` (never the repository). Then:

1. every clip scored alone (audio view) -> macro-F1 and UA against the corpus labels; for a model with
   `audio_normalise: speaker`, also all the clips given as one group (`predict_batch` items of one `speaker`);
2. `recognizer.timeline(file, segment="vad")` without ASR -> the share of true utterances whose centre lies in
   exactly one segment, the mean |start| and |end| boundary errors of that segment (segments carry 0.2 s of
   padding on each side), the macro-F1 of the segment labels at the utterance centres (no segment = wrong),
   and the real-time factor of the whole pipeline (decode + VAD + encoders + model);
3. the same with ASR (`--asr`, int8, beam 1; `--language`) -> real-time factor and macro-F1 (audio+text view);
4. peak RSS of a fresh process running step 2 on the recording and on it repeated to `--rss-minutes` each.

Figures on a shared machine are upper bounds on time. Prints one JSON object per step.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from mamer.data.audio import load_audio
from mamer.data.manifest import read_manifest
from mamer.metrics import categorical_metrics

SR = 16000


def build(
    manifest: Path, splits: list[str], minutes: float, out: Path, speaker: str | None = None
) -> list[dict]:
    """Write the joined recording to `out` (of one `speaker`'s clips, when given); returns each utterance's start,
    end, label and file."""
    rows = [u for u in read_manifest(manifest)[0] if u.split in splits and u.audio is not None]
    rows = [u for u in rows if speaker is None or u.speaker == speaker]
    if not rows:
        raise SystemExit(
            f"no clips of splits {','.join(splits)}{f' and speaker {speaker}' if speaker else ''} in {manifest}"
        )
    rng = np.random.default_rng(0)
    rng.shuffle(rows)
    parts, truth, at = [], [], 0
    for u in rows:
        if at >= minutes * 60 * SR:
            break
        pause, wave = round(rng.uniform(0.5, 2.0) * SR), load_audio(u.audio, SR)
        parts += [np.zeros(pause, np.float32), wave]
        truth.append({"start": (at + pause) / SR, "end": (at + pause + len(wave)) / SR, "label": u.label,
                      "file": str(u.audio)})  # fmt: skip
        at += pause + len(wave)
    parts.append(np.zeros(SR, np.float32))
    sf.write(out, np.concatenate(parts), SR, subtype="PCM_16")
    return truth


def repeated(src: Path, times: int, out: Path) -> Path:
    """`src` repeated `times` times into `out`, written block by block."""
    info = sf.info(str(src))
    with sf.SoundFile(out, "w", info.samplerate, 1, "PCM_16") as f:
        for _ in range(times):
            for block in sf.blocks(str(src), blocksize=SR * 30, dtype="float32"):
                f.write(block)
    return out


def scores(true: list[str], pred: list[str | None], labels: list[str]) -> dict:
    """Macro-F1 and UA of the predicted labels (None: no segment, counted wrong)."""
    index = {k: i for i, k in enumerate(labels)}
    if not set(true) <= set(index):
        return {"macro_f1": None}  # a model of another label space (a smoke run)
    y_true = np.array([index[t] for t in true])
    y_pred = np.array([index.get(p, -1) if p is not None else -1 for p in pred])
    y_pred = np.where(y_pred < 0, (y_true + 1) % len(labels), y_pred)  # no segment: counted wrong
    metrics = categorical_metrics(y_true, y_pred, len(labels))
    return {"macro_f1": round(metrics["macro_f1"], 4), "uar": round(metrics["uar"], 4)}


def match(truth: list[dict], segments) -> dict:
    """Boundary figures: centres in exactly one segment, boundary errors, the label at each centre."""
    exact, starts, ends, labels = 0, [], [], []
    for t in truth:
        centre = (t["start"] + t["end"]) / 2
        hits = [s for s in segments if s.start <= centre <= s.end]
        exact += len(hits) == 1
        if hits:
            starts.append(abs(hits[0].start - t["start"]))
            ends.append(abs(hits[0].end - t["end"]))
        labels.append(hits[0].prediction.label if hits else None)
    return {"centre_in_exactly_one": round(exact / len(truth), 4),
            "mean_start_error_s": round(float(np.mean(starts)), 3),
            "mean_end_error_s": round(float(np.mean(ends)), 3), "labels": labels}  # fmt: skip


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_timeline(recognizer, path: Path, duration: float, **options) -> tuple[object, dict]:
    """The timeline, and its wall time, CPU time and the real-time factors of both (CPU time / 2 cores)."""
    started, cpu = time.perf_counter(), cpu_seconds()
    result = recognizer.timeline(path, segment="vad", **options)
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return result, {"seconds": round(wall, 1), "real_time_factor": round(duration / wall, 1),
                    "cpu_seconds": round(cpu, 1), "real_time_factor_cpu_2_cores": round(2 * duration / cpu, 1)}  # fmt: skip


def rss_child(args) -> None:
    """Step 4 in a fresh process: run the timeline, print the peak RSS in MB."""
    from mamer import EmotionRecognizer

    recognizer = EmotionRecognizer.load(args.run, asr=args.asr, language=args.language)
    started, cpu = time.perf_counter(), cpu_seconds()
    result = recognizer.timeline(args.rss_child, segment="vad", transcribe=args.rss_asr)
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"file": args.rss_child, "minutes": round(result.duration / 60, 1), "asr": args.rss_asr,
                      "segments": len(result.segments), "seconds": round(wall, 1),
                      "real_time_factor": round(result.duration / wall, 1), "cpu_seconds": round(cpu, 1),
                      "peak_rss_mb": round(peak)}))  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--manifest")
    p.add_argument("--splits", default="dev,test")
    p.add_argument("--speaker", help="only this speaker's clips: one voice, as a recording of one person")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--asr", default="whisper-base", help="none to skip step 3")
    p.add_argument("--language")
    p.add_argument("--rss-minutes", default="10,60")
    p.add_argument("--work", default="/tmp/timeline_bench")
    p.add_argument("--rss-child", help=argparse.SUPPRESS)
    p.add_argument("--rss-asr", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rss_child:
        return rss_child(args)
    from mamer import EmotionRecognizer

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"long{args.minutes:g}.wav"
    truth = build(Path(args.manifest), args.splits.split(","), args.minutes, path, args.speaker)
    duration = sf.info(str(path)).duration
    recognizer = EmotionRecognizer.load(args.run, asr=args.asr, language=args.language)
    labels, true = recognizer.labels, [t["label"] for t in truth]
    print(json.dumps({"recording": str(path), "minutes": round(duration / 60, 2), "utterances": len(truth),
                      "run": args.run, "labels": labels}))  # fmt: skip

    started = time.perf_counter()
    alone = recognizer.predict_batch([{"audio": t["file"]} for t in truth], batch_size=8)
    print(json.dumps({"step": "clips one by one (audio)", **scores(true, [a.label for a in alone], labels),
                      "seconds": round(time.perf_counter() - started, 1)}))  # fmt: skip

    if recognizer.model.config.audio_normalise == "speaker":  # the clips standardised by all of them together
        together = recognizer.predict_batch(
            [{"audio": t["file"], "speaker": "one"} for t in truth], batch_size=8
        )
        print(
            json.dumps(
                {"step": "clips as one group (audio)", **scores(true, [a.label for a in together], labels)}
            )
        )

    result, speed = timed_timeline(recognizer, path, duration)
    found = match(truth, result.segments)
    print(json.dumps({"step": "timeline vad, no ASR", "segments": len(result.segments), **speed,
                      **scores(true, found.pop("labels"), labels), **found}))  # fmt: skip

    if args.asr != "none":
        result, speed = timed_timeline(recognizer, path, duration, transcribe=True)
        found = match(truth, result.segments)
        print(json.dumps({"step": f"timeline vad + ASR {args.asr}", "segments": len(result.segments), **speed,
                          **scores(true, found.pop("labels"), labels), **found,
                          "first_transcripts": [s.prediction.transcript for s in result.segments[:3]]}))  # fmt: skip
        from mamer.workflows.evaluation.timeline_plot import plot_timeline

        print(json.dumps({"plot": str(plot_timeline(result, work / "timeline.png"))}))

    for minutes in [float(m) for m in args.rss_minutes.split(",") if m]:
        times = max(1, round(minutes * 60 / duration))
        source = path if times == 1 else repeated(path, times, work / f"long{args.minutes:g}x{times}.wav")
        command = [sys.executable, __file__, "--run", args.run, "--rss-child", str(source), "--asr", args.asr]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()
        print(out[-1])


if __name__ == "__main__":
    main()
