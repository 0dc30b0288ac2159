"""One output file written by several ``--workers`` processes, under a lock.

Each worker keeps what it has to write in memory and hands it over whole on
``flush``: under an exclusive ``flock`` on ``PATH.lock`` (the lock the
rotating flow log uses too, proxy/sinks/rotate.py) it is appended with
``O_APPEND`` writes until all of it is on disk, so blocks of different
workers never interleave. ``locked`` gives a caller the same lock for a
read-modify-write (the HAR document's tail, proxy/sinks/har_shared.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

__all__ = ["LockedAppender", "locked"]


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold the exclusive lock of ``path`` (on ``path.lock``) for the block."""
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a regular file may take less)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class LockedAppender:
    """A write-only file object whose ``flush`` appends what was written, whole."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._pending: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._pending.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Append everything written since the last flush; dropped if that fails."""
        if not self._pending:
            return
        data, self._pending = b"".join(self._pending), []
        with locked(self.path):
            write_all(self._fd, data)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            os.close(self._fd)
