"""Command-line plumbing shared by every weightgraph command.

``python -m graphs``, ``python -m datasets``, ``train.py`` and ``eval.py`` share: one-line user errors,
``module:factory`` loading, example-input parsing and device choice. It lives here, at the bottom layer,
so that every command imports it downwards.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

import torch

from graphs.errors import UnsupportedNetworkError

__all__ = ["USER_ERRORS", "build_from_factory", "load_factory", "parse_input_shapes", "parse_shape",
           "pick_device", "run_cli"]

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
        file_spec.loader.exec_module(module)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(mod_name)
        except ImportError as exc:
            raise ValueError(f"cannot import {mod_name!r}: {exc}; run from the folder that holds it, install it, "
                             "or give a file path (nets.py:make_net)") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"{mod_name} has no callable {attr!r} to build the network with")
    return factory, module


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

    The inputs come from ``input_shapes`` (the values of ``flag``) or else from ``example_inputs()``
    defined beside the factory.

    Raises:
        ValueError: Neither is given (the message says how to give them), or the factory fails.
    """
    factory, module = load_factory(spec)
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{spec} returned {type(model).__name__}, not an nn.Module")
    if input_shapes:
        return model, parse_input_shapes(input_shapes, flag)
    if hasattr(module, "example_inputs"):
        inputs = module.example_inputs()
        return model, inputs if isinstance(inputs, tuple) else (inputs,)
    raise ValueError(f"no example inputs: pass {flag} 1,3,32,32 (repeat for several inputs; "
                     "long:1,16 for token ids) or define example_inputs() beside the factory")


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
