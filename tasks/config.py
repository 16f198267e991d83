"""Run configs as dataclasses, and the command lines built from them.

Every option is a dataclass field with its help text in ``metadata``; :func:`build_parser` turns the
common config and every task's config into one ``argparse`` parser (one flag per field, one group per
set of tasks that share it). :func:`parse` returns the common config and the chosen task's config; a
flag that belongs to another task is an error that names its task, so no option is silently ignored.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

import yaml

__all__ = ["EvalConfig", "TrainConfig", "build_parser", "from_dict", "load_config_file", "opt", "parse"]

_TYPES = {"int": int, "float": float, "str": str}


def opt(default: Any, help: str, choices: Sequence | None = None, aliases: Sequence[str] = ()) -> Any:  # noqa: A002
    """A config field with its command-line help (and allowed values, and other spellings of its flag)."""
    return field(default=default, metadata={"help": help, "choices": tuple(choices) if choices else None,
                                            "aliases": tuple(aliases)})


@dataclass
class TrainConfig:
    """Options of ``train.py`` that every task shares (stored in the checkpoint beside the task's own)."""

    task: str = opt("predict", "what to learn: predict | classify | edit | ghn | neumeta")
    out: str = opt("runs/run", "output folder (best.pt, last.pt, train_summary.json)")
    epochs: int = opt(30, "passes over the training data")
    batch_size: int = opt(32, "graphs (metanetwork tasks) or images (ghn) per optimizer step")
    lr: float = opt(1e-3, "AdamW learning rate (cosine schedule to 0)")
    weight_decay: float = opt(1e-4, "AdamW weight decay")
    ema: float = opt(0.0, "exponential moving average of the weights with this decay per step (e.g. 0.999; 0: off): "
                     "validated, selected and saved in place of the raw weights")
    hidden: int = opt(64, "hidden width of the model")
    layers: int = opt(4, "message-passing layers of the model")
    seed: int = opt(0, "random seed")
    device: str = opt("auto", "auto (CUDA when present) | cpu | cuda | cuda:N")
    dist_backend: str = opt("auto", "under torchrun: auto (NCCL on CUDA, Gloo on CPU) | nccl | gloo",
                            ("auto", "nccl", "gloo"))
    amp: bool = opt(True, "bf16 autocast on CUDA")
    threads: int = opt(0, "torch CPU threads (0: torch's default)")
    train_split: str = opt("train", "split to train on")
    val_split: str = opt("val", "split to validate on (selects best.pt)")
    max_steps: int = opt(0, "stop after this many optimizer steps (0: no limit)")
    quiet: bool = opt(False, "no progress bars or per-epoch lines")
    config: str = opt("", "read options from a config.yaml (or train_summary.json) a run wrote; flags override it")
    resume: bool = opt(False, "continue the run in --out from its last.pt (same options)")
    overwrite: bool = opt(False, "replace the run in --out (checkpoints, logs, metrics, plots) instead of refusing")

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad option."""
        if self.epochs < 1:
            raise ValueError(f"--epochs {self.epochs}: train for at least 1 epoch")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"--ema {self.ema}: give a decay in [0, 1), e.g. 0.999 (0: off)")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size}: give at least 1")
        if self.max_steps < 0:
            raise ValueError(f"--max-steps {self.max_steps}: give 0 (no limit) or a positive number")
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --out and --overwrite replaces it: pass one")


@dataclass
class EvalConfig:
    """Options of ``eval.py`` that every task shares."""

    checkpoint: str = opt("", "best.pt / last.pt written by train.py")
    out: str = opt("", "folder for the metrics JSON and plots (default: beside the checkpoint)")
    batch_size: int = opt(64, "graphs per batch")
    device: str = opt("auto", "auto (CUDA when present) | cpu | cuda | cuda:N")
    threads: int = opt(0, "torch CPU threads (0: torch's default)")
    no_plot: bool = opt(False, "skip the plots")
    model: str = opt("", "module:factory building your own network (--predict, --save)")
    input_shape: list = opt(None, "example input shape to trace --model with, e.g. 1,3,32,32 (repeat for several)",
                            aliases=("--example-input-shape",))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add(group, f: Field, task_default: bool) -> None:
    """One flag for field ``f``; task fields default to ``None`` so that :func:`parse` sees what was given."""
    default = None if task_default else (f.default if f.default is not MISSING else None)
    meta = f.metadata
    kwargs: dict[str, Any] = {"help": meta.get("help", ""), "default": default}
    if f.type == "bool":
        kwargs["action"] = argparse.BooleanOptionalAction
    elif f.type == "list":
        kwargs["action"] = "append"
    else:
        kwargs["type"] = _TYPES.get(str(f.type), str)
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
    if f.default not in (MISSING, "", None) and f.type != "bool":
        kwargs["help"] += f" (default: {f.default})"
    group.add_argument(_flag(f.name), *meta.get("aliases", ()), dest=f.name, **kwargs)


def build_parser(common: type, task_configs: Mapping[str, type], description: str,
                 positional: Sequence[str] = ()) -> argparse.ArgumentParser:
    """A parser with every field of ``common`` and of each task's config dataclass.

    A field shared by several tasks (same name) is one flag, listed in a group titled by those tasks.
    Fields named in ``positional`` are positional arguments.
    """
    parser = argparse.ArgumentParser(description=description)
    for f in fields(common):
        if f.name in positional:
            parser.add_argument(f.name, help=f.metadata.get("help", ""))
        else:
            _add(parser, f, task_default=False)
    common_names = {f.name for f in fields(common)}
    owners: dict[str, list[str]] = {}
    by_name: dict[str, Field] = {}
    for task, cls in task_configs.items():
        for f in fields(cls):
            if f.name in common_names:
                raise TypeError(f"{cls.__name__}.{f.name} repeats a common option")
            owners.setdefault(f.name, []).append(task)
            by_name.setdefault(f.name, f)
    groups: dict[tuple, argparse._ArgumentGroup] = {}
    for name, tasks in owners.items():
        key = tuple(tasks)
        if key not in groups:
            groups[key] = parser.add_argument_group(f"--task {', '.join(key)}")
        _add(groups[key], by_name[name], task_default=True)
    return parser


def load_config_file(path: str, common: type, task_configs: Mapping[str, type]) -> dict[str, Any]:
    """The options in a ``config.yaml`` or ``train_summary.json`` a run wrote (``{"config": {...}}`` or flat).

    Keys that are neither common options nor options of the file's task are dropped (older runs
    stored every task's options).

    Raises:
        ValueError: No such file, or not a YAML/JSON mapping of options.
    """
    if not os.path.isfile(path):
        raise ValueError(f"--config {path}: no such file")
    try:
        with open(path) as f:
            d = json.load(f) if path.endswith(".json") else yaml.safe_load(f)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"--config {path} is not readable YAML/JSON ({str(exc).splitlines()[0]})") from exc
    d = d.get("config", d) if isinstance(d, dict) else d
    if not isinstance(d, dict):
        raise ValueError(f"--config {path} holds no mapping of options (write it as option: value lines)")
    known = {f.name for f in fields(common)}
    cls = task_configs.get(d.get("task", ""))
    known |= {f.name for f in fields(cls)} if cls else set()
    return {k: v for k, v in d.items() if k in known and k not in ("config", "resume", "overwrite")}


def from_dict(common: type, task_configs: Mapping[str, type], values: Mapping[str, Any],
              task: str | None = None) -> tuple[Any, Any]:
    """``(common config, task config)`` from a flat mapping of options (the Python API of the scripts).

    Raises:
        ValueError: An unknown task, an option of another task or of no task, or an invalid value.
    """
    name = task or values.get("task", "predict")
    if name not in task_configs:
        raise ValueError(f"--task {name}: choose {', '.join(list(task_configs)[:-1])} or {list(task_configs)[-1]}")
    cls = task_configs[name]
    mine = {f.name for f in fields(cls)}
    common_names = {f.name for f in fields(common)}
    given = {k: v for k, v in values.items() if k not in common_names and v is not None}
    foreign = sorted(set(given) - mine)
    if foreign:
        owners = [t for t, c in task_configs.items() if foreign[0] in {f.name for f in fields(c)}]
        if not owners:
            raise ValueError(f"{_flag(foreign[0])} is not an option of any task")
        raise ValueError(f"{_flag(foreign[0])} is an option of --task {' / '.join(owners)}, not of --task {name}")
    cfg = common(**{k: values[k] for k in common_names if k in values})
    task_cfg = cls(**{k: given[k] for k in mine & set(given)})
    if hasattr(cfg, "validate"):
        cfg.validate()
    if hasattr(task_cfg, "validate"):
        task_cfg.validate(cfg)
    return cfg, task_cfg


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None, common: type,
          task_configs: Mapping[str, type], task: str | None = None) -> tuple[Any, Any]:
    """``(common config, the task's config)`` from the command line ``argv``.

    With ``--config FILE`` (train.py), the file's options are the defaults and the flags given
    override them. The task is ``task`` when given (eval: the checkpoint's), else the ``--task``
    option. Options of other tasks and invalid values are ``parser.error`` (one line, exit code 2).
    """
    ns = parser.parse_args(argv)
    if getattr(ns, "config", ""):
        try:
            parser.set_defaults(**load_config_file(ns.config, common, task_configs))
        except ValueError as exc:
            parser.error(str(exc))
        ns = parser.parse_args(argv)
    try:
        return from_dict(common, task_configs, vars(ns), task)
    except ValueError as exc:
        parser.error(str(exc))
