"""Errors raised at the boundaries of ``graphs``: each says what went wrong and what to do.

How commands report them (one line, exit status 2) is :mod:`graphs.cli`'s business.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError", "LayoutMismatchError", "UnreadParameterWarning", "UnsafeProgramError", "UnsupportedNetworkError",
]


class UnsupportedNetworkError(RuntimeError):
    """A network cannot be traced or has a parameterized op with no symmetry rule.

    Args:
        message: What failed.
        op: The aten op (e.g. ``aten.lstm.input``), when one is to blame.
        module: The module path (e.g. ``encoder.rnn``) of the op, when known.
        hint: What the user can do about it.
    """

    def __init__(self, message: str, op: str | None = None, module: str | None = None,
                 hint: str | None = None) -> None:
        self.op, self.module, self.hint = op, module, hint
        parts = [message]
        if op:
            parts.append(f"op: {op}")
        if module is not None:
            parts.append(f"module: {module or '<root>'}")
        if hint:
            parts.append(f"fix: {hint}")
        super().__init__("; ".join(parts))


class LayoutMismatchError(ValueError):
    """A state_dict, vector or graph does not match the Layout it is used with."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be read safely (missing, foreign format, or not a state_dict)."""


class UnreadParameterWarning(UserWarning):
    """A parameter or float buffer of the state_dict is never read by the exported graph.

    Its axes are fixed, so the reported symmetries stay sound. The usual cause is a module that caches a
    tensor derived from the parameter on an eval forward (an attention-bias table, say): ``torch.export``
    then reads the cached copy as a constant and the parameter itself not at all.
    """


class UnsafeProgramError(ValueError):
    """Stored program bytes are not a torch.export archive, or loading them could execute code.

    Args:
        message: What is wrong with the bytes.
        hint: What the user can do about it.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.hint = hint
        super().__init__(message + (f"; fix: {hint}" if hint else ""))
