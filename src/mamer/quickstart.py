"""`mamer quickstart`: synthetic corpus -> frozen features -> unified model -> per-view report, offline."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mamer.config import load_config
from mamer.data.synthetic import generate_corpus
from mamer.evaluate import evaluate_run
from mamer.report import compare_table, format_table
from mamer.train import prepare_features, train

log = logging.getLogger(__name__)

SYSTEMS = (
    "quickstart",
    "quickstart_audio_only",
    "quickstart_text_only",
    "quickstart_multimodal_only",
    "quickstart_no_contrastive",
    "quickstart_no_mae",
)


def run_quickstart(
    out: Path = Path("mamer_runs/quickstart"),
    baselines: bool = False,
    speakers: int = 12,
    utterances_per_speaker: int = 48,
    overrides: list[str] | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Build the corpus, train the unified model (and, with baselines, the dedicated models and ablations),
    evaluate every view on the held-out test speakers; returns the reports by system name."""
    started = time.time()
    corpus = out / "corpus"
    test_speakers = max(1, speakers // 6)
    manifest = generate_corpus(
        corpus,
        speakers,
        utterances_per_speaker,
        seed=0,
        split_speakers=(speakers - 2 * test_speakers, test_speakers, test_speakers),
        progress=progress,
    )
    reports = {}
    features = None
    for system in SYSTEMS if baselines else SYSTEMS[:1]:
        config = load_config(
            system,
            [
                f"data.manifest={manifest}",
                f"data.features={out / 'features'}",
                f"train.progress={progress}",
                *(overrides or []),
            ],
        )
        config.run_dir = str(out / Path(config.run_dir).name)
        features = features or prepare_features(config, progress)
        run_dir = train(config, features=features)
        reports[config.name] = evaluate_run(run_dir, "test")
        chance = reports[config.name].get("chance") or {}
        print(
            f"\n{config.name}: test split, held-out speakers (chance: macro_f1/uar {chance.get('uar', 0):.2f})\n"
            f"{format_table(reports[config.name])}\nreport and plots: {run_dir}/report.md, {run_dir}/*.png"
        )
    if baselines:
        table = compare_table(reports, {name: r.get("params") for name, r in reports.items()})
        (out / "comparison.md").write_text(table + "\n")
        print(f"\n{table}\n\ncomparison written to {out / 'comparison.md'}")
    print(f"\nreports, plots and checkpoints under {out}/ ({time.time() - started:.0f} s in all)")
    return reports
