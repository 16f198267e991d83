"""Training checkpoints on disk: written atomically by train.py, read (once) by eval.py.

A checkpoint is a ``torch.save``'d dict of plain data (``weights_only=True`` reads it):

- ``task``: the task name; ``model``: the state_dict; ``model_config``: what rebuilds the model;
- ``train_config``: the common options and the task's own, flat (``train_config["task"]`` too);
- ``optimizer``, ``step``, ``epoch``, ``metrics``, ``history`` and task extras (``label_names``).

Checkpoints written before tasks were modules stored every option of every task in ``train_config``;
:func:`task_config` keeps the fields the task knows, so they still load.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import fields
from typing import Any, TypeVar

import torch
from torch import nn

from datasets import ZooDataset
from tasks.probing import model_with_probes, probe_dim, probe_nets

__all__ = ["load_model", "read_checkpoint", "save_checkpoint", "task_config"]

T = TypeVar("T")


def checksum(ckpt: dict[str, Any]) -> str:
    """SHA-256 of the model's tensors (names, dtypes, shapes, bytes) and of its model and training configs."""
    h = hashlib.sha256()
    for name in sorted(ckpt["model"]):
        t = ckpt["model"][name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(json.dumps([ckpt.get("model_config"), ckpt.get("train_config")], sort_keys=True, default=str).encode())
    return h.hexdigest()


def save_checkpoint(ckpt: dict[str, Any], path: str) -> None:
    """``torch.save`` to a temporary file beside ``path``, flushed, then renamed into place.

    An interrupted save never leaves a truncated ``best.pt`` where a good one was. The checkpoint
    gets a ``checksum`` of its model and configs, which :func:`read_checkpoint` verifies.
    """
    ckpt = {**ckpt, "checksum": checksum(ckpt)}
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_checkpoint(path: str) -> dict[str, Any]:
    """The checkpoint dict written by train.py (with ``task`` filled in for older checkpoints).

    Raises:
        ValueError: No file, a file ``torch.load(weights_only=True)`` cannot read, or a dict that is
            not a train.py checkpoint; each message says what to pass instead.
    """
    if not os.path.isfile(path):
        raise ValueError(f"no checkpoint at {path}; pass a best.pt or last.pt written by train.py")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for unreadable files
        raise ValueError(f"{path} is not a readable checkpoint ({type(exc).__name__}); "
                         "pass a best.pt or last.pt written by train.py") from exc
    if not isinstance(ckpt, dict) or not {"model", "model_config", "train_config"} <= set(ckpt) \
            or not isinstance(ckpt["train_config"], dict):
        raise ValueError(f"{path} is not a weightgraph metanetwork checkpoint (it lacks model/model_config/"
                         "train_config); pass a best.pt or last.pt written by train.py")
    if "checksum" in ckpt:  # checkpoints written before checksums have none
        try:
            ok = ckpt["checksum"] == checksum(ckpt)
        except Exception:  # a damaged entry (not a tensor, not JSON-able) fails the check too
            ok = False
        if not ok:
            raise ValueError(f"{path} is damaged: its model weights or configs do not match the checksum written "
                             "with them; use another checkpoint (last.pt / best.pt) or retrain")
    ckpt.setdefault("task", ckpt["train_config"].get("task", "predict"))
    return ckpt


def task_config(ckpt: dict[str, Any], cls: type[T]) -> T:
    """The task's config from a checkpoint's flat ``train_config`` (fields the task does not know are dropped)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in ckpt["train_config"].items() if k in names})


def load_model(path: str, device: str | torch.device = "cpu", zoo: str | None = None) -> nn.Module:
    """The trained model of a train.py checkpoint, in eval mode.

    A metanetwork is ready for ``model(batch)`` on raw ParamGraphs (its input normalization and
    target scaling are part of it); a GHN for ``model(ArchGraph.of(layout))``. A metanetwork trained
    with probe features runs the networks of a zoo: the batches' ``program`` indices refer to ``zoo``'s
    programs (default: the zoo it was trained on).
    """
    ckpt = read_checkpoint(path)
    source = zoo or ckpt["train_config"].get("data", "")
    if probe_dim(ckpt) and not source:
        raise ValueError(f"{path} was trained with probe features; pass zoo=ZOO.h5 (a zoo that stores its programs)")
    return model_with_probes(ckpt, lambda: probe_nets(ZooDataset(source, None, labels=[]))).to(device)
