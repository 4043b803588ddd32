"""One corpus on the EmoBox protocol, from scratch: its folds, every system, the probes and the table.

    python recipes/emobox/run.py --corpus emodb   --out runs/emobox     # EmoBox's 5 EmoDB folds
    python recipes/emobox/run.py --corpus ravdess --out runs/emobox     # EmoBox's 6 RAVDESS folds
    python recipes/emobox/run.py --corpus nemo    --out runs/emobox     # 3 leave-speakers-out nEMO folds
    python recipes/emobox/run.py --corpus emodb --smoke --out /tmp/x    # seconds: a few rows, tiny model

It writes the fold manifests (`mamer prepare ... --emobox-folds`, or nEMO's own folds), trains the systems of the
corpus's config (`emobox_emodb`, `emobox_ravdess`, `nemo_folds`: the unified model and the dedicated audio
model, every seed and fold; a rerun resumes), runs the probes on the same features (linear, linear on vectors
standardised per speaker or per corpus, EmoBox's MLP), and prints EmoBox's table beside EmoBox's published rows
(`OUT/<corpus>/experiment/protocol.md`). Extra arguments are config overrides (`train.epochs=20`,
`experiment.seeds=[0]`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mamer.config import load_experiment
from mamer.data.corpora import prepare_corpus
from mamer.data.manifest import few_per_class, read_manifest, write_manifest
from mamer.workflows.experiments.probe import PROBES
from mamer.workflows.experiments.protocol import run_protocol

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data beside the repository
CONFIGS = {"emodb": "emobox_emodb", "ravdess": "emobox_ravdess", "nemo": "nemo_folds"}
TITLES = {
    "emodb": "EmoDB, EmoBox's 5 folds (not speaker-independent), 7 classes",
    "ravdess": "RAVDESS, EmoBox's 6 speaker-independent folds, 8 classes",
    "nemo": "nEMO, 3 leave-speakers-out folds, 6 classes",
}
# EmoBox (Ma et al., Interspeech 2024), Table 4: frozen features of each encoder, UA / WA / macro-F1 in percent
PUBLISHED = {
    "emodb": {
        "EmoBox: wav2vec 2.0 base": (82.06, 83.14, 82.21), "EmoBox: HuBERT base": (87.73, 87.73, 87.82),
        "EmoBox: WavLM base": (87.03, 87.12, 86.76), "EmoBox: HuBERT large": (89.81, 90.26, 89.86),
        "EmoBox: WavLM large": (92.58, 92.67, 92.57), "EmoBox: Whisper large v3": (91.26, 92.43, 91.84),
    },
    "ravdess": {
        "EmoBox: wav2vec 2.0 base": (54.33, 55.40, 53.99), "EmoBox: HuBERT base": (65.43, 66.21, 65.31),
        "EmoBox: WavLM base": (61.56, 62.10, 61.18), "EmoBox: HuBERT large": (70.00, 70.29, 69.54),
        "EmoBox: WavLM large": (72.00, 72.22, 71.42), "EmoBox: Whisper large v3": (75.32, 75.87, 75.19),
    },
}  # fmt: skip
SMOKE = [  # seconds on 2 cores: the no-download encoders, a tiny model, one seed, one epoch, two folds
    "data.audio_encoder=logmel", "data.text_encoder=hashed", "data.audio_layers=[]", "model.width=32",
    "model.depth=1", "model.heads=2", "train.batch_size=8", "train.epochs=1", "train.progress=false",
    "experiment.seeds=[0]", "experiment.folds=2",
]  # fmt: skip


def prepare(corpus: str, data: Path, folder: Path, smoke: bool) -> None:
    """The corpus's fold manifests in ``folder`` (manifest_fold{k}.jsonl); with ``smoke``, 2 rows of each class
    per split and fold."""
    emobox = data / "emobox" / corpus if corpus in PUBLISHED else None
    result = prepare_corpus(corpus, data / corpus, folder / "manifest.jsonl", emobox=emobox)
    for message in result.problems + result.notes:
        logging.info("%s", message)
    if smoke:
        for path in result.written:
            write_manifest(few_per_class(read_manifest(path)[0], 2), path)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=sorted(CONFIGS), required=True)
    parser.add_argument(
        "--out", type=Path, default=Path("mamer_runs/emobox"), help="runs, manifests, features"
    )
    parser.add_argument("--data", type=Path, default=DATA, help="the folder holding <corpus>/ and emobox/")
    parser.add_argument("--smoke", action="store_true", help="a few rows, a tiny model: checks the pipeline")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. experiment.seeds=[0,1,2]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    folder = args.out / args.corpus
    prepare(args.corpus, args.data, folder, args.smoke)
    paths = [
        f"data.manifest={folder / 'manifest_fold0.jsonl'}", f"data.features={args.out / 'features'}",
        f"run_dir={folder / 'unified'}", f"experiment.fold_manifest={folder / 'manifest_fold{fold}.jsonl'}",
        f"experiment.out={folder / 'experiment'}",
    ]  # fmt: skip
    config, experiment = load_experiment(
        CONFIGS[args.corpus], paths + (SMOKE if args.smoke else []) + args.overrides
    )
    views = ["audio", "audio+text"] if args.corpus == "nemo" else ["audio"]
    result = run_protocol(config, experiment, PROBES, views=views, reference=PUBLISHED.get(args.corpus),
                          title=TITLES[args.corpus], probe_options={"epochs": 2} if args.smoke else None)  # fmt: skip
    print(result["table"])
    return result["table"]


if __name__ == "__main__":
    main()
