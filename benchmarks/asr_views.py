"""What ASR transcripts cost a model that reads text: gold transcripts vs ASR transcripts vs audio alone.

    nice -n 5 python benchmarks/asr_views.py --run /tmp/qs/unified --manifest /tmp/qs/corpus/manifest.jsonl
        [--split test] [--asr whisper-base] [--language en]

Scores the same utterances of `--split` three ways with one model: audio + the manifest's transcript, audio + the
transcript `--asr` hears (int8, beam 1), and audio alone. Prints macro-F1 and UAR of each, and the time per clip.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mamer import EmotionRecognizer
from mamer.data.manifest import read_manifest
from mamer.metrics import categorical_metrics


def score(recognizer: EmotionRecognizer, true: list[str], predictions) -> dict:
    index = {k: i for i, k in enumerate(recognizer.labels)}
    y_true = np.array([index[t] for t in true])
    y_pred = np.array([index[p.label] for p in predictions])
    metrics = categorical_metrics(y_true, y_pred, len(index))
    return {k: round(metrics[k], 4) for k in ("macro_f1", "uar")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--asr", default="whisper-base")
    p.add_argument("--language")
    args = p.parse_args()
    rows = [u for u in read_manifest(args.manifest)[0] if u.split == args.split and u.audio and u.text]
    recognizer = EmotionRecognizer.load(args.run, asr=args.asr, language=args.language)
    true = [u.label for u in rows]
    print(json.dumps({"run": args.run, "split": args.split, "utterances": len(rows), "asr": args.asr}))
    ways = {
        "audio+text (gold transcripts)": [{"audio": u.audio, "text": u.text} for u in rows],
        f"audio+text (ASR: {args.asr})": [{"audio": u.audio, "transcribe": True} for u in rows],
        "audio alone": [{"audio": u.audio} for u in rows],
    }
    for name, items in ways.items():
        started = time.perf_counter()
        predictions = recognizer.predict_batch(items, batch_size=8)
        seconds = time.perf_counter() - started
        line = {
            "view": name,
            **score(recognizer, true, predictions),
            "seconds_per_clip": round(seconds / len(rows), 3),
        }
        if "ASR" in name:
            line["languages"] = sorted({p.language for p in predictions})
            line["example"] = [predictions[0].transcript, rows[0].text]
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
