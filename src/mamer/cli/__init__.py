"""The `mamer` command line: one module per group of subcommands (`runs`, `data`, `inference`)."""

from mamer.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
