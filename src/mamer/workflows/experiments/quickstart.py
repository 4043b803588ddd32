"""`mamer quickstart`: synthetic corpus -> frozen features -> unified model -> per-view report, offline."""

from __future__ import annotations

import time
from pathlib import Path

from mamer.checkpoint import LAST_DIR
from mamer.config import load_config, load_experiment
from mamer.data.synthetic import quickstart_corpus
from mamer.workflows.evaluation.evaluate import evaluate_run
from mamer.workflows.evaluation.model_card import write_model_card
from mamer.workflows.evaluation.report import format_table
from mamer.workflows.experiments.experiment import experiment_dir, run_experiment
from mamer.workflows.experiments.summary import experiment_table
from mamer.workflows.training.loop import train


def run_quickstart(
    out: Path = Path("mamer_runs/quickstart"),
    baselines: bool = False,
    speakers: int = 12,
    utterances_per_speaker: int = 48,
    overrides: list[str] | None = None,
    progress: bool = True,
) -> dict:
    """Build the corpus, train the unified model and evaluate every view on the held-out test speakers; returns
    {"unified": report}. With `baselines`: the `quickstart_categorical` experiment with one seed instead (the
    dedicated models and the ablations too), returning its summary."""
    started = time.time()
    manifest = quickstart_corpus(out / "corpus", speakers, utterances_per_speaker, progress)
    common = [f"data.manifest={manifest}", f"data.features={out / 'features'}", f"train.progress={progress}"]
    if baselines:
        config, experiment = load_experiment(
            "quickstart_categorical",
            [
                *common,
                "experiment.corpus=",
                "experiment.seeds=[0]",
                f"experiment.out={out / 'baselines'}",
                *(overrides or []),
            ],
        )
        result = run_experiment(config, experiment)
        print(
            f"\n{experiment_table(result, 'test')}\n\ntables and plots in {experiment_dir(config, experiment)}/"
        )
    else:
        config = load_config("quickstart", [*common, f"run_dir={out / 'unified'}", *(overrides or [])])
        run_dir = train(config, resume=(Path(config.run_dir) / LAST_DIR).exists())  # a rerun: its own run
        result = {"unified": evaluate_run(run_dir, "test")}
        write_model_card(run_dir, result["unified"])
        chance = result["unified"].get("chance") or {}
        print(
            f"\nunified: test split, held-out speakers (chance: macro_f1/uar {chance.get('uar', 0):.2f})\n"
            f"{format_table(result['unified'])}\nreport and plots: {run_dir}/report.md, {run_dir}/*.png"
        )
    print(f"\nreports, plots and checkpoints under {out}/ ({time.time() - started:.0f} s in all)")
    return result
