"""Command-line plumbing shared by every weightgraph command.

``python -m graphs``, ``python -m datasets``, ``train.py`` and ``eval.py`` share one-line user errors,
``module:factory`` loading and calling, example inputs (parsed, or guessed from the first layer), the
policy for existing output files and device choice. They live here, at the bottom
layer, so that every command imports them downwards.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType

import torch

from graphs.errors import UnsupportedNetworkError
from graphs.example_inputs import infer_example_inputs

__all__ = ["EXAMPLE_INPUT_FLAGS", "USER_ERRORS", "add_example_input_argument", "build_from_factory", "call_factory",
           "check_output", "load_factory", "parse_input_shapes", "parse_shape", "pick_device", "required_arguments",
           "run_cli"]

EXAMPLE_INPUT_FLAGS = ("--example-input-shape", "--input-shape")
"""The two spellings of the example-input option; every command accepts both (one ``dest``)."""

USER_ERRORS = (ValueError, OSError, UnsupportedNetworkError)
"""Errors a command reports as one line (exit code 2) instead of a traceback: bad files, bad options,
networks the tracer cannot handle. ``CheckpointError``, ``LayoutMismatchError`` and the zoo errors of
``datasets`` are ``ValueError``s."""

DTYPES = {"float": torch.float32, "float32": torch.float32, "double": torch.float64, "float64": torch.float64,
          "half": torch.float16, "float16": torch.float16, "bfloat16": torch.bfloat16, "long": torch.long,
          "int": torch.long, "int64": torch.long, "int32": torch.int32, "bool": torch.bool}
"""Element types an example input may name (``long:1,16``)."""


def run_cli(main: Callable, argv: Sequence[str] | None = None, interrupted: str | None = None) -> int:
    """Run a command's ``main(argv)`` and return its exit status.

    A user error (:data:`USER_ERRORS`) becomes ``error: <one line>`` on stderr and status 2; Ctrl-C
    prints ``interrupted`` (when given) and returns 130. An ``int`` returned by ``main`` is the
    status; anything else (a dict of results) means 0. Use as ``sys.exit(run_cli(main))``.
    """
    try:
        result = main(argv)
    except USER_ERRORS as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        print(interrupted, file=sys.stderr)
        return 130
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def load_factory(spec: str) -> tuple[Callable, ModuleType]:
    """Import ``module:factory`` (``module`` may be a path to a ``.py`` file); return ``(factory, module)``.

    The current directory is importable, as it is for ``python -c``.

    Raises:
        ValueError: A malformed spec, a module that does not import, or no callable of that name.
    """
    if ":" not in spec:
        raise ValueError(f"expected module:factory, got {spec!r} (e.g. mypkg.models:resnet18 or nets.py:MLP)")
    mod_name, attr = spec.rsplit(":", 1)
    if mod_name.endswith(".py"):
        path = os.path.abspath(mod_name)
        if not os.path.isfile(path):
            raise ValueError(f"no such file: {mod_name}")
        file_spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
        module = importlib.util.module_from_spec(file_spec)
        try:
            file_spec.loader.exec_module(module)
        except Exception as exc:  # the user's file may fail in any way: one line saying where
            raise ValueError(f"cannot load the factory file {mod_name} (spec {spec!r}): {_describe(exc)}; fix the "
                             "file") from exc
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(mod_name)
        except ImportError as exc:
            raise ValueError(f"cannot import {mod_name!r}: {exc}; run from the folder that holds it, install it, "
                             "or give a file path (nets.py:make_net)") from exc
        except Exception as exc:  # a module that fails while importing (syntax error, code that raises)
            raise ValueError(f"importing {mod_name!r} (spec {spec!r}) failed: {_describe(exc)}; fix the "
                             "module") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"{mod_name} has no callable {attr!r} to build the network with")
    return factory, module


def _describe(exc: BaseException) -> str:
    """``Type: message (at file:line)`` of an exception raised by user code, on one line."""
    if isinstance(exc, SyntaxError):
        where = f" (at {os.path.basename(exc.filename or '?')}:{exc.lineno})"
        return f"SyntaxError: {exc.msg}{where}"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}{': ' + message if message else ''}{where}"


def required_arguments(factory: Callable) -> list[str]:
    """Names of the positional parameters of ``factory`` that have no default (what it must be given)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume they take what they are given
        return []
    return [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def call_factory(factory: Callable, spec: str, *args) -> torch.nn.Module:
    """``factory(*args)``, checked: it must accept exactly these arguments and return an ``nn.Module``.

    Args:
        factory: From :func:`load_factory`.
        spec: Its ``module:factory`` spec (named in errors).
        *args: What the command gives it (nothing, a state_dict, a config).

    Raises:
        ValueError: The factory needs other arguments, raises, or returns something that is not an
            ``nn.Module``; one line saying what failed and how to fix it.
    """
    required = required_arguments(factory)
    if len(required) > len(args):
        given = "no argument" if not args else f"{len(args)} argument(s)"
        raise ValueError(f"the factory {spec} requires the argument(s) {', '.join(required)}, but it is called with "
                         f"{given}; give defaults to them, or wrap it (def make(): return Net(...)) and pass "
                         "that instead")
    try:
        model = factory(*args)
    except Exception as exc:  # the user's factory may fail in any way
        raise ValueError(f"the factory {spec} raised {_describe(exc)}; fix the factory or its arguments") from exc
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"the factory {spec} returned {type(model).__name__}, not an nn.Module; make it return the "
                         "network (e.g. `return Net()`)")
    return model


def parse_shape(text: str, flag: str = "--input-shape") -> tuple[int, ...]:
    """``"1,3,32,32"`` (or ``"1x3x32x32"``) -> ``(1, 3, 32, 32)``.

    Raises:
        ValueError: Unless every size is a positive integer; the message names ``flag``.
    """
    try:
        shape = tuple(int(s) for s in str(text).replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or min(shape) <= 0:
        raise ValueError(f"{flag} {text!r} is malformed: give positive integer sizes like 1,3,32,32")
    return shape


def parse_input_shapes(specs: Sequence[str], flag: str = "--input-shape",
                       dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """Example inputs from ``["1,3,32,32", "long:1,16"]`` (``dtype`` unless a ``DTYPE:`` prefix names one).

    Floating inputs are standard normal and integer inputs (token ids) are 0 or 1, both drawn from a
    fixed seed so that tracing twice sees the same tensors.

    Raises:
        ValueError: A malformed shape or an unknown element type (the message lists the known ones).
    """
    gen = torch.Generator().manual_seed(0)
    out = []
    for text in specs:
        kind, shape_text = (text.split(":", 1) if ":" in text else (None, text))
        dt = dtype
        if kind is not None:
            if kind not in DTYPES:
                raise ValueError(f"{flag} {text!r}: unknown element type {kind!r}; use one of {sorted(DTYPES)}")
            dt = DTYPES[kind]
        shape = parse_shape(shape_text, flag)
        if dt.is_floating_point:
            out.append(torch.randn(shape, generator=gen).to(dt))
        else:
            out.append(torch.randint(0, 2, shape, generator=gen).to(dt))
    return tuple(out)


def build_from_factory(spec: str, input_shapes: Sequence[str] | None,
                       flag: str = "--input-shape") -> tuple[torch.nn.Module, tuple]:
    """The network ``module:factory`` builds, and example inputs to trace it with.

    The inputs come from ``input_shapes`` (the values of ``flag``), else from ``example_inputs()``
    defined beside the factory, else they are guessed from the network's first layer
    (:func:`graphs.example_inputs.infer_example_inputs`: a plain CNN or MLP needs no shape).

    Raises:
        ValueError: The factory cannot be loaded or fails (see :func:`call_factory`), or no example
            input is given and none can be guessed (the message says how to give one).
    """
    factory, module = load_factory(spec)
    model = call_factory(factory, spec)
    if input_shapes:
        return model, parse_input_shapes(input_shapes, flag)
    if hasattr(module, "example_inputs"):
        try:
            inputs = module.example_inputs()
        except Exception as exc:  # user code
            raise ValueError(f"example_inputs() beside {spec} raised {_describe(exc)}; fix it or pass {flag}") from exc
        return model, inputs if isinstance(inputs, tuple) else (inputs,)
    return model, infer_example_inputs(model, flag)


def add_example_input_argument(parser: argparse.ArgumentParser, help_text: str, *, multiple: bool = True,
                               required: bool = False) -> None:
    """Add the example-input option under both spellings (:data:`EXAMPLE_INPUT_FLAGS`) to one ``dest``.

    The value lands in ``args.example_input_shape``: a list of shapes (``multiple``: the option may be
    repeated, one per input) or one string.
    """
    parser.add_argument(*EXAMPLE_INPUT_FLAGS, dest="example_input_shape", action="append" if multiple else "store",
                        required=required, metavar="SHAPE", help=help_text)


def check_output(path: str | os.PathLike, overwrite: bool, *, resume: str | None = None,
                 what: str = "output") -> None:
    """Apply the one policy for existing outputs: refuse one unless ``overwrite`` (the caller replaces it atomically).

    Also refuses an output whose folder does not exist, so that nothing runs for minutes and then fails.

    Args:
        path: The file a command is about to write.
        overwrite: ``--overwrite`` was given.
        resume: For commands that can extend an output, how to do so (e.g. ``"--append to add to it"``);
            named in the error.
        what: What the file is (named in the error).

    Raises:
        ValueError: ``path`` exists (and not ``overwrite``), is a folder, or its folder does not exist.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"the folder of the {what} {path} does not exist; create it first (mkdir -p {folder})")
    if os.path.isdir(path):
        raise ValueError(f"the {what} {path} is a folder; give a file name")
    if os.path.exists(path) and not overwrite:
        alternatives = " or ".join(x for x in (resume, "--overwrite to replace it") if x)
        raise ValueError(f"the {what} {path} already exists; pass {alternatives}, or choose another name")


def pick_device(spec: str = "auto") -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ValueError: A device name torch does not know, or CUDA asked for on a machine without it.
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ValueError(f"--device {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {spec}: this machine has no CUDA device; use --device auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device
