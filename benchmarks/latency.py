"""Latency of one 5 s utterance through a trained run, per view, encoders included, on CPU.

    python benchmarks/latency.py RUN_DIR [--repeats 20] [--threads N]

Prints the median end-to-end time of `EmotionRecognizer.predict` per view, and how it splits between the
frozen encoders and the shared model (medians of the two stages timed separately).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from mamer.workflows.inference.recognizer import EmotionRecognizer

TEXT = "I honestly did not expect the meeting to go this way, and I am still thinking about it."


def utterance(seconds: float, sample_rate: int) -> np.ndarray:
    """A speech-like test signal: a gliding harmonic tone with syllable-rate amplitude modulation."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t).clip(0)
    noise = np.random.default_rng(0).normal(0, 0.01, t.shape)
    return (0.2 * voice * envelope + noise).astype(np.float32)


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def bench_view(recognizer: EmotionRecognizer, view: str, wave: np.ndarray, repeats: int) -> dict[str, float]:
    audio = wave if "audio" in view else None
    text = TEXT if "text" in view else None
    waves, texts = [audio], [text]
    features = recognizer.featurize(waves, texts)
    return {
        "total": median_ms(lambda: recognizer.predict(audio=audio, text=text, sample_rate=16000), repeats),
        "encoders": median_ms(lambda: recognizer.featurize(waves, texts), repeats),
        "model": median_ms(lambda: recognizer.predict_features(features), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recognizer = EmotionRecognizer.load(args.run_dir, preload=True)
    wave = recognizer.load_wave(utterance(args.seconds, 16000), 16000)
    encoders = recognizer.meta.encoders
    print(
        f"run {args.run_dir}: audio {encoders['audio']['name']}, text {encoders['text']['name']}, "
        f"{recognizer.meta.params:,} params; {args.seconds:g} s utterance, {len(TEXT.split())} words; "
        f"CPU, {torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print("| view | total ms | encoders ms | model ms | encoders share |\n|---|---|---|---|---|")
    for view in recognizer.views:
        r = bench_view(recognizer, view, wave, args.repeats)
        share = r["encoders"] / (r["encoders"] + r["model"])
        print(f"| {view} | {r['total']:.1f} | {r['encoders']:.1f} | {r['model']:.1f} | {share:.0%} |")


if __name__ == "__main__":
    main()
