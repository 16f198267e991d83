"""Reading state_dicts from checkpoint files without executing code from them."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from graphs.errors import CheckpointError

__all__ = ["WRAPPER_PREFIXES", "load_checkpoint", "read_checkpoint", "save_checkpoint", "state_dict_of",
           "strip_wrapper_prefix"]

_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights", "params")

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""Key prefixes that wrappers add to every state_dict key: ``DistributedDataParallel`` / ``DataParallel``
(``module.``) and ``torch.compile`` (``_orig_mod.``)."""


def strip_wrapper_prefix(state_dict: Mapping[str, torch.Tensor],
                         expected: Collection[str] | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Remove a wrapper's prefix (:data:`WRAPPER_PREFIXES`, e.g. DDP's ``module.``) shared by every key.

    The one place where checkpoints saved from a wrapped model are unwrapped (``convert``, the
    importers and ``graphs inspect`` use it). Nested wrappers (``module._orig_mod.``) are removed
    one after the other.

    Args:
        state_dict: Keys to tensors.
        expected: The keys the state_dict should have (e.g. a layout's). When given, the prefix is
            removed only if that makes the keys exactly these, and never when they already are.

    Returns:
        ``(state_dict, prefix)``: the unwrapped state_dict and the prefix removed (``""``: none, and
        the state_dict is returned as a new dict with the same items).
    """
    sd, removed = dict(state_dict), ""
    while sd:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in sd)), None)
        if prefix is None or (expected is not None and set(sd) == set(expected)):
            break
        sd = {k[len(prefix):]: v for k, v in sd.items()}
        removed += prefix
    if expected is not None and removed and set(sd) != set(expected):
        return dict(state_dict), ""
    return sd, removed


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state_dict from ``.safetensors`` or ``.pt``/``.pth``/``.bin`` (``weights_only=True``).

    A checkpoint that wraps the state_dict (``{"state_dict": ..., "epoch": ...}``, Lightning style
    ``{"model": ...}``) is unwrapped (:func:`state_dict_of`).

    Raises:
        CheckpointError: Missing file, a file that is not a checkpoint, or one holding no tensors.
    """
    return read_checkpoint(path)[0]


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state_dict of a checkpoint file and the layout JSON stored with it, if any.

    The layout is the ``layout`` entry of a safetensors file's metadata, or a ``"layout"`` string
    beside the tensors of a ``.pt`` file (both are what ``python -m datasets`` exports write).

    Raises:
        CheckpointError: As :func:`load_checkpoint`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.endswith(".safetensors"):
        try:
            with safe_open(path, "pt") as fh:
                layout_json = (fh.metadata() or {}).get("layout")
                return {k: fh.get_tensor(k) for k in fh.keys()}, layout_json
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for files it cannot read
        raise CheckpointError(
            f"{path} cannot be loaded with torch.load(weights_only=True): {str(exc).splitlines()[0]}. "
            "Only tensors and plain containers are read (no pickled code); re-save it as a state_dict "
            "or as .safetensors") from exc
    layout_json = obj.get("layout") if isinstance(obj, Mapping) and isinstance(obj.get("layout"), str) else None
    return state_dict_of(obj, path), layout_json


def state_dict_of(obj, path: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state_dict inside a loaded checkpoint object.

    A mapping of names to tensors (a ``"layout"`` string beside them is allowed) is the state_dict;
    otherwise the first of ``state_dict``, ``model_state_dict``, ``model``, ``net``, ``weights``,
    ``params`` that is a mapping is searched the same way; failing that, the mapping's tensors.

    Raises:
        CheckpointError: When ``obj`` holds no tensors (``path`` names the file in the message).
    """
    if isinstance(obj, Mapping):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) == len(obj) - isinstance(obj.get("layout"), str):
            return dict(tensors)
        for key in _NESTED_KEYS:
            if isinstance(obj.get(key), Mapping):
                return state_dict_of(obj[key], path)
        if tensors:
            return dict(tensors)
    raise CheckpointError(f"{path} holds no state_dict (a mapping of names to tensors); "
                          f"top-level keys: {list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__}")


def save_checkpoint(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Save a state_dict as ``.safetensors`` (tied tensors are stored once per key) or ``.pt``.

    The file is written beside ``path`` and renamed into place, so an interrupted save never leaves a
    truncated file where an earlier one was.
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        if path.endswith(".safetensors"):
            # safetensors refuses tensors sharing memory (tied weights): store each key's own copy
            seen: set[int] = set()
            out = {}
            for k, v in state_dict.items():
                v = v.detach().cpu().contiguous()
                ptr = v.untyped_storage().data_ptr() if v.numel() else -1
                out[k] = v.clone() if ptr in seen else v
                seen.add(ptr)
            save_file(out, tmp)
        else:
            torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
