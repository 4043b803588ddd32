"""`mamer experiment`: the paper's comparison in one command.

Every system (the unified model, the dedicated audio-only, text-only and multimodal models, the two ablations) is
the same run config plus a few overrides. Each is trained for every seed (and speaker fold) on the same cached
features, scored on every view it can take, and the runs are averaged into `experiment.json`, `experiment.md` (rows
= systems, columns = views x metrics, with parameter counts and wall time; a dedicated multimodal model also gets a
row for its scores with a modality missing) and robustness curves (`robustness.png`).

Finished runs are kept (`experiment_run.json` in each run folder), so a rerun after a crash goes on with the first
unfinished run, resuming its training from its last epoch. Each run records a digest of the mamer source that
trained it; a reused run made by other code is reused all the same (a docstring edit should not cost a retrain),
but the rerun warns and names it, and `experiment.json` / `experiment.md` list the code versions behind each system.
An experiment folder belongs to the config its systems are built on (`experiment_config.json`): another config is
refused, naming the keys that differ.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import mamer
from mamer.atomic import atomic_write
from mamer.checkpoint import LAST_DIR
from mamer.config import (
    ExperimentConfig,
    RunConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    differing_keys,
)
from mamer.data.extract import prepare_features
from mamer.data.manifest import read_manifest, splits
from mamer.data.synthetic import quickstart_corpus
from mamer.device import resolve_device
from mamer.workflows.evaluation.evaluate import evaluate_run
from mamer.workflows.evaluation.model_card import write_model_card
from mamer.workflows.evaluation.robustness import robustness_curves
from mamer.workflows.experiments.summary import summarise, write_outputs
from mamer.workflows.training.loop import train

log = logging.getLogger(__name__)

# A dedicated model is supervised only: no contrastive loss, no reconstruction, and no [MASK]ed inputs.
_SUPERVISED_ONLY = ["loss.contrastive=0", "loss.mae=0", "loss.mask_ratio=0"]
SYSTEMS: dict[str, list[str]] = {
    "unified": [],
    "audio_only": ["model.views=[audio]", *_SUPERVISED_ONLY],
    "text_only": ["model.views=[text]", *_SUPERVISED_ONLY],
    "multimodal_only": ["model.views=[audio+text]", *_SUPERVISED_ONLY],
    # the dedicated multimodal model with [MASK] augmentation of its inputs (the unified model's masking, alone)
    "multimodal_only_masked": ["model.views=[audio+text]", "loss.contrastive=0", "loss.mae=0"],
    "no_contrastive": ["loss.contrastive=0"],
    "no_mae": ["loss.mae=0", "loss.mask_ratio=0"],  # no reconstruction, and so nothing to mask for
    "mask_mae_pass_only": ["loss.mask_passes=mae"],  # supervised passes see unmasked inputs
    # L_C between the unimodal views' [CLS] outputs instead of their mean-pooled tokens
    "contrastive_on_cls": ["loss.contrastive_pooling=cls"],
}
RUN_FILE = "experiment_run.json"
CONFIG_FILE = "experiment_config.json"  # in the experiment folder: the config its systems are built on


@dataclass
class Run:
    """One training run of the experiment: a system, a seed, a fold (None without folds), its full config."""

    system: str
    seed: int
    fold: int | None
    config: RunConfig


@functools.cache
def source_digest() -> str:
    """The first 12 hex digits of a sha256 over mamer's own source files (.py and built-in configs)."""
    root = Path(mamer.__file__).parent
    digest = hashlib.sha256()
    for path in sorted([*root.rglob("*.py"), *root.rglob("*.yaml")]):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def experiment_dir(config: RunConfig, e: ExperimentConfig) -> Path:
    return Path(e.out or Path(config.run_dir).parent / f"{config.name}_experiment")


def validate_experiment(e: ExperimentConfig) -> None:
    """Reject an experiment section that cannot run, naming the key to fix."""
    unknown = [s for s in e.systems if s not in SYSTEMS and s not in e.custom]
    if unknown or not e.systems:
        raise ValueError(
            f"experiment.systems: unknown {unknown}; use {sorted(SYSTEMS)} or define them in experiment.custom"
        )
    if not e.seeds:
        raise ValueError("experiment.seeds must list at least one seed")
    if e.folds < 0 or (e.folds and "{fold}" not in e.fold_manifest):
        raise ValueError("experiment.folds > 0 needs experiment.fold_manifest with {fold} in it")
    bad = [f for f in e.robustness if not 0.0 <= f < 1.0]
    if bad:
        raise ValueError(f"experiment.robustness: fractions must be in [0, 1), got {bad}")
    if not e.test_splits:
        raise ValueError("experiment.test_splits must name at least one split")
    if e.corpus not in ("", "quickstart"):
        raise ValueError(f"experiment.corpus: only 'quickstart' is built here, got {e.corpus!r}")


def system_config(
    config: RunConfig, e: ExperimentConfig, system: str, seed: int, fold: int | None
) -> RunConfig:
    """The run config of one system, seed and fold, with its own run folder under the experiment folder."""
    overrides = e.custom[system] if system in e.custom else SYSTEMS[system]
    if fold is not None:  # the fold's manifest, unless the system names its own; "{fold}" stands for the fold
        overrides = [o.replace("{fold}", str(fold)) for o in [f"data.manifest={e.fold_manifest}", *overrides]]
    extra = [f"train.seed={seed}", f"name={system}"]
    run = config_from_dict(apply_overrides(config_to_dict(config), [*overrides, *extra]))
    folder = experiment_dir(config, e) / system / f"seed{seed}"
    run.run_dir = str(folder / f"fold{fold}" if fold is not None else folder)
    run.validate()
    return run


def plan(config: RunConfig, e: ExperimentConfig) -> list[Run]:
    """Every run, fold by fold and seed by seed, all systems of a fold together (they share its features)."""
    validate_experiment(e)
    folds = list(range(e.folds)) if e.folds else [None]
    return [
        Run(system, seed, fold, system_config(config, e, system, seed, fold))
        for fold in folds
        for seed in e.seeds
        for system in e.systems
    ]


def _report_dir(run_dir: Path, split: str, main_split: str) -> Path | None:
    return None if split == main_split else run_dir / f"report_{split}"


def _trained_with(config: RunConfig) -> dict:
    """What a run's result depends on: its config without the progress bar and the extraction batch size (which
    changes speed, and features only in their last bits: 2e-5 at most between whisper-base batches of 1 and 8).
    Keys added to the config since a run was saved read as their defaults."""
    trained = config_to_dict(config)
    trained["train"] = {k: v for k, v in trained["train"].items() if k != "progress"}
    trained["data"] = {k: v for k, v in trained["data"].items() if k != "extract_batch_size"}
    return trained


def _systems_base(config: RunConfig) -> dict:
    """What every system of an experiment is built on: what its runs are trained with, less the name and the run
    folder, which each system's run replaces."""
    base = _trained_with(config)
    del base["name"], base["run_dir"]
    return base


def claim_folder(config: RunConfig, out: Path) -> None:
    """An experiment folder holds the systems of one config: record it on first use, refuse a config that differs.

    Without this, a config that inherits its experiment section through `base:` (an audio-only baseline of the
    unified model, say) would train its own `unified` system, in fact audio-only, into its parent's folder."""
    path = out / CONFIG_FILE
    if not path.is_file():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(config_to_dict(config), indent=1) + "\n"))
        return
    saved = json.loads(path.read_text())
    differs = differing_keys(_systems_base(config_from_dict(saved)), _systems_base(config))
    if differs:
        raise ValueError(
            f"{out} holds the experiment of config {saved['name']!r}, which differs from this one ({config.name!r})"
            f" in {', '.join(differs)}: set experiment.out to another folder, or delete {out}"
        )


def finished(run: Run) -> dict | None:
    """The saved result of a run an earlier invocation finished, or None; a different config is an error."""
    done = Path(run.config.run_dir) / RUN_FILE
    if not done.is_file():
        return None
    result = json.loads(done.read_text())
    differs = differing_keys(_trained_with(config_from_dict(result["config"])), _trained_with(run.config))
    if differs:
        raise ValueError(
            f"{done} was made with a different config (in {', '.join(differs)}); delete {run.config.run_dir} or"
            " set experiment.out elsewhere"
        )
    if result.get("code") != source_digest():
        log.warning(
            "%s was trained by other mamer code (source %s, now %s); its result is reused: delete %s to retrain",
            done, result.get("code", "unrecorded"), source_digest(), run.config.run_dir,
        )  # fmt: skip
    return result


def run_one(run: Run, features: Path, e: ExperimentConfig) -> dict:
    """Train, evaluate on each test split the run's manifest has, and measure robustness."""
    run_dir = Path(run.config.run_dir)
    started = time.time()
    train(run.config, resume=(run_dir / LAST_DIR).exists(), features=features)
    trained = time.time()
    device = str(resolve_device(run.config.train.device))
    have = splits(read_manifest(Path(run.config.data.manifest))[0])
    reports, robustness = {}, {}
    for split in [s for s in e.test_splits if s in have]:
        report_dir = _report_dir(run_dir, split, e.test_splits[0])
        reports[split] = evaluate_run(run_dir, split, device, report_dir=report_dir)
        if report_dir is None:  # the model card describes the run on its main test split
            write_model_card(run_dir, reports[split])
        if e.robustness:
            robustness[split] = robustness_curves(run_dir, split, e.robustness, device)
    result = {
        "system": run.system, "seed": run.seed, "fold": run.fold, "params": next(iter(reports.values()))["params"],
        "train_s": trained - started, "eval_s": time.time() - trained, "reports": reports,
        "robustness": robustness, "config": config_to_dict(run.config), "code": source_digest(),
    }  # fmt: skip
    (run_dir / RUN_FILE).write_text(json.dumps(result, indent=1))
    return result


def run_experiment(config: RunConfig, e: ExperimentConfig) -> dict:
    """Run (or finish) every run of the experiment, then write and return its summary."""
    runs = plan(config, e)
    out = experiment_dir(config, e)
    claim_folder(config, out)
    if e.corpus == "quickstart":
        quickstart_corpus(Path(config.data.manifest).parent, progress=config.train.progress)
    features: dict[str, Path] = {}
    results = []
    for k, run in enumerate(runs, 1):
        result = finished(run)
        if result is None:
            source = json.dumps(config_to_dict(run.config)["data"], sort_keys=True)  # what makes the features
            if source not in features:
                features[source] = prepare_features(run.config, run.config.train.progress)
            result = run_one(run, features[source], e)
        results.append(result)
        fold = "" if run.fold is None else f" fold {run.fold}"
        log.info("[%d/%d] %s seed %d%s done (%.0f s)", k, len(runs), run.system, run.seed, fold,
                 result["train_s"] + result["eval_s"])  # fmt: skip
    summary = summarise(results, config, e)
    write_outputs(summary, out)
    return summary
