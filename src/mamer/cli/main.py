"""The `mamer` command: a thin layer that parses arguments and calls the Python API."""

from __future__ import annotations

import argparse
import logging
import sys

from mamer.cli import data, inference, runs


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mamer", description="Modality-agnostic multimodal emotion recognition"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (runs, data, inference):
        module.add_commands(sub)
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
