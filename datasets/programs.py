"""``add-program``: make an existing zoo runnable by storing its networks' function (their ``torch.export`` program).

A zoo's models run without user source code once each points at a stored program (see
:mod:`datasets.hdf5`); builders, ``convert`` and the importers store them as they write. For a zoo
written before programs existed, or by a path with no module to export (checkpoints that embed
their layout)::

    python -m datasets add-program zoo.h5 --model nets.py:make [--example-input-shape 1,3,32,32]
                                          [--where config.activation=tanh] [--replace]

builds the network with the factory, traces it (:func:`graphs.trace_program`), checks that its
layout is one of the zoo's architectures and points that architecture's models at the program:
only those whose label matches ``--where`` (repeatable: every condition must hold), and only those
with no program yet unless ``--replace``. One layout can have several functions (relu and tanh CNNs
share one), so a zoo mixing them needs one call per function, each with a ``--where`` that selects
its models. The zoo is rewritten crash-safely (:class:`datasets.writer.ZooWriter`, ``mode="a"``).

:func:`store_program` is the one place where writers store a traced program: a program that cannot
be stored safely (an operator outside :func:`graphs.load_program`'s allow-list) is reported as a
:class:`~datasets.errors.ZooWarning` and its models are stored without one, as before programs existed.
"""

from __future__ import annotations

import argparse
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

import graphs
from datasets.errors import LabelError, ZooError, ZooWarning
from datasets.hdf5 import ZooReader
from datasets.writer import ZooWriter
from graphs.cli import add_example_input_argument, build_from_factory

__all__ = ["AddProgramResult", "add_program", "parse_where", "register", "store_program"]


def store_program(writer: ZooWriter, layout: graphs.Layout, program: torch.export.ExportedProgram | bytes,
                  name: str = "") -> int:
    """``writer.add_program(layout, program, name)``, or -1 with a warning when it cannot be stored safely.

    The models are then stored without a program (not runnable), which is what every zoo was before
    programs existed; conversion does not fail for it.
    """
    try:
        return writer.add_program(layout, program, name=name)
    except (graphs.UnsafeProgramError, graphs.LayoutMismatchError) as exc:
        warnings.warn(ZooWarning(f"the models of {layout.name or 'architecture'}#{layout.fingerprint} are stored "
                                 f"without a program (they cannot be run for probe features): {exc}"), stacklevel=2)
        return -1


def parse_where(specs: Sequence[str] | None) -> list[tuple[str, str]]:
    """``["config.activation=tanh"]`` -> ``[("config.activation", "tanh")]``.

    Raises:
        ValueError: A condition without ``=`` or with an empty label name.
    """
    out = []
    for spec in specs or ():
        name, sep, value = str(spec).partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--where {spec!r} is malformed: give LABEL=VALUE, e.g. --where config.activation=tanh")
        out.append((name.strip(), value))
    return out


def _matches(reader: ZooReader, name: str, value: str) -> np.ndarray:
    """Which models have label ``name`` equal to ``value`` (parsed as the column's kind)."""
    if name not in reader.label_names:
        raise LabelError(f"--where {name}={value}: {reader.path} has no label {name!r}; it has "
                         f"{list(reader.label_names)}")
    column, kind = reader.labels(name), reader.label_kind(name)
    if kind == "str":
        return np.asarray([str(v) == value for v in column], dtype=bool)
    try:
        number = float(value)
    except ValueError:
        raise LabelError(f"--where {name}={value}: {name!r} is a numeric label, and {value!r} is not a "
                         "number") from None
    if math.isnan(number):
        return np.isnan(np.asarray(column, dtype=np.float64))
    return np.asarray(column, dtype=np.float64) == number


@dataclass(frozen=True)
class AddProgramResult:
    """What :func:`add_program` did.

    Attributes:
        program: Index of the stored program.
        pointed: Models pointed at it by this call.
        runnable: Models of the zoo that have a program afterwards.
        total: Models in the zoo.
    """

    program: int
    pointed: int
    runnable: int
    total: int


def _select(reader: ZooReader, fingerprint: str, where: list[tuple[str, str]], replace: bool) -> np.ndarray:
    """Indices of the models of ``fingerprint`` that match every condition (and have no program unless replace).

    Raises:
        ZooError: Conditions are given and no model of the architecture meets them all (a misspelt value).
    """
    arch = reader.model_arch == reader.fingerprints.index(fingerprint)
    keep = arch.copy()
    for name, value in where:
        keep &= _matches(reader, name, value)
    if where and not keep.any():
        shown = {n: sorted({str(v) for v in reader.labels(n)[arch]})[:8] for n, _ in where}
        raise ZooError(f"no model of architecture #{fingerprint} in {reader.path} has "
                       f"{' and '.join(f'{n}={v}' for n, v in where)}; their values are "
                       + "; ".join(f"{n}: {', '.join(vs)}" for n, vs in shown.items()))
    if not replace:
        keep &= reader.model_program < 0
    return np.flatnonzero(keep)


def add_program(zoo: str | os.PathLike, model: torch.nn.Module, example_inputs, *, name: str = "",
                where: Sequence[tuple[str, str]] = (), replace: bool = False) -> AddProgramResult:
    """Store the program of ``model`` in ``zoo`` and point models of its architecture at it.

    Args:
        zoo: An existing zoo file (rewritten crash-safely).
        model: A network of one of the zoo's architectures, computing the function of the models to point.
        example_inputs: Inputs to trace (and export) it with.
        name: The program's name (e.g. the factory's).
        where: ``(label, value)`` conditions a model must all meet to be pointed at the program.
        replace: Also point models that already have a program.

    Raises:
        ZooError: The model's layout is none of the zoo's architectures, or the zoo does not exist.
        LabelError: A condition names no label of the zoo, or a number for a numeric label is not one.
    """
    zoo = os.fspath(zoo)
    if not os.path.isfile(zoo):
        raise ZooError(f"no zoo at {zoo}")
    layout, program = graphs.trace_program(model, example_inputs)
    where = list(where)
    with ZooReader(zoo) as reader:
        if layout.fingerprint not in reader.fingerprints:
            archs = ", ".join(f"{reader.layout(fp).name or '?'}#{fp}" for fp in reader.fingerprints) or "none"
            raise ZooError(f"the network ({layout.name or type(model).__name__}#{layout.fingerprint}) is not an "
                           f"architecture of {zoo}, whose architectures are: {archs}; give the factory of the "
                           "network the zoo's models were trained with")
        layout = reader.layout(layout.fingerprint)  # the stored copy: the rows' exact layout
        indices = _select(reader, layout.fingerprint, where, replace)
        already = reader.model_program >= 0
    with ZooWriter(zoo, mode="a") as writer:
        index = writer.add_program(layout, program, name=name)
        if len(indices):
            writer.set_program(indices, index)
    already[indices] = True
    return AddProgramResult(program=index, pointed=len(indices), runnable=int(already.sum()), total=len(already))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``add-program`` command."""
    p = subparsers.add_parser("add-program", help="store a network's program in a zoo so that its models can run",
                              description="Trace the network a factory builds, store its torch.export program in "
                                          "ZOO and point the models of its architecture at it (those matching "
                                          "--where, and without a program unless --replace).")
    p.add_argument("zoo", help="the zoo .h5 file (edited in place, crash-safely)")
    p.add_argument("--model", required=True,
                   help="module:factory (or FILE.py:factory) building the network, e.g. nets.py:make")
    add_example_input_argument(p, "shape of the tensor to trace the network with, e.g. 1,3,32,32 (repeat for "
                                  "several inputs; default: example_inputs() beside the factory, else guessed "
                                  "from the network's first layer)")
    p.add_argument("--where", action="append", metavar="LABEL=VALUE",
                   help="point only the models whose label LABEL equals VALUE (repeat: all must hold)")
    p.add_argument("--replace", action="store_true", help="also point models that already have a program")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    where = parse_where(args.where)
    if not os.path.isfile(args.zoo):
        raise ZooError(f"no zoo at {args.zoo}; give an existing zoo file")
    model, example = build_from_factory(args.model, args.example_input_shape, "--example-input-shape")
    name = args.model.rsplit(":", 1)[-1]
    res = add_program(args.zoo, model, example, name=name, where=where, replace=args.replace)
    print(f"{args.zoo}: program {res.program} ({name}) given to {res.pointed} models; {res.runnable} of "
          f"{res.total} models now have a program")
    return 0
