"""What real input does to a model: UA of its audio view on a split's clips, clean and through each degradation of
`mamer.data.degrade` (the telephone band, lossy codecs, noise, babble, a room, speed), each clip alone.

    python benchmarks/degraded_input.py --model RUN_OR_NAME [--model ...] --manifest M --split S
        [--labels a,b,...] [--conditions clean,telephone,opus12,mp3_32,noise10,babble10,room06,speed11]
        [--groups none,speaker] [--limit N]

Every clip of the split goes through each condition's fixed degradation (noise, babble and room drawn from a
generator seeded by the clip's id, so every model hears the same bytes; babble from 4 clips of other speakers
of the split), then through `EmotionRecognizer.predict_batch` as a user's file would: `none` scores each clip
alone, `speaker` each clip standardised with its speaker's degraded clips (a model with `model.audio_normalise:
speaker`; one group per speaker). `--labels` restricts the predictions to those classes (a corpus with fewer
classes than the model). Prints one JSON object per model, condition and grouping: UA and macro-F1 in percent,
and the drop from clean.
"""

from __future__ import annotations

import argparse
import json
import zlib
from itertools import islice

import numpy as np

from mamer import EmotionRecognizer
from mamer.data.audio import load_audio
from mamer.data.degrade import SR, apply_chain
from mamer.data.manifest import read_manifest
from mamer.metrics import categorical_metrics

CONDITIONS = {
    "clean": [],
    "telephone": [("telephone", {})],
    "opus12": [("codec", {"codec": "opus", "bitrate": 12_000})],
    "mp3_32": [("codec", {"codec": "mp3", "bitrate": 32_000})],
    "noise10": [("noise", {"colour": "pink", "snr_db": 10.0})],
    "babble10": [("babble", {"speakers": 4, "snr_db": 10.0})],
    "room06": [("reverb", {"rt60": 0.6})],
    "speed11": [("speed", {"factor": 1.1})],
}


def seeded(chain: list, key: str) -> list:
    """`chain` with a seed from `key` in each step that draws (noise, babble, room)."""
    seed = zlib.crc32(key.encode())
    return [(kind, {**params, "seed": seed}) if kind in ("noise", "babble", "reverb") else (kind, params)
            for kind, params in chain]  # fmt: skip


def degraded_waves(rows, waves: list[np.ndarray], condition: str) -> list[np.ndarray]:
    """Each clip through `condition`; babble from 4 clips of other speakers (the next ones in the split's order)."""
    out = []
    for i, (u, wave) in enumerate(zip(rows, waves, strict=True)):
        following = (j % len(rows) for j in range(i + 1, i + len(rows)))
        others = [waves[j] for j in islice((j for j in following if rows[j].speaker != u.speaker), 4)]
        out.append(apply_chain(wave, seeded(CONDITIONS[condition], u.id), others or [wave]))
    return out


def scores(recognizer, rows, waves, labels, grouping: str) -> dict[str, float]:
    """UA and macro-F1 (percent) of the audio view on `waves`, each alone or with its speaker's clips."""
    items = [{"audio": w, "sample_rate": SR} | ({"speaker": u.speaker} if grouping == "speaker" else {})
             for u, w in zip(rows, waves, strict=True)]  # fmt: skip
    predicted = recognizer.predict_batch(items, batch_size=16, labels=labels)
    names = labels or recognizer.labels
    truth = np.array([names.index(u.label) for u in rows])
    guess = np.array([names.index(p.label) for p in predicted])
    metrics = categorical_metrics(truth, guess, len(names))
    return {"ua": round(100 * metrics["uar"], 2), "macro_f1": round(100 * metrics["macro_f1"], 2)}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", required=True, help="run folder, release folder or name")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument(
        "--labels", default="", help="comma-separated classes to score (default: the model's)"
    )
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--groups", default="none", help="none and/or speaker, comma-separated")
    parser.add_argument(
        "--limit", type=int, default=0, help="score N of the split's clips, evenly spaced (0: all)"
    )
    args = parser.parse_args(argv)
    conditions = args.conditions.split(",")
    unknown = set(conditions) - set(CONDITIONS)
    if unknown:
        parser.error(f"unknown condition(s) {sorted(unknown)}; known: {', '.join(CONDITIONS)}")
    groupings = args.groups.split(",")
    if set(groupings) - {"none", "speaker"}:
        parser.error(f"--groups takes none and/or speaker, got {args.groups!r}")
    labels = args.labels.split(",") if args.labels else None
    rows, _ = read_manifest(args.manifest)
    rows = [u for u in rows if u.split == args.split and u.audio is not None and u.label]
    if labels:
        rows = [u for u in rows if u.label in labels]
    if 0 < args.limit < len(rows):  # every k-th clip: the split's speakers and classes, not its first speaker
        rows = [rows[int(i * len(rows) / args.limit)] for i in range(args.limit)]
    if not rows:
        parser.error(f"{args.manifest}: no labelled audio rows in split {args.split!r}")
    clean = [load_audio(u.audio, SR) for u in rows]
    waves = {c: degraded_waves(rows, clean, c) for c in conditions}
    found = []
    for name in args.model:
        recognizer = EmotionRecognizer.load(name)
        for grouping in groupings:
            base = None
            for condition in conditions:
                result = scores(recognizer, rows, waves[condition], labels, grouping)
                base = result["ua"] if condition == "clean" else base
                drop = None if base is None else round(result["ua"] - base, 2)
                line = {"model": name, "split": args.split, "groups": grouping, "condition": condition,
                        "clips": len(rows), **result, "ua_change": drop}  # fmt: skip
                print(json.dumps(line), flush=True)
                found.append(line)
    return found


if __name__ == "__main__":
    main()
