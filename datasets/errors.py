"""Errors raised at the boundaries of ``datasets``: each says what went wrong and what to do.

The CLI catches these (and the ``graphs`` errors) and prints their message as one line.
"""

from __future__ import annotations

__all__ = ["LabelError", "NonFiniteError", "ZooError", "ZooFormatError", "ZooLockedError", "ZooWarning"]


class ZooError(ValueError):
    """Base class of every error about a zoo file or the data going into one."""


class ZooFormatError(ZooError):
    """A file is not a readable weightgraph zoo: foreign, truncated, corrupt or of another version."""


class NonFiniteError(ZooError):
    """A model has a NaN or infinite weight (pass ``allow_nonfinite=True`` to store it anyway)."""


class LabelError(ZooError):
    """A label column is missing, of the wrong length, or of the wrong kind."""


class ZooLockedError(ZooError):
    """Another process is writing the same zoo file."""


class ZooWarning(UserWarning):
    """Something was stored, but not exactly as given (rounded weights, labels stored as missing).

    ``python -m datasets`` prints each as one ``warning: ...`` line on stderr.
    """
