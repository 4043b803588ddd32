"""Time `mamer predict --plot`'s figure for a long recording's timeline, with words in a script the font lacks.

    python benchmarks/timeline_plot_speed.py [--segments 190] [--runs 3] [--smoke]

Builds a timeline of `--segments` segments (7 classes + A/V/D, random probabilities, 3-word Devanagari and Urdu
transcripts, as a 13-minute recording would give) without any model, and times `plot_timeline` on it several
times (min / median wall seconds), counting the warnings matplotlib raised (e.g. "Glyph ... missing").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from mamer.workflows.evaluation.timeline_plot import plot_timeline
from mamer.workflows.inference.asr import TimedText
from mamer.workflows.inference.prediction import Prediction
from mamer.workflows.inference.timeline import Timeline, TimelineSegment

LABELS = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
WORDS = ("मैं", "आज", "बहुत", "खुश", "ہوں", "کتاب", "میز", "پر")


def long_timeline(count: int, seed: int = 0) -> Timeline:
    """`count` segments of 2-6 s with 0.5-2 s pauses, random predictions and three words each."""
    rng = np.random.default_rng(seed)
    segments, t = [], 0.0
    for _ in range(count):
        start, end = t, t + rng.uniform(2, 6)
        p = rng.dirichlet(np.ones(len(LABELS)))
        probabilities = dict(zip(LABELS, map(float, p), strict=True))
        words = tuple(
            TimedText(
                str(rng.choice(WORDS)), start + k * (end - start) / 3, start + (k + 1) * (end - start) / 3
            )
            for k in range(3)
        )
        prediction = Prediction(
            "audio+text", LABELS[int(p.argmax())], probabilities, *map(float, rng.uniform(1, 5, 3)),
            transcript=" ".join(w.text for w in words),
        )  # fmt: skip
        segments.append(TimelineSegment(round(start, 3), round(end, 3), prediction, words))
        t = end + rng.uniform(0.5, 2)
    return Timeline(round(t, 3), "vad", segments)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--segments", type=int, default=190)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="10 segments, one run")
    args = p.parse_args()
    if args.smoke:
        args.segments, args.runs = 10, 1
    timeline = long_timeline(args.segments)
    times, caught = [], []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.runs):
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                started = time.perf_counter()
                plot_timeline(timeline, Path(folder) / "timeline.png")
                times.append(time.perf_counter() - started)
            caught += seen
    print(
        f"{args.segments} segments, {timeline.duration / 60:.1f} min: plot in min {min(times):.2f} s, "
        f"median {statistics.median(times):.2f} s over {args.runs} run(s); {len(caught)} warning(s)"
    )
    for w in {str(w.message) for w in caught}:
        print(f"  warning: {w[:120]}")


if __name__ == "__main__":
    main()
