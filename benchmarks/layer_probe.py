"""Which hidden states of a frozen audio encoder carry emotion: a linear probe per state, scored on dev rows only.

Each clip is encoded once with every hidden state kept; each state (and each mean of two adjacent states, what
`data.audio_layers=[k, k+1]` gives) is mean-pooled over time and fed to a class-balanced logistic regression
trained on the train split and scored (UAR) on the dev split. Nothing is read from the test split, so a layer
choice made here can be reported on that corpus's test data, or on another corpus, without bias.

    python benchmarks/layer_probe.py --manifest mamer_runs/cross/ravdess/manifest.jsonl
    python benchmarks/layer_probe.py --manifest mamer_runs/cross/emodb/manifest_fold0.jsonl
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler

from mamer.data.audio import load_audio
from mamer.data.manifest import read_manifest
from mamer.encoders.registry import load_audio_encoder


def pooled_states(encoder, paths: list[Path], num_states: int, batch: int = 8) -> np.ndarray:
    """(clips, states, dim): every hidden state of each clip, mean-pooled over its frames."""
    out = []
    for start in range(0, len(paths), batch):
        waves = [load_audio(p, encoder.sample_rate) for p in paths[start : start + batch]]
        with torch.inference_mode():
            for feats in encoder.encode(waves):
                out.append(feats.reshape(len(feats), num_states, -1).mean(0).numpy())
    return np.stack(out)


def probe_uar(train_x, train_y, dev_x, dev_y) -> float:
    """Dev UAR of a class-balanced logistic regression on standardised features."""
    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(max_iter=2000, class_weight="balanced", C=0.1)
    clf.fit(scaler.transform(train_x), train_y)
    return balanced_accuracy_score(dev_y, clf.predict(scaler.transform(dev_x)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True, type=Path)
    parser.add_argument("--encoder", default="whisper-base")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--dev-split", default="dev")
    args = parser.parse_args()

    rows, problems = read_manifest(args.manifest)
    if problems:
        raise SystemExit(f"{args.manifest}: {problems[0]}")
    parts = {
        split: [u for u in rows if u.split == split and u.audio and u.label]
        for split in (args.train_split, args.dev_split)
    }
    encoder = load_audio_encoder(args.encoder, layer_pooling="learned")
    num_states = len(encoder.layers)
    began = time.perf_counter()
    features = {s: pooled_states(encoder, [Path(u.audio) for u in us], num_states) for s, us in parts.items()}
    labels = {s: np.array([u.label for u in us]) for s, us in parts.items()}
    print(
        f"{args.encoder}: {num_states} hidden states; train {len(parts[args.train_split])} / dev "
        f"{len(parts[args.dev_split])} clips of {args.manifest} encoded in {time.perf_counter() - began:.0f} s"
    )
    choices = [[k] for k in range(num_states)] + [[k, k + 1] for k in range(num_states - 1)]
    scores = {}
    for layers in choices:
        train_x = features[args.train_split][:, layers].mean(1)
        dev_x = features[args.dev_split][:, layers].mean(1)
        scores[tuple(layers)] = probe_uar(train_x, labels[args.train_split], dev_x, labels[args.dev_split])
    print("| hidden states | dev UAR |\n|---|---|")
    for layers, uar in scores.items():
        print(f"| {', '.join(map(str, layers))} | {uar:.3f} |")
    best = max(scores, key=scores.get)
    print(
        f"best on {args.dev_split}: data.audio_layers=[{','.join(map(str, best))}] (dev UAR {scores[best]:.3f})"
    )


if __name__ == "__main__":
    main()
