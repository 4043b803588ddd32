"""Leave one corpus out: train on two of EmoDB / RAVDESS / nEMO, test on the third; mamer-base's dev criterion.

    python recipes/mamer_base/loco.py --out runs/loco                  # probes, released model, MAMER systems
    python recipes/mamer_base/loco.py --out runs/loco --no-train       # probes and released model only
    python recipes/mamer_base/loco.py --smoke --out /tmp/x             # seconds: a few rows, tiny model

It writes the three fold manifests (`mamer prepare --corpus speech-corpora`: the five classes all three corpora
have, a fifth of each training corpus's speakers as dev), scores each released model given (`--release`,
default mamer-base: audio view, its answers restricted to the five classes) on every fold's test corpus, runs the
probes on the same whisper-base features (linear, linear on vectors standardised per speaker or corpus, EmoBox's MLP),
trains the config's systems (`leave_one_corpus_out`: the unified model and the dedicated audio model, every seed
and fold; a rerun resumes) unless `--no-train`, and prints the table (`OUT/experiment/protocol.md`; folds 1-3
test EmoDB, RAVDESS, nEMO). Extra arguments are config overrides (`experiment.seeds=[0]`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mamer.config import load_experiment
from mamer.data.corpora import prepare_corpus
from mamer.data.manifest import few_per_class, read_manifest, write_manifest
from mamer.workflows.experiments.probe import PROBES
from mamer.workflows.experiments.protocol import released_model_records, run_protocol

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data beside the repository
TITLE = (
    "Leave one corpus out: fold 1 tests EmoDB, 2 RAVDESS, 3 nEMO (5 shared classes, trained on the other two)"
)
SMOKE = [  # seconds on 2 cores: the no-download encoders, a tiny model, one seed, one epoch
    "data.audio_encoder=logmel", "data.text_encoder=hashed", "data.audio_layers=[]", "model.width=32",
    "model.depth=1", "model.heads=2", "train.batch_size=8", "train.epochs=1", "train.progress=false",
    "experiment.seeds=[0]",
]  # fmt: skip


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("mamer_runs/loco"), help="manifests, features, runs")
    parser.add_argument("--data", type=Path, default=DATA, help="the folder holding emodb/, ravdess/, nemo/")
    parser.add_argument("--release", nargs="*", default=["mamer-base"],
                        help="released models to score (names or folders); none: --release with nothing")  # fmt: skip
    parser.add_argument("--no-train", action="store_true", help="no training: the released models and the probes only")
    parser.add_argument("--smoke", action="store_true", help="a few rows, a tiny model: checks the pipeline")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. experiment.seeds=[0,1,2]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    result = prepare_corpus("speech-corpora", args.data, args.out / "manifest.jsonl")
    for message in result.problems + result.notes:
        logging.info("%s", message)
    if args.smoke:
        for path in result.written:
            write_manifest(few_per_class(read_manifest(path)[0], 2), path)
    paths = [
        f"data.manifest={args.out / 'manifest_fold0.jsonl'}", f"data.features={args.out / 'features'}",
        f"run_dir={args.out / 'unified'}", f"experiment.fold_manifest={args.out / 'manifest_fold{fold}.jsonl'}",
        f"experiment.out={args.out / 'experiment'}",
    ]  # fmt: skip
    overrides = paths + (SMOKE if args.smoke else []) + args.overrides
    config, experiment = load_experiment("leave_one_corpus_out", overrides)
    released = []
    for model in args.release:
        released += released_model_records(model, f"released: {Path(model).name}", config, experiment)
    table = run_protocol(
        config, experiment, PROBES, views=["audio"], title=TITLE, train=not args.no_train,
        scored_elsewhere=released, probe_options={"epochs": 2} if args.smoke else None,
    )["table"]  # fmt: skip
    print(table)
    return table


if __name__ == "__main__":
    main()
