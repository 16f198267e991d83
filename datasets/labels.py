"""Label columns: their kinds, missing values, and label files (CSV/JSON) that go with checkpoints.

A column has one kind for its whole life: ``float`` (float64; missing is NaN), ``int`` (int64; no
missing value, so every model must have one) or ``str`` (UTF-8; missing is ``""``). Booleans are
stored as ints.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence

import h5py
import numpy as np

from datasets.errors import LabelError

__all__ = ["KEY_COLUMNS", "column_kind", "encode_column", "h5_dtype", "missing_value", "read_label_file",
           "value_kind"]

KEY_COLUMNS = ("source", "path", "file", "filename", "checkpoint", "name")
"""Columns of a label file that name the checkpoint a row belongs to (the first one present is used)."""


def value_kind(value) -> str | None:
    """Kind of one Python/NumPy value (``None`` for a missing value)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else "float"
    if isinstance(value, str):
        return "str"
    raise LabelError(f"label value {value!r} of type {type(value).__name__} is not a number or a string")


def column_kind(values: Sequence) -> str:
    """The narrowest kind holding all ``values``: ``int`` only when none is missing."""
    kinds = {value_kind(v) for v in values}
    missing = None in kinds
    kinds.discard(None)
    if "str" in kinds:
        return "str"
    if kinds == {"int"} and not missing:
        return "int"
    return "float"


def missing_value(kind: str, name: str):
    """The value stored for a model that lacks label ``name``."""
    if kind == "float":
        return math.nan
    if kind == "str":
        return ""
    raise LabelError(f"label {name!r} is an int column and a model has no value for it; give every model a "
                     f"value, or declare it a float column (label_kinds={{{name!r}: 'float'}}) to allow NaN")


def h5_dtype(kind: str):
    """HDF5 dtype of a column kind."""
    return {"float": np.float64, "int": np.int64, "str": h5py.string_dtype("utf-8")}[kind]


def encode_column(name: str, kind: str, values: Sequence) -> np.ndarray:
    """Check ``values`` against the column's kind and return the array to store."""
    out = []
    for v in values:
        k = value_kind(v)
        if k is None:
            out.append(missing_value(kind, name))
        elif kind == "str" and k != "str":
            raise LabelError(f"label {name!r} holds text, got {v!r}; pass it as a string")
        elif kind != "str" and k == "str":
            raise LabelError(f"label {name!r} is a {kind} column, got the text {v!r}")
        elif kind == "int" and k == "float" and float(v) != int(v):
            raise LabelError(f"label {name!r} is an int column, got {v!r}; declare it float "
                             f"(label_kinds={{{name!r}: 'float'}})")
        else:
            out.append(v)
    if kind == "str":
        return np.array(out, dtype=object)
    return np.asarray(out, dtype=h5_dtype(kind))


def read_label_file(path: str | os.PathLike) -> tuple[str | None, list[dict]]:
    """Read a labels CSV or JSON file into records.

    CSV: a header row; cells are parsed as int, else float, else text; empty cells are missing.
    JSON: a list of objects, or an object mapping a checkpoint name to an object of labels.

    Returns:
        ``(key, records)``: ``key`` is the column naming each record's checkpoint (see
        :data:`KEY_COLUMNS`), ``None`` when there is none (records then follow the sorted
        checkpoint order).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no labels file at {path}")
    if path.endswith(".json"):
        with open(path) as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise LabelError(f"{path} is not valid JSON ({exc})") from exc
        if isinstance(data, dict):
            records = [{"source": k, **v} for k, v in data.items() if isinstance(v, dict)]
            if len(records) != len(data):
                raise LabelError(f"{path}: a JSON object of labels must map each checkpoint to an object")
        elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
            records = data
        else:
            raise LabelError(f"{path}: expected a list of objects or an object of objects")
    else:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames:
                raise LabelError(f"{path} is empty; a labels CSV needs a header row")
            records = [{k.strip(): _parse_cell(v) for k, v in row.items() if k is not None} for row in reader]
    columns = {k for r in records for k in r}
    key = next((k for k in KEY_COLUMNS if k in columns), None)
    return key, records


def _parse_cell(text: str | None):
    if text is None:
        return None
    text = text.strip()
    if text == "":
        return None
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text
