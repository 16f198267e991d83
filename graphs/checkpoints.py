"""Reading state_dicts from checkpoint files without executing code from them."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from graphs.errors import CheckpointError

__all__ = ["load_checkpoint", "save_checkpoint"]

_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights", "params")


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state_dict from ``.safetensors`` or ``.pt``/``.pth``/``.bin`` (``weights_only=True``).

    A checkpoint that wraps the state_dict (``{"state_dict": ..., "epoch": ...}``, Lightning style
    ``{"model": ...}``) is unwrapped.

    Raises:
        CheckpointError: Missing file, a file that is not a checkpoint, or one holding no tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return dict(load_file(path))
        except Exception as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} cannot be loaded with torch.load(weights_only=True): {str(exc).splitlines()[0]}. "
            "Only tensors and plain containers are read (no pickled code); re-save it as a state_dict "
            "or as .safetensors") from exc
    return _find_state_dict(obj, path)


def _find_state_dict(obj, path: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) == len(obj):
            return dict(tensors)
        for key in _NESTED_KEYS:
            if isinstance(obj.get(key), Mapping):
                return _find_state_dict(obj[key], path)
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
            from safetensors.torch import save_file

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
