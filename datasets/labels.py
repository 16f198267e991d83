"""Label columns: their kinds, missing values, and label files (CSV/JSON) that go with checkpoints.

A column has one kind for its whole life: ``float`` (float64; missing is NaN), ``int`` (int64; no
missing value, so every model must have one) or ``str`` (UTF-8; missing is ``""``). Booleans are
stored as ints.

A label file is matched to checkpoints by its key column only (:data:`KEY_COLUMNS`: the file name,
stem or path relative to the converted folder), never by row order. :func:`match_labels` refuses,
with counts and first examples, every way a file can fail to say one thing about each checkpoint:
checkpoints without a row, rows naming no checkpoint, names that fit several checkpoints,
conflicting duplicate rows and empty cells; with ``allow_missing`` the missing ones are stored as
missing values instead (and an int column with gaps is reported as becoming a float column).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import h5py
import numpy as np

from datasets.errors import LabelError, ZooWarning

__all__ = ["DELIMITERS", "KEY_COLUMNS", "MISSING_MARKERS", "LabelFile", "column_kind", "encode_column", "h5_dtype",
           "match_labels", "missing_value", "read_label_file", "value_kind"]

KEY_COLUMNS = ("source", "path", "file", "filename", "file_name", "checkpoint", "ckpt", "name", "model")
"""Header names (any case) of the column naming each row's checkpoint; the first one present is used."""

DELIMITERS = (",", ";", "\t")
"""Field separators a labels CSV may use (sniffed from its first lines)."""

MISSING_MARKERS = ("", "na", "n/a", "nan", "null", "none")
"""Cell texts (any case) that mean "no value"."""


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


@dataclass(frozen=True)
class LabelFile:
    """The rows of a labels file.

    Attributes:
        path: The file.
        key: The column that names each row's checkpoint (as written in the header).
        columns: The label columns, in file order (the key column excluded).
        names: Each row's checkpoint name (text, as written).
        rows: Each row's labels ``{column: value}`` (``None``: missing).
        where: Each row's place in the file for messages (``line 7``, ``entry 3``).
    """

    path: str
    key: str
    columns: tuple[str, ...]
    names: list[str]
    rows: list[dict]
    where: list[str]


def read_label_file(path: str | os.PathLike) -> LabelFile:
    """Read a labels CSV or JSON file.

    CSV: a header row, then one row per checkpoint; fields separated by ``,``, ``;`` or tab (sniffed);
    cells are parsed as int, else float, else text; empty cells and :data:`MISSING_MARKERS` are
    missing. JSON: a list of objects, or an object mapping a checkpoint name to an object of labels.

    Raises:
        FileNotFoundError: No file at ``path``.
        LabelError: An empty or malformed file, no key column (:data:`KEY_COLUMNS`), ragged rows,
            repeated or empty header names, or rows with an empty key.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no labels file at {path}")
    if path.endswith(".json"):
        columns, records, where = _read_json(path)
    else:
        columns, records, where = _read_csv(path)
    lowered = {c.strip().lower(): c for c in columns}
    key = next((lowered[k] for k in KEY_COLUMNS if k in lowered), None)
    if key is None:
        raise LabelError(f"{path} has no column naming each row's checkpoint: looked for {', '.join(KEY_COLUMNS)} "
                         f"(any case), found {', '.join(map(repr, columns)) or 'none'}; add one holding each "
                         "checkpoint's file name or path relative to the folder (rows are never matched by order)")
    parse = _parse_cell if not path.endswith(".json") else (lambda v: v)
    names, rows = [], []
    for record, at in zip(records, where, strict=True):
        name = record.get(key)  # kept as text: "001" names 001.pt, it is not the number 1
        if name is None or str(name).strip() == "":
            raise LabelError(f"{path} {at}: the {key!r} cell is empty; every row must name its checkpoint")
        names.append(str(name).strip())
        rows.append({c: parse(v) for c, v in record.items() if c != key})
    return LabelFile(path, key, tuple(c for c in columns if c != key), names, rows, where)


def _read_json(path: str) -> tuple[list[str], list[dict], list[str]]:
    with open(path) as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise LabelError(f"{path} is not valid JSON ({exc})") from exc
    if isinstance(data, dict):
        if not all(isinstance(v, dict) for v in data.values()):
            raise LabelError(f"{path}: a JSON object of labels must map each checkpoint to an object of labels")
        records = [{"source": k, **{c: x for c, x in v.items() if c != "source"}} for k, v in data.items()]
        where = [f"entry {k!r}" for k in data]
    elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
        records, where = data, [f"entry {i}" for i in range(len(data))]
    else:
        raise LabelError(f"{path}: expected a list of objects or an object of objects")
    columns = list(dict.fromkeys(str(c) for r in records for c in r))
    records = [{str(c): (None if isinstance(v, str) and v.strip().lower() in MISSING_MARKERS else v)
                for c, v in r.items()} for r in records]
    return columns, records, where


def _sniff_delimiter(lines: list[str]) -> str:
    """The delimiter that splits the first lines into the same number (> 1) of fields, most fields first."""
    best, best_width = ",", 0
    for delimiter in DELIMITERS:
        rows = [r for r in csv.reader(lines, delimiter=delimiter) if any(c.strip() for c in r)]
        widths = {len(r) for r in rows}
        if len(widths) == 1 and rows and len(rows[0]) > max(best_width, 1):
            best, best_width = delimiter, len(rows[0])
    if best_width:
        return best
    # no delimiter splits every line alike (ragged rows): take the one splitting the header most
    headers = {d: len(next(csv.reader(lines[:1], delimiter=d), [])) for d in DELIMITERS}
    return max(DELIMITERS, key=lambda d: (headers[d], -DELIMITERS.index(d)))


def _read_csv(path: str) -> tuple[list[str], list[dict], list[str]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        text = fh.read()
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise LabelError(f"{path} is empty; a labels CSV needs a header row")
    delimiter = _sniff_delimiter(lines[:50])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip() for h in next(reader)]
    shown = {"\t": "tab"}.get(delimiter, repr(delimiter))
    if len(header) < 2:
        raise LabelError(f"{path} has a single column {header[0]!r}: a labels CSV needs a column naming the "
                         "checkpoint and at least one label, separated by ',', ';' or tabs")
    empty = [i + 1 for i, h in enumerate(header) if not h]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if empty or repeated:
        what = f"empty names (columns {empty})" if empty else f"repeated names {repeated}"
        raise LabelError(f"{path}: the header has {what}; give every column its own name")
    records, where, ragged = [], [], []
    for row in reader:
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            ragged.append((reader.line_num, len(row)))
            continue
        records.append(dict(zip(header, row, strict=True)))
        where.append(f"line {reader.line_num}")
    if ragged:
        examples = ", ".join(f"line {n} has {k}" for n, k in ragged[:3])
        raise LabelError(f"{path}: {len(ragged)} rows do not have the header's {len(header)} fields (separated by "
                         f"{shown}): {examples}{', ...' if len(ragged) > 3 else ''}; fix those rows (quote cells "
                         "that contain the separator)")
    return header, records, where


def _parse_cell(text: str):
    text = text.strip()
    if text.lower() in MISSING_MARKERS:
        return None
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def _examples(items: Sequence, k: int = 3) -> str:
    return ", ".join(map(str, items[:k])) + (", ..." if len(items) > k else "")


def _match_rows(table: LabelFile, sources: Sequence[str]) -> tuple[dict[str, list[int]], list[int]]:
    """``({source: its row indices}, [indices of rows naming no checkpoint])``; ambiguity and conflicts raise."""
    path = table.path
    levels: list[dict[str, set[str]]] = [{}, {}, {}, {}]  # path, path without suffix, file name, stem
    for s in sources:
        base = s.rsplit("/", 1)[-1]
        for level, alias in zip(levels, (s, os.path.splitext(s)[0], base, os.path.splitext(base)[0]), strict=True):
            level.setdefault(alias, set()).add(s)
    matched: dict[str, list[int]] = {}
    unmatched = []
    for i, name in enumerate(table.names):
        norm = name.replace("\\", "/")
        norm = norm[2:] if norm.startswith("./") else norm
        hits = next((level[norm] for level in levels if norm in level), set())
        if len(hits) > 1:
            raise LabelError(f"{path} {table.where[i]}: {name!r} fits {len(hits)} checkpoints "
                             f"({_examples(sorted(hits), 2)}); name each by its path relative to the folder")
        if hits:
            matched.setdefault(next(iter(hits)), []).append(i)
        else:
            unmatched.append(i)
    conflicts = [(s, rows) for s, rows in matched.items() if any(table.rows[j] != table.rows[rows[0]] for j in rows)]
    if conflicts:
        s, rows = conflicts[0]
        j = next(j for j in rows if table.rows[j] != table.rows[rows[0]])
        col = next(c for c in table.columns if table.rows[j].get(c) != table.rows[rows[0]].get(c))
        raise LabelError(f"{path}: {len(conflicts)} checkpoints have conflicting rows (first: {s} at "
                         f"{table.where[rows[0]]} and {table.where[j]}: {col} {table.rows[rows[0]].get(col)!r} vs "
                         f"{table.rows[j].get(col)!r}); keep one row per checkpoint")
    return matched, unmatched


def match_labels(table: LabelFile, sources: Sequence[str], needed: Sequence[str] | None = None,
                 allow_missing: bool = False) -> tuple[dict[str, dict], dict[str, str]]:
    """Match the rows of ``table`` to checkpoints by name; return ``({source: labels}, {column: kind})``.

    A row's name matches a checkpoint's path relative to the folder, else that path without its
    suffix, else a file name, else a stem; at the first of these that any checkpoint has, exactly one
    must have it (backslashes count as ``/``; a leading ``./`` is ignored).
    Identical duplicate rows are merged.

    Args:
        table: From :func:`read_label_file`.
        sources: Every checkpoint's path relative to the folder (``/``-separated).
        needed: The checkpoints that need labels now (default: all; ``convert`` passes those it has
            not stored yet).
        allow_missing: Store checkpoints without a row, rows naming no checkpoint and empty cells as
            missing values (with a :class:`~datasets.errors.ZooWarning`) instead of refusing.

    Raises:
        LabelError: A name fits several checkpoints, duplicate rows conflict, the reserved column
            ``source`` is used for a label, or (unless ``allow_missing``) anything is unmatched or missing.
    """
    path = table.path
    if "source" in table.columns:
        raise LabelError(f"{path}: the column name 'source' is reserved for the checkpoint path; rename that column")
    matched, unmatched = _match_rows(table, sources)
    needed = list(sources if needed is None else needed)
    by_source = {s: table.rows[rows[0]] for s, rows in matched.items()}
    no_row = [s for s in needed if s not in by_source]
    empty = [(s, c) for s in needed if s in by_source for c in table.columns if by_source[s].get(c) is None]
    problems = []
    if no_row:
        problems.append(f"{len(no_row)} of {len(needed)} checkpoints have no row (e.g. {_examples(no_row)})")
    if unmatched:
        problems.append(f"{len(unmatched)} rows name no checkpoint under the folder (e.g. "
                        f"{_examples([f'{table.where[i]}: {table.names[i]!r}' for i in unmatched])})")
    if empty:
        problems.append(f"{len(empty)} cells are empty (e.g. {_examples([f'{s} {c!r}' for s, c in empty])})")
    if problems and not allow_missing:
        raise LabelError(f"{path} (key column {table.key!r}) does not give every checkpoint its labels: "
                         + "; ".join(problems) + "; fix the file, or pass --allow-missing (allow_missing=True) to "
                         "store the missing labels as missing values (NaN, '')")
    kinds = {c: column_kind([by_source.get(s, {}).get(c) for s in needed]) for c in table.columns}
    if problems:
        warnings.warn(ZooWarning(f"{path}: " + "; ".join(problems) + "; stored as missing values"), stacklevel=2)
        gaps = [c for c in table.columns if kinds[c] == "float"
                and column_kind([v for s in needed if (v := by_source.get(s, {}).get(c)) is not None]) == "int"]
        if gaps:
            warnings.warn(ZooWarning(f"{path}: the integer column(s) {', '.join(map(repr, gaps))} have missing values, "
                                     "so they are stored as float columns (NaN marks a missing value)"), stacklevel=2)
    return by_source, kinds
