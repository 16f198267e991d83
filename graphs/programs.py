"""Exported programs as bytes: what a zoo stores so that its models run without the user's source code.

A network's function (everything the Layout does not hold: activations, pooling, the wiring) is its
``torch.export`` program. :func:`program_bytes` saves one (``torch.export.save``) and
:func:`load_program` reads it back **without executing pickled code**:

- ``torch.export.load`` reads pickled members with ``torch.load(weights_only=True)`` but falls back to
  ``weights_only=False`` (arbitrary code) when that fails. Every pickled member is therefore loaded
  here with ``weights_only=True`` first, and the file is refused when one does not load so.
- Node targets are resolved by attribute lookup from ``torch``, ``operator`` and ``math``; only operator
  overloads (``torch.ops.aten|prims|higher_order.*``), ``_operator.*``, ``torch.sym_*`` and a few
  ``math`` functions are accepted, so no target can name ``torch.os.system`` or the like.
- Symbolic shape expressions are parsed with ``sympy.sympify`` (an ``eval``): each must be arithmetic of
  shape symbols and a short list of sympy function names. Guard code and custom (script) objects are
  refused.

:func:`graph_digest` names the function: the hash of the graph description only, the same for two
networks that compute the same function with different weights.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
import zipfile
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from graphs.errors import UnsafeProgramError
from graphs.tracer import export

__all__ = ["graph_digest", "load_program", "program_bytes", "program_input_shapes"]

_TARGET = re.compile(r"(torch\.ops\.(aten|prims|higher_order)\.[A-Za-z0-9_.]+"
                     r"|_operator\.[A-Za-z_]+|math\.(floor|ceil|trunc|sqrt)|torch\.sym_[a-z_]+)\Z")
# sympy names that exported shape expressions use; anything else (an attribute access, a call of another
# name, a string) is refused before sympy evaluates the expression
_SYMPY_NAMES = {"Max", "Min", "Mod", "FloorDiv", "CeilDiv", "floor", "ceiling", "Abs", "sqrt", "Eq", "Ne", "Lt",
                "Le", "Gt", "Ge", "And", "Or", "Not", "True", "False", "oo", "Integer", "Rational",
                "PythonMod", "IntTrueDiv", "FloatTrueDiv", "TruncToInt", "CleanDiv", "ToFloat", "Pow",
                "OpaqueUnaryFn_sqrt", "RoundToInt", "RoundDecimal", "Identity", "IsNonOverlappingAndDenseIndicator",
                "int_oo"}
_EXPR_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXPR_CHARS = re.compile(r"[A-Za-z0-9_+\-*/%().,<>=!&|~ \t]*\Z")
_SYMBOL = re.compile(r"[sudfcpi][0-9]+\Z")


def program_bytes(model: nn.Module | torch.export.ExportedProgram, example_inputs: Any = None,
                  kwargs: dict | None = None) -> bytes:
    """The ``torch.export.save`` bytes of a program (a module is exported first, in eval mode).

    Raises:
        UnsupportedNetworkError: When ``torch.export`` cannot capture the module.
    """
    if isinstance(model, nn.Module):
        if example_inputs is None:
            raise TypeError("program_bytes(module) needs example_inputs to export the module")
        model = export(model, example_inputs, kwargs)
    if not isinstance(model, torch.export.ExportedProgram):
        raise TypeError(f"program_bytes needs an nn.Module or a torch.export.ExportedProgram, got "
                        f"{type(model).__name__}")
    buf = io.BytesIO()
    torch.export.save(model, buf)
    return buf.getvalue()


def _archive(data: bytes, what: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(bytes(data)))
    except zipfile.BadZipFile:
        raise UnsafeProgramError(f"{what} is not a torch.export archive (not a zip file)",
                                 hint="store programs made by torch.export.save or graphs.program_bytes") from None


def _member(z: zipfile.ZipFile, suffix: str, what: str) -> str:
    names = [n for n in z.namelist() if n.endswith(suffix)]
    if len(names) != 1:
        raise UnsafeProgramError(f"{what} has {len(names)} '{suffix}' members (a torch.export archive has one)",
                                 hint="store programs made by torch.export.save or graphs.program_bytes")
    return names[0]


def graph_digest(data: bytes) -> str:
    """SHA-256 of the graph description of a saved program: names the function, not the weights."""
    z = _archive(data, "the program")
    return hashlib.sha256(z.read(_member(z, "models/model.json", "the program"))).hexdigest()


def program_input_shapes(program: torch.export.ExportedProgram) -> list[list[int]]:
    """Shapes of the user inputs of a program, in call order (a symbolic size is written as -1)."""
    from torch.export.graph_signature import InputKind

    user = {s.arg.name for s in program.graph_signature.input_specs if s.kind == InputKind.USER_INPUT}
    shapes = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            val = node.meta.get("val")
            shapes.append([int(d) if isinstance(d, int) else -1 for d in getattr(val, "shape", ())])
    return shapes


def _walk(obj: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of a JSON tree."""
    stack = [obj]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            for k, v in cur.items():
                yield k, v
                stack.append(v)
        elif isinstance(cur, list):
            stack.extend(cur)


def _check_expr(expr: str, what: str) -> None:
    names = set(_EXPR_TOKEN.findall(expr))
    bad = sorted(n for n in names if n not in _SYMPY_NAMES and not _SYMBOL.match(n))
    if not _EXPR_CHARS.match(expr) or bad or "__" in expr or ".." in expr:
        raise UnsafeProgramError(f"{what} has a symbolic shape expression that is not plain arithmetic "
                                 f"({expr[:80]!r}{', names ' + ', '.join(bad[:4]) if bad else ''})",
                                 hint="re-export the network with graphs.program_bytes and store that")


def _check_graph(model_json: bytes, what: str) -> None:
    try:
        tree = json.loads(model_json)
    except ValueError:
        raise UnsafeProgramError(f"{what}: its graph description is not JSON",
                                 hint="store programs made by torch.export.save or graphs.program_bytes") from None
    if tree.get("guards_code"):
        raise UnsafeProgramError(f"{what} carries guard code, which loading would execute",
                                 hint="re-export the network with graphs.program_bytes and store that")
    for key in tree.get("range_constraints", {}) or {}:
        _check_expr(str(key), what)
    for key, value in _walk(tree):
        if key == "target" and isinstance(value, str) and not _TARGET.match(value):
            raise UnsafeProgramError(f"{what} calls {value!r}, which is not a torch operator",
                                     hint="only programs of torch.ops.aten/prims operators can be stored and run")
        if key == "expr_str" and isinstance(value, str):
            _check_expr(value, what)
        if key in ("as_custom_obj", "custom_obj_values") and value:
            raise UnsafeProgramError(f"{what} holds a custom (script) object, which loading would execute",
                                     hint="export a network made of plain tensors and torch operators")


def _check_tensors(z: zipfile.ZipFile, what: str) -> None:
    """Every pickled member loads with weights_only=True; constants are tensors only."""
    for name in z.namelist():
        if name.endswith("constants/model_constants_config.json"):
            config = json.loads(z.read(name)).get("config", {})
            for key, entry in config.items():
                path = str(entry.get("path_name", "")) if isinstance(entry, dict) else ""
                if not (path.startswith("tensor_") or path.startswith("weight_")) or entry.get("use_pickle"):
                    raise UnsafeProgramError(f"{what} has a constant {key!r} that is not a plain tensor",
                                             hint="export a network made of plain tensors and torch operators")
    pickled = [n for n in z.namelist() if n.endswith(".pt")]
    for name in z.namelist():
        if name.endswith("weights/model_weights_config.json"):
            config = json.loads(z.read(name)).get("config", {})
            folder = name.rsplit("/", 1)[0]
            pickled += [f"{folder}/{e['path_name']}" for e in config.values()
                        if isinstance(e, dict) and e.get("use_pickle")]
    for name in pickled:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.load(io.BytesIO(z.read(name)), weights_only=True)
        except Exception as exc:  # an unpickling error names a global that weights_only refuses
            raise UnsafeProgramError(
                f"{what} has a pickled member {name.split('/')[-1]!r} that does not load as plain tensors "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})",
                hint="the file may have been tampered with; re-export the network with graphs.program_bytes"
            ) from None


def load_program(data: bytes, what: str = "the stored program") -> torch.export.ExportedProgram:
    """Load saved program bytes without executing pickled or symbolic code (see the module docstring).

    Raises:
        UnsafeProgramError: When the bytes are not a program archive, or anything in them could run code.
    """
    z = _archive(data, what)
    _check_graph(z.read(_member(z, "models/model.json", what)), what)
    _check_tensors(z, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.load(io.BytesIO(bytes(data)))
    except Exception as exc:  # a version this torch cannot read, a damaged member
        raise UnsafeProgramError(f"{what} could not be loaded by torch.export ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:160] if str(exc) else ''})",
                                 hint="re-export the network with this torch version "
                                      "(`python -m datasets add-program ZOO --model FILE.py:make --replace`)"
                                 ) from exc
