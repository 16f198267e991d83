"""The ``python -m datasets`` command line: one subcommand per module, each added by its ``register``.

To add a subcommand, write ``register(subparsers)`` in its module (add a parser and
``set_defaults(func=run)``, where ``run(args) -> int``) and list the module in :data:`COMMANDS`.
Errors that users can fix (bad files, bad labels, mismatched shapes, unreadable checkpoints) are
printed as one line on stderr with exit code 2; anything else is a bug and keeps its traceback.
Warnings about data stored not exactly as given (:class:`datasets.errors.ZooWarning`: rounded
weights, labels stored as missing) are printed as one ``warning: ...`` line each.

Existing outputs, one policy for every command (checked by :func:`graphs.cli.check_output` before
any work starts, so that nothing runs for minutes and then fails):

* A command that writes a new file (``build``, ``merge``, ``canonicalize``, ``archs``, ``import-*``, ``info --plot``)
  refuses an existing output unless ``--overwrite``, and then replaces it atomically: the new file
  is written beside it and renamed over it, so an interrupted run leaves the old file intact.
* A command that can extend its output says so by a flag and never repeats what is there: ``build
  --append`` refuses a recipe seed already in the zoo; ``import-* --append`` skips the models whose
  ``source`` is already in it. ``convert`` always resumes (it skips the checkpoints already
  converted; ``--overwrite`` starts afresh).
* ``split``, ``stats`` and ``add-program`` edit the zoo they are given (that is their job), with the
  same atomic rewrite.
* An output whose folder does not exist is refused at once.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from datasets import canonical, convert, info, merge, programs, resplit, stats
from datasets.archs import cli as archs
from datasets.errors import ZooWarning
from datasets.importers import checkpoint_dirs, inr_folder, small_cnn_zoo
from datasets.zoo import build
from graphs.cli import run_cli

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = (build, convert, small_cnn_zoo, inr_folder, checkpoint_dirs, info, resplit, merge, canonical, stats,
            programs, archs)
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
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, ZooWarning):
                print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.simplefilter("always", ZooWarning)
        warnings.showwarning = show
        return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (2 for a user error, 130 when interrupted)."""
    return run_cli(_run, argv, interrupted="interrupted; the zoo keeps its last committed models "
                                           "(run the command again to resume)")
