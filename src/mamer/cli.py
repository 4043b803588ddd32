"""Command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _train(args: argparse.Namespace) -> None:
    from mamer.config import load_config
    from mamer.train import train

    config = load_config(args.config, args.overrides)
    run_dir = train(config, resume=args.resume)
    print(f"best checkpoint in {run_dir}")


def _evaluate(args: argparse.Namespace) -> None:
    from mamer.evaluate import evaluate_run
    from mamer.report import format_table

    report = evaluate_run(args.run_dir, args.split, args.device)
    print(format_table(report))
    print(f"report.json, report.md and plots in {args.run_dir}")


def _compare(args: argparse.Namespace) -> None:
    from mamer.evaluate import load_report
    from mamer.report import compare_table

    reports = {Path(d).name: load_report(d) for d in args.run_dirs}
    table = compare_table(reports, {name: r.get("params") for name, r in reports.items()})
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


def _quickstart(args: argparse.Namespace) -> None:
    from mamer.quickstart import run_quickstart

    run_quickstart(Path(args.out), baselines=args.baselines, overrides=args.overrides)


def _configs(args: argparse.Namespace) -> None:
    from mamer.config import BUILTIN_CONFIGS, builtin_configs

    for name in builtin_configs():
        print(f"{name:32s} {BUILTIN_CONFIGS / (name + '.yaml')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mamer", description="Modality-agnostic multimodal emotion recognition"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("quickstart", help="synthetic corpus -> features -> unified model -> per-view report")
    p.add_argument("--out", default="mamer_runs/quickstart", help="folder for corpus, features and runs")
    p.add_argument(
        "--baselines",
        action="store_true",
        help="also train the dedicated audio/text/multimodal models and the two ablations, and compare",
    )
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. train.epochs=10")
    p.set_defaults(func=_quickstart)

    p = sub.add_parser("train", help="train one model from a YAML config")
    p.add_argument("--config", required=True, help="YAML file or built-in config name (see `mamer configs`)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. loss.contrastive=0")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="score every view of a trained run on one split")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("compare", help="put the reports of several runs side by side, with parameter counts")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", help="also write the markdown table here")
    p.set_defaults(func=_compare)

    p = sub.add_parser("configs", help="list the built-in configs")
    p.set_defaults(func=_configs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    try:
        args.func(args)
    except (FileNotFoundError, ValueError) as err:
        if args.verbose:
            raise
        print(f"mamer {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
