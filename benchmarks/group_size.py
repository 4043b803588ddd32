"""How much of one speaker's speech a speaker-normalised model needs: UA against the size of the group whose
frames standardise each clip, with and without the training statistics as a prior.

    python benchmarks/group_size.py --run RUN [--split test] [--sizes 1,2,4,8,16,32] [--prior-seconds 0,10,30]
        [--draws 3]

For a run trained with `model.audio_normalise: speaker` (`mamer.data.frame_norm`). Each speaker's clips of the
split are shuffled (draw d: seed d) and cut into groups of `size` clips; every clip is standardised by its group's
frames, as a deployment does that sees `size` clips of one voice (a recording's first segments, a short folder).
With a prior of `s` seconds the group's statistics are blended with the training rows' (the model's
`reference_*`) as if those were `s` seconds of frames (`blended`): a small group leans on the training
statistics, a large one on its own. (Measured 2026-12-07: it helps in-corpus and hurts across corpora, so the
recognizer does not blend; docs/results.md, "How much speech a group needs".) Rows `alone` (the training statistics: one clip, no group) and
`speaker` (all the speaker's clips: as evaluated) frame the curve. Prints one JSON object per setting: UA and
macro-F1 of the audio view in percent (mean over draws) and the mean seconds of speech per group.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict

import numpy as np
import torch
from torch.utils.data import DataLoader

from mamer.checkpoint import load_model
from mamer.data.dataset import collate
from mamer.data.frame_norm import Statistics, frame_statistics
from mamer.data.manifest import corpus_of
from mamer.scoring import predict_view, score_views
from mamer.workflows.evaluation.evaluate import split_dataset


def blended(own: Statistics | None, frames: float, prior: Statistics, prior_frames: float) -> Statistics:
    """`own` statistics of `frames` frames pooled with `prior` as if it were `prior_frames` frames: the mean and
    std of the mixture (`prior_frames` 0: `own`; no frames: `prior`)."""
    if own is None or frames <= 0:
        return prior
    if prior_frames <= 0:
        return own
    share = frames / (frames + prior_frames)
    (m1, s1), (m0, s0) = own, prior
    mean = share * m1 + (1 - share) * m0
    variance = share * (s1.square() + (m1 - mean).square()) + (1 - share) * (
        s0.square() + (m0 - mean).square()
    )
    return mean, variance.sqrt()


def scored(model, dataset, targets, task) -> dict:
    loader = DataLoader(dataset, batch_size=64, collate_fn=collate)
    results, _, _ = score_views(
        {"audio": predict_view(model, loader, "audio", torch.device("cpu"))}, task, targets
    )
    audio = results["audio"]
    return {"ua": round(100 * audio["uar"], 2), "macro_f1": round(100 * audio["macro_f1"], 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--sizes", default="1,2,4,8,16,32")
    p.add_argument("--prior-seconds", default="0,10,30")
    p.add_argument("--draws", type=int, default=3)
    args = p.parse_args()
    model, meta = load_model(args.run, "cpu")
    if meta.run_config.model.audio_normalise != "speaker":
        raise SystemExit(f"{args.run}: trained with model.audio_normalise {meta.run_config.model.audio_normalise}"
                         "; this benchmark needs speaker")  # fmt: skip
    task, targets = meta.run_config.data.task, meta.label_space
    frame_rate = float(meta.encoders["audio"].get("frame_rate", 50.0))
    dataset = split_dataset(meta, args.split, model, groups="speaker")
    reference = model.audio_in.reference_statistics()
    by_speaker: dict[tuple, list[int]] = defaultdict(list)
    for i, u in enumerate(dataset.utterances):
        by_speaker[(corpus_of(u.id), u.speaker)].append(dataset.rows[i])
    as_evaluated = list(dataset.speaker_statistics)
    print(json.dumps({"run": args.run, "split": args.split, "clips": len(dataset), "speakers": len(by_speaker),
                      "group": "speaker", **scored(model, dataset, targets, task)}))  # fmt: skip
    dataset.speaker_statistics = [reference] * len(as_evaluated)
    print(json.dumps({"group": "alone", **scored(model, dataset, targets, task)}))
    for size in [int(s) for s in args.sizes.split(",") if s]:
        for prior in [float(s) for s in args.prior_seconds.split(",") if s]:
            runs, seconds = [], []
            for draw in range(args.draws):
                statistics = list(as_evaluated)
                for rows in by_speaker.values():
                    rows = sorted(rows)
                    random.Random(draw).shuffle(rows)
                    for start in range(0, len(rows), size):
                        group = rows[start : start + size]
                        blocks = [dataset.features.audio_of(r) for r in group]
                        frames = sum(len(b) for b in blocks)
                        seconds.append(frames / frame_rate)
                        own = frame_statistics(blocks)
                        mixed = blended(own, frames, reference, prior * frame_rate)
                        for r in group:
                            statistics[r] = mixed
                dataset.speaker_statistics = statistics
                runs.append(scored(model, dataset, targets, task))
            print(json.dumps({"group": f"{size} clips", "prior_seconds": prior,
                              "ua": round(float(np.mean([r["ua"] for r in runs])), 2),
                              "ua_draws": [r["ua"] for r in runs],
                              "macro_f1": round(float(np.mean([r["macro_f1"] for r in runs])), 2),
                              "mean_group_seconds": round(float(np.mean(seconds)), 1)}))  # fmt: skip
    dataset.speaker_statistics = as_evaluated


if __name__ == "__main__":
    main()
