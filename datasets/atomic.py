"""Crash-safe replacement of one file: write a private copy beside it, then rename it into place.

Why copy-and-rename rather than appending in place: HDF5 updates its metadata (B-tree nodes, object
headers, the superblock) in place and writes it from a cache in no particular order, so a process
killed during an in-place append can leave a file whose *earlier* data is unreachable. A file that
is never opened for writing cannot be damaged, and ``os.replace`` swaps a whole new version in
atomically: a reader (or a crash) sees either the old file or the new one, never a mix.

A :class:`FileTransaction` holds an exclusive lock (``.NAME.lock`` beside the file) so that two
writers cannot both replace the file and lose each other's models; the lock dies with its process
(``flock``), so a killed writer never blocks the next one. Temporary files of killed writers
(``.NAME.*.tmp``) are removed by the next writer.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import time

from datasets.errors import ZooLockedError

try:  # POSIX only; elsewhere writers are not serialized (documented limitation)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["FileTransaction"]


class FileTransaction:
    """A private, writable copy of ``path`` (made by :meth:`begin`) that :meth:`commit` renames into place.

    Args:
        path: The file to write (it need not exist).

    Attributes:
        tmp: Path of the private copy to write (``None`` after :meth:`commit` until :meth:`begin`).
        last_copy_seconds: Time the last copy of the existing file took (0 when none was made).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.dir, self.name = os.path.split(self.path)
        self.tmp: str | None = None
        self.last_copy_seconds = 0.0
        self._lock_fd = _acquire_lock(self._lock_path(), self.path)
        try:
            for stale in glob.glob(os.path.join(glob.escape(self.dir), f".{glob.escape(self.name)}.*.tmp")):
                os.remove(stale)  # we hold the lock: these belong to killed writers
        except BaseException:
            self.release()
            raise

    def _lock_path(self) -> str:
        return os.path.join(self.dir, f".{self.name}.lock")

    def begin(self, copy_existing: bool = True) -> str:
        """Start a new private copy (of the committed file, or empty) and return its path."""
        assert self.tmp is None, "begin() while a private copy is open"
        tmp = os.path.join(self.dir, f".{self.name}.{secrets.token_hex(4)}.tmp")
        start = time.perf_counter()
        if copy_existing:
            shutil.copyfile(self.path, tmp)
        self.last_copy_seconds = time.perf_counter() - start
        self.tmp = tmp
        return tmp

    def commit(self) -> None:
        """Make the private copy durable and atomically replace ``path`` with it.

        The caller must have closed every handle on :attr:`tmp` first.
        """
        assert self.tmp is not None, "commit() without a private copy"
        fd = os.open(self.tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # data on disk before the rename makes it visible
        finally:
            os.close(fd)
        os.replace(self.tmp, self.path)
        self.tmp = None
        _fsync_dir(self.dir)

    def abort(self) -> None:
        """Drop the private copy; ``path`` keeps its last committed version."""
        if self.tmp is not None and os.path.exists(self.tmp):
            os.remove(self.tmp)
        self.tmp = None

    def release(self) -> None:
        """Release the writer lock (after :meth:`commit` or :meth:`abort`)."""
        if self._lock_fd is None:
            return
        try:
            os.remove(self._lock_path())  # unlink before unlocking: waiters re-check the inode
        except FileNotFoundError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None


def _acquire_lock(lock_path: str, target: str) -> int | None:
    """Take an exclusive ``flock`` on ``lock_path`` or raise :class:`ZooLockedError` at once."""
    if fcntl is None:  # pragma: no cover
        return None
    for _ in range(100):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ZooLockedError(
                f"another process is writing {target} (it holds {lock_path}); wait for it to finish, "
                "or write to another file and combine them with `python -m datasets merge`") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the lock file as we took it: try again on the new one
    raise ZooLockedError(f"could not take the writer lock {lock_path}; remove it if no writer is running")


def _fsync_dir(directory: str) -> None:
    """Persist a rename (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
