"""The ``python -m datasets`` command line: one subcommand per module, each added by its ``register``.

To add a subcommand, write ``register(subparsers)`` in its module (add a parser and
``set_defaults(func=run)``, where ``run(args) -> int``) and list the module in :data:`COMMANDS`.
Errors that users can fix (bad files, bad labels, mismatched shapes, unreadable checkpoints) are
printed as one line on stderr with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from datasets import convert, info, merge, resplit, stats
from datasets.archs import cli as archs
from datasets.importers import checkpoint_dirs, inr_folder, small_cnn_zoo
from datasets.zoo import build
from graphs.cli import run_cli

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = (build, convert, small_cnn_zoo, inr_folder, checkpoint_dirs, info, resplit, merge, stats, archs)
"""Modules whose ``register(subparsers)`` adds a subcommand, in help order."""

def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="python -m datasets",
                                     description="Build, convert and inspect model zoos (HDF5 files of networks).")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (2 for a user error, 130 when interrupted)."""
    return run_cli(_run, argv, interrupted="interrupted; the zoo keeps its last committed models "
                                           "(run the command again to resume)")
