"""A fixed protocol: every system over every fold of a corpus, reported as the field reports it (EmoBox's table).

`run_protocol` trains the config's experiment systems (`mamer experiment`: systems x seeds x folds, resumable),
runs the probe baselines (`mamer.workflows.experiments.probe`) on the same folds and cached features, and
writes ``protocol.json`` and ``protocol.md`` into the experiment folder: per system and view, UA (balanced
accuracy, our ``uar``), WA (accuracy) and macro-F1 in percent, the mean and sample std over folds of each fold's
mean over seeds, and the std over seeds of the all-folds mean (the seeds' spread); then one row per fold.
Published rows (EmoBox's, say) can be set beside them, and a released model scored on the same test rows
(`released_model_records`). Each probe or released-model result is saved as it finishes
(``probe_<kind>/seed<s>/fold<k>.json``, ``release_<name>/fold<k>.json``), so a rerun after a kill goes on where
it stopped.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from mamer.atomic import atomic_write, write_json
from mamer.config import ExperimentConfig, RunConfig
from mamer.data.extract import prepare_features
from mamer.data.manifest import read_manifest, train_classes
from mamer.metrics import categorical_metrics
from mamer.workflows.evaluation.evaluate import GROUP_NOTES, evaluate_run
from mamer.workflows.experiments.experiment import (
    RUN_FILE,
    experiment_dir,
    plan,
    run_experiment,
    system_config,
)
from mamer.workflows.experiments.probe import run_probe
from mamer.workflows.inference.recognizer import EmotionRecognizer

log = logging.getLogger(__name__)

METRICS = {"UA": "uar", "WA": "accuracy", "macro-F1": "macro_f1"}  # EmoBox's names -> ours
PROBE_NAMES = {
    "linear": "probe: linear",
    "linear_speaker": "probe: linear, per-speaker standardised",
    "linear_corpus": "probe: linear, per-corpus standardised",
    "mlp": "probe: EmoBox MLP",
}


def mamer_records(config: RunConfig, e: ExperimentConfig, split: str = "test") -> list[dict]:
    """One record per finished run and view: system, view, seed, fold and the three metrics (fractions). A
    run normalising audio per speaker also gives rows `<system>, each clip alone` (its audio views with every
    clip standardised by the training rows' statistics: what `predict` gives a user with one clip of a
    speaker) and `<system>, a corpus's clips as one group` (each clip by all the split's clips of its corpus: a
    user's folder of clips from one source, speakers unknown)."""
    records = []
    for run in plan(config, e):
        result = json.loads((Path(run.config.run_dir) / RUN_FILE).read_text())
        for view, scores in result["reports"][split]["results"].items():
            if scores:
                records.append(score_record(run.system, view, run.seed, run.fold, scores))
        if run.config.model.audio_normalise == "speaker":
            for groups in ("none", "corpus"):  # beside the speaker groups the run was scored with
                report = grouped_report(Path(run.config.run_dir), split, groups)
                for view, scores in report["results"].items():
                    if scores and "audio" in view:
                        system = run.system + GROUP_NOTES[groups]
                        records.append(score_record(system, view, run.seed, run.fold, scores))
    return records


def grouped_report(run_dir: Path, split: str, groups: str) -> dict:
    """The run's report on `split` with its clips standardised by `groups` (`evaluate_run(..., groups=)`), kept
    in `report_<split>_groups_<groups>/` and read back from there on a rerun."""
    folder = run_dir / f"report_{split}_groups_{groups}"
    if not (folder / "report.json").is_file():
        evaluate_run(run_dir, split, report_dir=folder, groups=groups)
    return json.loads((folder / "report.json").read_text())


def probe_records(
    config: RunConfig, e: ExperimentConfig, probes: list[str], options: dict | None = None
) -> list[dict]:
    """One record per probe, seed and fold (the linear probe is deterministic: seed 0 only), each run once and
    saved in the experiment folder; ``options`` go to the MLP probe (``epochs``, ``lr``, ``batch``)."""
    out = experiment_dir(config, e)
    records = []
    for fold in range(e.folds) if e.folds else [None]:
        fold_config = system_config(config, e, e.systems[0], e.seeds[0], fold)
        features = None
        for kind in probes:
            for seed in e.seeds if kind == "mlp" else e.seeds[:1]:
                path = out / f"probe_{kind}" / f"seed{seed}" / f"fold{0 if fold is None else fold}.json"
                if not path.is_file():
                    features = features or prepare_features(fold_config, fold_config.train.progress)
                    manifest = Path(fold_config.data.manifest)
                    classes = fold_config.data.labels or train_classes(read_manifest(manifest)[0])
                    result = run_probe(
                        kind, features, manifest, classes, seed, **(options if kind == "mlp" else {})
                    )
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_json(path, result)
                    log.info(
                        "probe %s seed %d fold %s: test UA %.4f", kind, seed, fold, result["test"]["uar"]
                    )
                result = json.loads(path.read_text())
                records.append(score_record(PROBE_NAMES[kind], "audio", seed, fold, result["test"]))
    return records


def released_model_records(
    model: str | Path, system: str, config: RunConfig, e: ExperimentConfig, batch_size: int = 16
) -> list[dict]:
    """A released model (a name or folder `EmotionRecognizer.load` takes) scored on each fold's test rows, audio
    view, its predictions restricted to the protocol's classes (``data.labels``, which the model must have), as
    a user scoring a corpus with fewer classes would (`predict(labels=...)`); one record per fold, as
    ``system``."""
    out = experiment_dir(config, e) / f"release_{Path(str(model)).name}"
    recognizer = None
    records = []
    for fold in range(e.folds) if e.folds else [None]:
        path = out / f"fold{0 if fold is None else fold}.json"
        if not path.is_file():
            recognizer = recognizer or EmotionRecognizer.load(model)
            manifest = Path(system_config(config, e, e.systems[0], e.seeds[0], fold).data.manifest)
            rows = read_manifest(manifest)[0]
            classes = config.data.labels or train_classes(rows)
            test = [u for u in rows if u.split == "test" and u.audio is not None and u.label in classes]
            predicted = recognizer.predict_batch(
                [{"audio": u.audio} for u in test], batch_size, labels=classes
            )
            scores = categorical_metrics(
                np.array([classes.index(u.label) for u in test]),
                np.array([classes.index(p.label) for p in predicted]),
                len(classes),
            )
            out.mkdir(parents=True, exist_ok=True)
            write_json(path, scores)
            log.info("%s fold %s: test UA %.4f on %d rows", system, fold, scores["uar"], len(test))
        records.append(score_record(system, "audio", 0, fold, json.loads(path.read_text())))
    return records


def score_record(system: str, view: str, seed: int, fold: int | None, scores: dict) -> dict:
    """A protocol record of one system's scores (`categorical_metrics`' keys) on one fold and seed."""
    return {"system": system, "view": view, "seed": seed, "fold": fold,
            **{name: float(scores[key]) for name, key in METRICS.items()}}  # fmt: skip


def aggregate(records: list[dict]) -> list[dict]:
    """Per (system, view), in order of first appearance: each metric's per-fold means over seeds (percent),
    their mean and sample std over folds, and the sample std over seeds of each seed's mean over folds."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        groups[r["system"], r["view"]].append(r)
    rows = []
    for (system, view), mine in groups.items():
        folds = sorted({r["fold"] for r in mine}, key=lambda f: -1 if f is None else f)
        seeds = sorted({r["seed"] for r in mine})
        row = {"system": system, "view": view, "folds": folds, "seeds": seeds}
        for name in METRICS:
            per_fold = [100 * np.mean([r[name] for r in mine if r["fold"] == f]) for f in folds]
            per_seed = [100 * np.mean([r[name] for r in mine if r["seed"] == s]) for s in seeds]
            row[name] = {
                "mean": float(np.mean(per_fold)),
                "std": float(np.std(per_fold, ddof=1)) if len(per_fold) > 1 else 0.0,
                "seed_std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0,
                "per_fold": [float(v) for v in per_fold],
            }
        rows.append(row)
    return rows


def protocol_table(rows: list[dict], reference: dict[str, tuple[float, float, float]] | None = None) -> str:
    """The headline table: mean ± std over folds per metric, the seeds and their spread (std of UA over seeds);
    ``reference`` rows (name -> UA, WA, macro-F1 in percent, as published) follow, marked so."""
    lines = [
        "| system | view | UA | WA | macro-F1 | seeds | UA spread over seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [f"{row[m]['mean']:.2f} ± {row[m]['std']:.2f}" for m in METRICS]
        spread = f"{row['UA']['seed_std']:.2f}" if len(row["seeds"]) > 1 else "–"
        lines.append(
            f"| {row['system']} | {row['view']} | {' | '.join(cells)} | {len(row['seeds'])} | {spread} |"
        )
    for name, scores in (reference or {}).items():
        lines.append(f"| {name} (published) | audio | {' | '.join(f'{v:.2f}' for v in scores)} | – | – |")
    return "\n".join(lines)


def fold_table(rows: list[dict]) -> str:
    """One line per system, view and fold: UA / WA / macro-F1 in percent, each the mean over the seeds."""
    lines = ["| system | view | fold | UA | WA | macro-F1 |", "|---|---|---|---|---|---|"]
    for row in rows:
        for i, fold in enumerate(row["folds"]):
            cells = " | ".join(f"{row[m]['per_fold'][i]:.2f}" for m in METRICS)
            lines.append(
                f"| {row['system']} | {row['view']} | {'-' if fold is None else fold + 1} | {cells} |"
            )
    return "\n".join(lines)


def run_protocol(
    config: RunConfig,
    e: ExperimentConfig,
    probes: list[str] = ("linear", "mlp"),
    views: list[str] | None = None,
    reference: dict[str, tuple[float, float, float]] | None = None,
    title: str = "",
    probe_options: dict | None = None,
    train: bool = True,
    scored_elsewhere: list[dict] = (),
) -> dict:
    """Train (or finish) every system, seed and fold, run the probes, and write protocol.json / protocol.md;
    returns {"rows": aggregate(...), "table": markdown}. ``views`` keeps those views only (default: all);
    ``probe_options`` go to the MLP probe; ``train=False`` leaves the experiment's systems out (the probes
    only); ``scored_elsewhere`` adds records of systems scored outside (a released model: `score_record`)."""
    if e.test_splits[0] != "test":
        raise ValueError(
            f"a protocol scores its folds' test split; experiment.test_splits is {e.test_splits}"
        )
    records = list(scored_elsewhere)
    if train:
        run_experiment(config, e)
        records += mamer_records(config, e)
    records += probe_records(config, e, list(probes), probe_options or {})
    if views:
        records = [r for r in records if r["view"] in views]
    rows = aggregate(records)
    folds = f"{e.folds} folds" if e.folds else "one split"
    text = (f"# {title or config.name}\n\nIn percent; mean ± sample std over {folds}, each fold's score the mean over"
            f" its seeds.\n\n{protocol_table(rows, reference)}\n\n## Per fold\n\n{fold_table(rows)}\n")  # fmt: skip
    out = experiment_dir(config, e)
    summary = {"title": title, "rows": rows, "records": records, "reference": reference or {}}
    write_json(out / "protocol.json", summary)
    atomic_write(out / "protocol.md", lambda tmp: tmp.write_text(text))
    return {"rows": rows, "table": text}
