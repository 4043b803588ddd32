"""`mamer` subcommands: training, evaluation and experiments."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mamer.modality import SCORING_GROUPS


def _quickstart(args: argparse.Namespace) -> None:
    from mamer.workflows.experiments.quickstart import run_quickstart

    run_quickstart(Path(args.out), baselines=args.baselines, overrides=args.overrides)


def _train(args: argparse.Namespace) -> None:
    from mamer import distributed
    from mamer.config import load_config
    from mamer.workflows.training.loop import train

    config = load_config(args.config, args.overrides)
    try:  # under torchrun: every rank trains; the process group is left once all are done
        run_dir = train(config, resume=args.resume, overwrite=args.overwrite)
        if distributed.setup().is_main:
            print(f"best checkpoint in {run_dir}")
    finally:
        distributed.teardown()


def _experiment(args: argparse.Namespace) -> None:
    from mamer.config import load_experiment
    from mamer.workflows.experiments.experiment import experiment_dir, run_experiment
    from mamer.workflows.experiments.summary import experiment_table

    config, experiment = load_experiment(args.config, args.overrides)
    summary = run_experiment(config, experiment)
    for split in summary["test_splits"]:
        print(f"\n{summary['name']}, split {split}:\n{experiment_table(summary, split)}")
    print(f"\nexperiment.json, experiment.md and robustness plots in {experiment_dir(config, experiment)}")


def _evaluate(args: argparse.Namespace) -> None:
    from mamer.workflows.evaluation.evaluate import evaluate_run
    from mamer.workflows.evaluation.model_card import write_model_card
    from mamer.workflows.evaluation.report import describe_unscored, format_corpus_table, format_table

    out = args.out or args.run_dir
    labels = [label.strip() for label in args.labels.split(",")] if args.labels else None
    report = evaluate_run(
        args.run_dir, args.split, args.device, report_dir=out, by_corpus=args.by_corpus, labels=labels,
        groups=args.groups,
    )  # fmt: skip
    if not args.out:
        write_model_card(Path(args.run_dir), report)
    print(format_table(report))
    if args.by_corpus:
        print(f"\n{format_corpus_table(report)}")
    if report["unscored"]["rows"]:
        print(f"{report['unscored']['rows']} {args.split} row(s) not scored: {describe_unscored(report['unscored'])}",
              file=sys.stderr)  # fmt: skip
    print(f"report.json, report.md, plots{'' if args.out else ' and MODEL_CARD.md'} in {out}")


def _compare(args: argparse.Namespace) -> None:
    from mamer.workflows.evaluation.evaluate import load_report
    from mamer.workflows.evaluation.report import compare_table

    reports = {Path(d).name: load_report(d) for d in args.run_dirs}
    table = compare_table(reports, {name: r.get("params") for name, r in reports.items()})
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands."""
    p = sub.add_parser("quickstart", help="synthetic corpus -> features -> unified model -> per-view report")
    p.add_argument("--out", default="mamer_runs/quickstart", help="folder for corpus, features and runs")
    p.add_argument(
        "--baselines",
        action="store_true",
        help="also train the dedicated audio/text/multimodal models and the two ablations, and compare",
    )
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. train.epochs=10")
    p.set_defaults(func=_quickstart)

    p = sub.add_parser(
        "train", help="train one model from a YAML config (several GPUs: torchrun ... -m mamer train)"
    )
    p.add_argument("--config", required=True, help="YAML file or built-in config name (see `mamer configs`)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="train again from scratch in a run directory that holds a run",
    )
    p.add_argument(
        "overrides", nargs="*",
        help="section.key=value overrides, e.g. loss.contrastive=0; train.init_from=mamer-base fine-tunes",
    )  # fmt: skip
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "experiment", help="the paper's table: every system x seed (x fold), every view, robustness curves"
    )
    p.add_argument("--config", required=True, help="YAML file or built-in config with an experiment section")
    p.add_argument("overrides", nargs="*", help="overrides, e.g. experiment.seeds=[0,1] train.epochs=10")
    p.set_defaults(func=_experiment)

    p = sub.add_parser("evaluate", help="score every view of a trained run on one split")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--by-corpus",
        action="store_true",
        help="also score each corpus of a joined split on its own (ids prefixed by corpus: emodb/03a01Fa)",
    )
    p.add_argument(
        "--labels", help="score only these classes, the predictions restricted to them: anger,happiness,..."
    )
    p.add_argument(
        "--groups",
        choices=SCORING_GROUPS,
        default="speaker",
        help="a model normalising audio per speaker (model.audio_normalise: speaker) reads each clip normalised by "
        "its speaker's clips (default), by all the clips of its corpus in the split (corpus), or by the training "
        "rows' statistics (none: as a clip given alone to predict is)",
    )
    p.add_argument("--out", help="write the report here instead of the run folder (no MODEL_CARD.md then)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("compare", help="put the reports of several runs side by side, with parameter counts")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", help="also write the markdown table here")
    p.set_defaults(func=_compare)
