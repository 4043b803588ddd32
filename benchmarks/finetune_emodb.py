"""Fine-tuning from a trained model against training from scratch, on EmoDB speaker folds with few rows.

For each speaker fold and each fraction of its training rows (drawn per class, seeded), two runs on the same
rows: from scratch, and `train.init_from=SOURCE` (a model that never saw EmoDB, e.g. mamer_base_no_emodb), its
copied weights at `--init-lr-scale` times the learning rate (default: `train.init_lr_scale`'s, 1). Both
use the source's architecture and frozen encoders and EmoDB's own seven classes (boredom included: a label set
the source does not have, so the fine-tuned run gets a new head). Prints test UAR and macro-F1 per view, mean ±
std over the folds, and writes them to OUT/finetune.json.

    python benchmarks/finetune_emodb.py --source mamer_runs/mamer_base/no_emodb --features FEATURES_ROOT \
        --out /tmp/finetune --folds 0,1,2,3,4 --fractions 0.1,0.25,1

Results are kept in OUT/finetune.json under `fraction/fold/start` (`finetuned_lr<scale>` for fine-tuned runs), so
a rerun adds only the runs missing, and runs at another `--init-lr-scale` sit beside them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from mamer.checkpoint import LAST_DIR, read_meta
from mamer.config import TrainConfig, load_config
from mamer.data.corpora import prepare_corpus
from mamer.data.manifest import Utterance, read_manifest, write_manifest
from mamer.workflows.evaluation.evaluate import evaluate_run
from mamer.workflows.inference.pretrained import resolve_model
from mamer.workflows.training.init_from import adopt_source
from mamer.workflows.training.loop import train

VIEWS = ("audio", "audio+text")
METRICS = ("uar", "macro_f1")


def subsample(rows: list[Utterance], fraction: float, seed: int) -> list[Utterance]:
    """The rows with `fraction` of the training rows of each class kept (at least one), the other splits whole."""
    if fraction >= 1:
        return rows
    by_class = defaultdict(list)
    for row in rows:
        if row.split == "train":
            by_class[row.label].append(row)
    kept = set()
    rng = random.Random(seed)
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda u: u.id)
        kept.update(u.id for u in rng.sample(members, max(1, round(fraction * len(members)))))
    return [r for r in rows if r.split != "train" or r.id in kept]


def run_one(args, manifest: Path, run_dir: Path, source: Path | None, source_meta) -> dict:
    overrides = [
        f"data.manifest={manifest}", f"data.features={args.features}", f"run_dir={run_dir}", "data.task=categorical",
        "data.labels=[]", "data.dev_split=dev", "data.test_split=test", f"train.epochs={args.epochs}",
        f"train.patience={args.patience}", "train.progress=false", "train.audio_oversample=1",
        f"train.batch_size={args.batch_size}",
    ]  # fmt: skip
    if source is not None:
        overrides += [f"train.init_from={source}", f"train.init_lr_scale={args.init_lr_scale}"]
    config = load_config("quickstart", overrides)
    config = adopt_source(config, source_meta)  # scratch too: the same architecture and encoders
    config = dataclasses.replace(config, name=run_dir.name)
    started = time.time()
    train(config, resume=(run_dir / LAST_DIR).exists())  # a run killed part way goes on from its last epoch
    report = evaluate_run(run_dir, "test")
    scores = {v: {m: report["results"][v][m] for m in METRICS} for v in VIEWS if v in report["results"]}
    return {"scores": scores, "train_rows": report["n"], "wall_s": time.time() - started}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source", required=True, help="model to fine-tune from (name, run or release folder)"
    )
    parser.add_argument("--features", required=True, help="feature cache root (EmoDB features are reused)")
    parser.add_argument("--emodb", default="../shared/data/emodb")
    parser.add_argument("--out", type=Path, default=Path("mamer_runs/finetune_emodb"))
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--fractions", default="0.1,0.25,1")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--starts", default="scratch,finetuned", help="which runs: scratch, finetuned or both"
    )
    parser.add_argument(
        "--init-lr-scale", type=float, default=TrainConfig.init_lr_scale,
        help="train.init_lr_scale of the fine-tuned runs (default: the config's, %(default)s)",
    )  # fmt: skip
    args = parser.parse_args()
    source = resolve_model(args.source)
    source_meta = read_meta(source)
    prepare_corpus("emodb", Path(args.emodb), args.out / "manifest.jsonl", folds=5)
    results = (
        json.loads((args.out / "finetune.json").read_text()) if (args.out / "finetune.json").is_file() else {}
    )
    for fraction in [float(f) for f in args.fractions.split(",")]:
        for fold in [int(k) for k in args.folds.split(",")]:
            rows, _ = read_manifest(args.out / f"manifest_fold{fold}.jsonl")
            manifest = args.out / f"fraction{fraction:g}" / f"fold{fold}.jsonl"
            write_manifest(subsample(rows, fraction, seed=fold), manifest)
            for start, init in (("scratch", None), ("finetuned", source)):
                key = f"{fraction:g}/{fold}/{start}"
                if start == "finetuned":
                    key += f"_lr{args.init_lr_scale:g}"
                if key in results or start not in args.starts.split(","):
                    continue
                run_dir = args.out / f"fraction{fraction:g}" / f"fold{fold}_{key.rsplit('/', 1)[1]}"
                results[key] = run_one(args, manifest, run_dir, init, source_meta)
                print(key, json.dumps(results[key]["scores"]), f"{results[key]['wall_s']:.0f} s", flush=True)
                (args.out / "finetune.json").write_text(json.dumps(results, indent=1))
    print(table(results))


def table(results: dict) -> str:
    """Markdown: rows = fraction x start, columns = view x metric, mean ± std over the folds."""
    groups = defaultdict(list)
    for key, result in results.items():
        fraction, _, start = key.split("/")  # start: scratch or finetuned_lr<scale>
        groups[fraction, start].append(result)
    columns = [(v, m) for v in VIEWS for m in METRICS]
    lines = [
        "| train rows | start | folds | " + " | ".join(f"{v} {m}" for v, m in columns) + " |",
        "|---" * (len(columns) + 3) + "|",
    ]
    for (fraction, start), runs in sorted(
        groups.items(), key=lambda kv: (float(kv[0][0]), kv[0][1] != "scratch")
    ):
        cells = []
        for view, metric in columns:
            values = [r["scores"][view][metric] for r in runs if view in r["scores"]]
            std = np.std(values, ddof=1) if len(values) > 1 else 0.0
            cells.append(f"{np.mean(values):.3f} ± {std:.3f}")
        lines.append(f"| {float(fraction):.0%} | {start} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
